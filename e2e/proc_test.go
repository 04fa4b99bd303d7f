package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/staged-dev/staged/builtin"
	"github.com/staged-dev/staged/internal/catalog"
	"github.com/staged-dev/staged/internal/redistest"
	"github.com/staged-dev/staged/tasks"
)

// Limits of the waits on processes.
const (
	readyLimit = 20 * time.Second // api /readyz, worker registered
	exitLimit  = 20 * time.Second // a signalled process exits
	dumpLines  = 150              // lines of each process's output shown on failure
)

// proc is one staged child process with its combined output captured.
type proc struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	out  *logBuf
	done chan struct{} // closed when the process has exited
	err  error         // the exit error, valid once done is closed
}

// logBuf is a goroutine-safe output buffer.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startProc runs the staged binary with args and the given STAGED_*
// environment (the parent's STAGED_* variables are not inherited). The
// process is killed at cleanup; its output is dumped if the test failed.
func startProc(t *testing.T, name string, env []string, args ...string) *proc {
	t.Helper()
	return startBin(t, binary(t), name, env, args...)
}

// startBin is startProc for another binary than staged.
func startBin(t *testing.T, bin, name string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, out: &logBuf{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(baseEnv(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s (%s %s): %v", name, bin, strings.Join(args, " "), err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Logf("started %s: pid %d, staged %s", name, p.pid(), strings.Join(args, " "))
	t.Cleanup(func() {
		if !p.exited() {
			p.cmd.Process.Signal(syscall.SIGCONT) // a stopped process cannot die otherwise
			p.cmd.Process.Kill()
			<-p.done
		}
		p.saveLog()
		if t.Failed() {
			t.Logf("--- output of %s (pid %d, last %d lines) ---\n%s\n--- end of %s ---",
				name, p.pid(), dumpLines, tail(p.out.String(), dumpLines), name)
		}
	})
	return p
}

// baseEnv is the parent's environment without any STAGED_* variable, so a
// developer's or CI's settings cannot change what the tests run.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "STAGED_") {
			env = append(env, kv)
		}
	}
	return env
}

// saveLog writes the full output to $STAGED_E2E_LOGS/<test>-<name>.log when
// that variable names a directory (CI keeps them as artifacts).
func (p *proc) saveLog() {
	dir := os.Getenv("STAGED_E2E_LOGS")
	if dir == "" {
		return
	}
	file := strings.NewReplacer("/", "_", " ", "_").Replace(p.t.Name()) + "-" + p.name + ".log"
	if err := os.MkdirAll(dir, 0o755); err == nil {
		os.WriteFile(filepath.Join(dir, file), []byte(p.out.String()), 0o644)
	}
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %v to %s (pid %d): %v", sig, p.name, p.pid(), err)
	}
	p.t.Logf("sent %v to %s (pid %d)", sig, p.name, p.pid())
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	p.t.Helper()
	p.signal(syscall.SIGKILL)
	p.waitExit(exitLimit)
}

