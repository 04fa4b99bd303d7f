package server

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/staged-dev/staged/internal/catalog"
	"github.com/staged-dev/staged/internal/redistest"
)

// Stream ids whose parts do not fit in 64 bits, or after which nothing can
// be read: Redis answers "ERR Invalid stream ID", which was a 500.
var hostileEventIDs = []string{
	"99999999999999999999-0",
	"18446744073709551616-0",
	"0-18446744073709551616",
	"18446744073709551616-18446744073709551616",
	"99999999999999999999-99999999999999999999",
	"1-99999999999999999999",
	"340282366920938463463374607431768211456-0",
	"18446744073709551615-18446744073709551615",
	"0-99999999999999999999999999999999999999",
}

func TestHostileLastEventID(t *testing.T) {
	e := newEnv(t)
	j := e.submit(`{"type":"double"}`, http.StatusAccepted)
	for _, id := range hostileEventIDs {
		t.Run(id, func(t *testing.T) {
			res, b := e.do("GET", "/v1/jobs/"+j.ID+"/events", "", nil, "Last-Event-ID", id)
			assertProblem(t, res, b, 400, "Last-Event-ID must be an event id")
			res, b = e.do("GET", "/v1/jobs/"+j.ID+"/events?last_event_id="+url.QueryEscape(id), "", nil)
			assertProblem(t, res, b, 400, "Last-Event-ID must be an event id")
		})
	}
	// The largest ids that can still be resumed from are fine.
	for _, id := range []string{"18446744073709551615-0", "0-18446744073709551614", "0"} {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", e.url+"/v1/jobs/"+j.ID+"/events", nil)
		req.Header.Set("Last-Event-ID", id)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != http.StatusOK {
			t.Errorf("Last-Event-ID %s: status %d", id, res.StatusCode)
		}
		cancel()
		res.Body.Close()
	}
}

func TestStrictJSONBodies(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name, body, detail, field string
	}{
		{"invalid UTF-8 ff fe", "{\"type\":\"double\",\"input\":{\"label\":\"\xff\xfe\"}}", "not valid UTF-8", "input.label"},
		{"truncated sequence", "{\"type\":\"double\",\"input\":{\"label\":\"\xe2\x82\"}}", "not valid UTF-8", "input.label"},
		{"overlong", "{\"type\":\"double\",\"input\":{\"label\":\"\xc0\xaf\"}}", "not valid UTF-8", "input.label"},
		{"surrogate", "{\"type\":\"double\",\"input\":{\"label\":\"\xed\xa0\x80\"}}", "not valid UTF-8", "input.label"},
		{"five bytes", "{\"type\":\"double\",\"input\":{\"label\":\"\xf8\x88\x80\x80\x80\"}}", "not valid UTF-8", "input.label"},
		{"invalid UTF-8 in the type", "{\"type\":\"double\xff\"}", "not valid UTF-8", "type"},
		{"invalid UTF-8 in a key", "{\"type\":\"double\",\"input\":{\"\xff\":1}}", "not valid UTF-8", "input"},
		{"duplicate key", `{"type":"double","type":"shaped"}`, `the key "type" twice`, "type"},
		{"duplicate key in the input", `{"type":"double","input":{"n":1,"n":2}}`, `the key "n" twice in the object at /input`, "input.n"},
		{"key in capitals", `{"TYPE":"double"}`, `unknown field "TYPE"`, "TYPE"},
		{"key in mixed case", `{"type":"double","Input":{"n":2}}`, `unknown field "Input"`, "Input"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, b := e.do("POST", "/v1/jobs", "application/json", strings.NewReader(tt.body))
			p := assertProblem(t, res, b, 400, tt.detail)
			if p.Field != tt.field {
				t.Errorf("field %q, want %q", p.Field, tt.field)
			}
		})
	}
	if n := e.dbsize(); n != 0 {
		t.Errorf("rejected bodies wrote %d keys", n)
	}
}

