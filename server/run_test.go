package server

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/internal/redistest"
)

func TestRunDrains(t *testing.T) {
	r := redistest.Start(t)
	srv, err := New(Config{Redis: r.Client(), RedisConnOpt: asynq.RedisClientOpt{Addr: r.Addr}, Registry: testRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	addr := "127.0.0.1:" + strconv.Itoa(redistest.FreePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, addr) }()
	base := "http://" + addr
	redistest.Eventually(t, 5*time.Second, "the API listening", func() bool {
		res, err := http.Get(base + "/healthz")
		if err == nil {
			res.Body.Close()
		}
		return err == nil && res.StatusCode == 200
	})
	// An open stream must not hold up the shutdown.
	res, err := http.Post(base+"/v1/jobs", "application/json", strings.NewReader(`{"type":"double"}`))
	if err != nil {
		t.Fatal(err)
	}
	var j api.Job
	json.NewDecoder(res.Body).Decode(&j)
	res.Body.Close()
	stream, err := http.Get(base + "/v1/jobs/" + j.ID + "/events")
	if err != nil || stream.StatusCode != 200 {
		t.Fatalf("events: %v", err)
	}
	defer stream.Body.Close()

	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5s of the cancel")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("drain took %v", d)
	}
	if _, err := io.ReadAll(stream.Body); err != nil {
		t.Errorf("the stream did not end cleanly: %v", err)
	}
}

func TestNewValidates(t *testing.T) {
	r := redistest.Start(t)
	ok := Config{Redis: r.Client(), RedisConnOpt: asynq.RedisClientOpt{Addr: r.Addr}, Registry: testRegistry()}
	tests := []struct {
		name    string
		change  func(*Config)
		wantErr string
	}{
		{"valid", func(*Config) {}, ""},
		{"no redis", func(c *Config) { c.Redis = nil }, "Config.Redis is required"},
		{"no conn opt", func(c *Config) { c.RedisConnOpt = nil }, "Config.RedisConnOpt is required"},
		{"negative", func(c *Config) { c.MaxWait = -time.Second }, "must not be negative"},
		{"negative rate limit", func(c *Config) { c.RateLimit = -1 }, "Config.RateLimit"},
		{"rate limit NaN", func(c *Config) { c.RateLimit = math.NaN() }, "Config.RateLimit"},
		{"queues", func(c *Config) { c.Queues = []string{"critical", "default"} }, ""},
		{"bad queue name", func(c *Config) { c.Queues = []string{"default", "Big Queue"} }, `Config.Queues: "Big Queue" is not`},
		{"empty queue name", func(c *Config) { c.Queues = []string{""} }, `Config.Queues: "" is not`},
		{"duplicate queue", func(c *Config) { c.Queues = []string{"low", "low"} }, `Config.Queues: "low" appears twice`},
		{"keys", withKeys, ""},
		{"two keys, one secret", func(c *Config) {
			c.Keys = []Key{KeyFromSecret("a", "s", false), KeyFromSecret("b", "s", false)}
		}, `keys "a" and "b" have the same secret`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.change(&cfg)
			srv, err := New(cfg)
			if err == nil {
				srv.Close()
			}
			if (err == nil) != (tt.wantErr == "") || err != nil && !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}