// waitExit waits up to limit for the process to exit and returns its exit
// code (-1 when killed by a signal).
func (p *proc) waitExit(limit time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(limit):
		p.t.Fatalf("%s (pid %d) did not exit within %v", p.name, p.pid(), limit)
	}
	if p.err == nil {
		return 0
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

// lines returns the process's output lines so far.
func (p *proc) lines() []string {
	return strings.Split(strings.TrimRight(p.out.String(), "\n"), "\n")
}

var jobIDAttr = regexp.MustCompile(`"job_id"\s*:\s*"([0-9a-fA-F-]{36})"`)

// jobIDs returns how many log lines name each job id (slog JSON lines with
// a "job_id" attribute).
func (p *proc) jobIDs() map[string]int {
	ids := map[string]int{}
	for _, m := range jobIDAttr.FindAllStringSubmatch(p.out.String(), -1) {
		ids[strings.ToLower(m[1])]++
	}
	return ids
}

// logLinesFor returns the log lines naming job id.
func (p *proc) logLinesFor(id string) []string {
	var out []string
	for _, l := range p.lines() {
		if m := jobIDAttr.FindStringSubmatch(l); m != nil && strings.EqualFold(m[1], id) {
			out = append(out, l)
		}
	}
	return out
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[... %d earlier lines]", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// stack is one private redis-server plus the staged processes using it.
type stack struct {
	t       *testing.T
	redis   *redistest.Server
	rdb     redis.UniversalClient
	url     string // STAGED_REDIS_URL; "" means redis.URL()
	api     *proc
	baseURL string
	workers int
	http    *http.Client
	// bare: startAPI does not put the built-in pipelines in the catalogue
	// (tests of the catalogue itself).
	bare bool
}

// newStack starts a private redis-server (with AOF when aof is true).
func newStack(t *testing.T, aof bool) *stack {
	t.Helper()
	binary(t) // skip or fail before starting anything
	srv := redistest.Start(t, redistest.Options{AOF: aof})
	if srv.Embedded {
		t.Fatalf("e2e needs a real redis-server (the staged processes cannot use the embedded one): install redis-server")
	}
	return &stack{t: t, redis: srv, rdb: srv.Client(), http: &http.Client{Timeout: 15 * time.Second}}
}

// env is the environment of a staged process on this stack: its Redis and
// JSON logs (the tests read the "job_id" attribute), plus extra.
func (s *stack) env(extra ...string) []string {
	// The tests compare what SSE sent with the whole event stream, which
	// staged keeps only with STAGED_KEEP_ALL_EVENTS.
	url := s.url
	if url == "" {
		url = s.redis.URL()
	}
	return append([]string{"STAGED_REDIS_URL=" + url, "STAGED_LOG_FORMAT=json", "STAGED_KEEP_ALL_EVENTS=1"}, extra...)
}

// startAPI runs `staged api` on a free port and waits for /readyz.
func (s *stack) startAPI(extra ...string) *proc {
	s.t.Helper()
	addr := "127.0.0.1:" + strconv.Itoa(redistest.FreePort(s.t))
	// The tests poll every 25ms; the rate limit is not what they test.
	env := s.env(append([]string{"STAGED_ADDR=" + addr, "STAGED_RATE_LIMIT=0"}, extra...)...)
	if !s.bare {
		// As if a stock worker had run once: the API knows the built-in
		// pipelines before the test starts one (or when it starts none).
		if err := catalog.PublishDefinitions(context.Background(), s.rdb, builtinRegistry(), 0); err != nil {
			s.t.Fatal(err)
		}
	}
	s.api = startProc(s.t, "api", env, "api")
	s.baseURL = "http://" + addr
	var last string
	s.waitFor(readyLimit, "staged api to answer 200 on /readyz", func() (bool, string) {
		if s.api.exited() {
			s.t.Fatalf("staged api exited before it was ready: %v", s.api.err)
		}
		resp, err := s.http.Get(s.baseURL + "/readyz")
		if err != nil {
			last = err.Error()
			return false, last
		}
		resp.Body.Close()
		last = resp.Status
		return resp.StatusCode == http.StatusOK, last
	})
	return s.api
}

// startWorker runs `staged worker` (STAGED_CONCURRENCY=4 unless extra sets
// it) and waits until it has registered with asynq in Redis.
func (s *stack) startWorker(extra ...string) *proc {
	s.t.Helper()
	s.workers++
	env := s.env("STAGED_CONCURRENCY=4")
	w := startProc(s.t, "worker"+strconv.Itoa(s.workers), append(env, extra...), "worker")
	s.waitWorkerReady(w)
	return w
}

// waitWorkerReady waits until worker w's asynq server has registered its
// heartbeat (asynq:servers holds a member with its pid).
func (s *stack) waitWorkerReady(w *proc) {
	s.t.Helper()
	needle := ":" + strconv.Itoa(w.pid()) + ":"
	s.waitFor(readyLimit, w.name+" to register with asynq (asynq:servers)", func() (bool, string) {
		if w.exited() {
			s.t.Fatalf("%s exited before it was ready: %v", w.name, w.err)
		}
		members, err := s.rdb.ZRange(context.Background(), "asynq:servers", 0, -1).Result()
		if err != nil {
			return false, err.Error()
		}
		for _, m := range members {
			if strings.Contains(m, needle) {
				return true, ""
			}
		}
		return false, fmt.Sprintf("servers: %v", members)
	})
}

// builtinRegistry holds the built-in pipelines, as a stock worker runs them.
func builtinRegistry() *tasks.Registry {
	reg := &tasks.Registry{}
	builtin.Register(reg)
	return reg
}

// builtinQueue is the asynq queue of jobs of built-in pipeline name on
// queue q (one per queue, pipeline and definition).
func builtinQueue(q, name string) string {
	return catalog.QueueName(q, name, builtinRegistry().Get(name).Digest())
}

// waitFor polls cond every 25ms until it is true; after limit it fails the
// test naming what it waited for and the last status cond reported.
func (s *stack) waitFor(limit time.Duration, what string, cond func() (bool, string)) {
	s.t.Helper()
	waitFor(s.t, limit, what, cond)
}

func waitFor(t *testing.T, limit time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ok, status := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last seen: %s", limit, what, status)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// stagedKeys returns every key matching staged:* (SCAN).
func (s *stack) stagedKeys() []string {
	s.t.Helper()
	var keys []string
	iter := s.rdb.Scan(context.Background(), 0, "staged:*", 1000).Iterator()
	for iter.Next(context.Background()) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		s.t.Fatalf("SCAN staged:*: %v", err)
	}
	return keys
}

// holds polls cond every 25ms for the whole of d and fails the test at the
// first poll where it is false: a condition that must stay true.
func (s *stack) holds(d time.Duration, what string, cond func() (bool, string)) {
	s.t.Helper()
	start := time.Now()
	for polls := 0; time.Since(start) < d || polls == 0; polls++ {
		if ok, status := cond(); !ok {
			s.t.Fatalf("expected %s for %v, but after %v (poll %d): %s", what, d, time.Since(start).Round(time.Millisecond), polls+1, status)
		}
		time.Sleep(25 * time.Millisecond)
	}
}