func TestRequestIDFromClient(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name, id string
		kept     bool
	}{
		{"plain", "req-123_abc.DEF:9", true},
		{"uuid", "0b6c0b6c-0b6c-4b6c-8b6c-0b6c0b6c0b6c", true},
		{"a megabyte", strings.Repeat("a", 1_000_000), false},
		{"129 bytes", strings.Repeat("b", 129), false},
		{"spaces and markup", "<script>alert(1)</script> x", false},
		{"non-ASCII", "réq", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, _ := e.do("GET", "/v1/jobs/"+unknownID, "", nil, "X-Request-Id", tt.id)
			got := res.Header.Get("X-Request-Id")
			if tt.kept && got != tt.id {
				t.Errorf("X-Request-Id %q, want the client's %q", got, tt.id)
			}
			if !tt.kept && (got == tt.id || got == "" || len(got) > 64) {
				t.Errorf("X-Request-Id %.80q: want a new short id", got)
			}
		})
	}
	for _, line := range strings.Split(e.logs.String(), "\n") {
		if len(line) > 4096 {
			t.Fatalf("a log line of %d bytes", len(line))
		}
	}
}

func TestMonitoringUnknownThings(t *testing.T) {
	e := newEnv(t)
	e.submit(`{"type":"double"}`, http.StatusAccepted) // asynq knows "default" now
	for _, path := range []string{
		"/monitoring/api/metrics",
		"/monitoring/api/metrics?endtime=1&duration=60",
		"/monitoring/api/queues/nope",
		"/monitoring/api/queues/nope/groups",
		"/monitoring/api/queues/nope/pending_tasks",
		"/monitoring/api/queues/nope/completed_tasks",
		"/monitoring/api/queues/nope/tasks/x",
		"/monitoring/api/queues/%00",
		"/monitoring/api/queues/" + strings.Repeat("q", 1000),
	} {
		res, b := e.do("GET", path, "", nil)
		if res.StatusCode != http.StatusNotFound {
			t.Errorf("GET %.80s: %d, want 404: %.200s", path, res.StatusCode, b)
		}
	}
	q := catalog.QueueName("default", "double", testRegistry().Get("double").Digest()) // the job's asynq queue
	for _, path := range []string{"/monitoring/api/queues/" + q, "/monitoring/api/queues/" + q + "/pending_tasks", "/monitoring/api/queues/" + q + "/groups"} {
		if res, b := e.do("GET", path, "", nil); res.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d: %.200s", path, res.StatusCode, b)
		}
	}
}

// dropper is a "Redis" that reads each command and closes the connection
// without answering: every command ends in io.EOF or a reset.
func dropper(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				buf := make([]byte, 512)
				c.Read(buf)
				c.Close()
			}()
		}
	}()
	return ln.Addr().String()
}

func TestDroppedConnectionIs503(t *testing.T) {
	addr := dropper(t)
	rdb := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, DisableIdentity: true})
	t.Cleanup(func() { rdb.Close() })
	srv, err := New(Config{Redis: rdb, RedisConnOpt: asynq.RedisClientOpt{Addr: addr}, Registry: testRegistry(),
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	e := &env{t: t, url: hs.URL}
	for _, r := range []struct{ method, path, body string }{
		{"GET", "/v1/jobs/" + unknownID, ""},
		{"POST", "/v1/jobs", `{"type":"double"}`},
		{"POST", "/v1/jobs/" + unknownID + "/cancel", ""},
	} {
		var body *strings.Reader
		ct := ""
		if r.body != "" {
			body, ct = strings.NewReader(r.body), "application/json"
		} else {
			body = strings.NewReader("")
		}
		res, b := e.do(r.method, r.path, ct, body)
		assertProblem(t, res, b, http.StatusServiceUnavailable, "unavailable")
		if res.Header.Get("Retry-After") == "" {
			t.Errorf("%s %s: 503 without Retry-After", r.method, r.path)
		}
	}
}

var _ = redistest.Eventually
var _ = time.Second
