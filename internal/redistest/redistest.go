// Package redistest starts a private redis-server for tests.
//
// Each call to Start runs its own redis-server on a free port in a temp
// directory, so a test can stop, kill and restart it. With
// STAGED_TEST_REDIS_URL set, that Redis is used instead (and cannot be
// restarted). Where no redis-server is installed it falls back to the
// embedded miniredis, unless STAGED_TEST_REDIS=required, and says which it
// used.
package redistest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// Server is a Redis for one test.
type Server struct {
	Addr string
	// Password is the password the server requires ("" for none).
	Password string
	// Embedded is true when this is miniredis rather than redis-server.
	Embedded bool
	// Mini is the embedded server, when Embedded.
	Mini *miniredis.Miniredis

	tb   testing.TB
	dir  string
	args []string
	mu   sync.Mutex
	cmd  *exec.Cmd
}

// Options change how the server starts.
type Options struct {
	// AOF turns on appendonly with appendfsync always, so a restart keeps
	// everything written before it.
	AOF bool
	// Password makes the server require AUTH with it (requirepass). It
	// is ignored for STAGED_TEST_REDIS_URL, which has its own.
	Password string
}

var logOnce sync.Once

// Start returns a running Redis, stopped by t.Cleanup.
func Start(tb testing.TB, opts ...Options) *Server {
	tb.Helper()
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	if u := os.Getenv("STAGED_TEST_REDIS_URL"); u != "" {
		ro, err := redis.ParseURL(u)
		if err != nil {
			tb.Fatalf("STAGED_TEST_REDIS_URL: %v", err)
		}
		logOnce.Do(func() { fmt.Fprintf(os.Stderr, "redistest: using STAGED_TEST_REDIS_URL %s\n", ro.Addr) })
		return &Server{Addr: ro.Addr, Password: ro.Password, tb: tb}
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("STAGED_TEST_REDIS") == "required" {
			tb.Fatalf("redis-server not found and STAGED_TEST_REDIS=required: install redis-server")
		}
		logOnce.Do(func() {
			fmt.Fprintln(os.Stderr, "redistest: no redis-server installed; falling back to embedded miniredis")
		})
		m := miniredis.RunT(tb)
		if o.Password != "" {
			m.RequireAuth(o.Password)
		}
		return &Server{Addr: m.Addr(), Password: o.Password, Embedded: true, Mini: m, tb: tb}
	}
	logOnce.Do(func() { fmt.Fprintf(os.Stderr, "redistest: using a private %s per test\n", bin) })
	s := &Server{tb: tb, dir: tb.TempDir(), Password: o.Password}
	s.Addr = "127.0.0.1:" + strconv.Itoa(FreePort(tb))
	_, port, _ := net.SplitHostPort(s.Addr)
	s.args = []string{"--port", port, "--bind", "127.0.0.1", "--dir", s.dir, "--save", "",
		"--daemonize", "no", "--logfile", filepath.Join(s.dir, "redis.log"), "--maxmemory-policy", "noeviction"}
	if o.Password != "" {
		s.args = append(s.args, "--requirepass", o.Password)
	}
	if o.AOF {
		s.args = append(s.args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		s.args = append(s.args, "--appendonly", "no")
	}
	s.start(bin)
	tb.Cleanup(s.Kill)
	return s
}

func (s *Server) start(bin string) {
	s.tb.Helper()
	cmd := exec.Command(bin, s.args...)
	if err := cmd.Start(); err != nil {
		s.tb.Fatalf("redis-server: %v", err)
	}
	s.mu.Lock()
	s.cmd = cmd
	s.mu.Unlock()
	go cmd.Wait()
	if err := s.waitReady(10 * time.Second); err != nil {
		s.tb.Fatalf("redis-server on %s did not start: %v", s.Addr, err)
	}
}

func (s *Server) waitReady(limit time.Duration) error {
	c := redis.NewClient(&redis.Options{Addr: s.Addr, Password: s.Password, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	deadline := time.Now().Add(limit)
	for {
		err := c.Ping(context.Background()).Err()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// URL is the redis:// URL of the server, with its password if it has one.
func (s *Server) URL() string {
	if s.Password != "" {
		u := url.URL{Scheme: "redis", User: url.UserPassword("", s.Password), Host: s.Addr, Path: "/0"}
		return u.String()
	}
	return "redis://" + s.Addr + "/0"
}

// Client returns a go-redis client on the server, closed at cleanup.
func (s *Server) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr, Password: s.Password})
	s.tb.Cleanup(func() { c.Close() })
	return c
}

// Kill stops the server at once (SIGKILL). Safe to call twice.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Kill()
		s.cmd.Process.Wait()
		s.cmd = nil
	}
}

// Restart kills the server and starts it again on the same port and
// directory (with AOF on, the data survives).
func (s *Server) Restart() {
	s.tb.Helper()
	if s.dir == "" {
		s.tb.Skip("redistest: cannot restart an external or embedded Redis")
	}
	s.Kill()
	bin, _ := exec.LookPath("redis-server")
	s.start(bin)
}

// FreePort returns a TCP port free on 127.0.0.1 right now.
func FreePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Eventually calls cond every few milliseconds until it returns true or the
// limit passes, then fails the test with msg. It is a deadline-bounded wait
// on a condition, not a sleep.
func Eventually(tb testing.TB, limit time.Duration, msg string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for: %s", limit, msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func getenv(k string) string { return os.Getenv(k) }

func writeFile(name, data string) error { return os.WriteFile(name, []byte(data), 0o644) }
