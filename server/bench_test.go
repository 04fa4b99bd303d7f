package server

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"

	"github.com/staged-dev/staged/internal/redistest"
)

// The benchmarks compare the two hot paths with the minimal Echo handlers
// of peers/asynq-raw (the bar is ≥ 0.9× their rate), in process, against
// one real Redis, with the logger at its production level (Info).

func benchServer(b *testing.B) (*Server, *redistest.Server) {
	r := redistest.Start(b)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	b.Cleanup(func() { rdb.Close() })
	srv, err := New(Config{Redis: rdb, RedisConnOpt: asynq.RedisClientOpt{Addr: r.Addr}, Registry: testRegistry(),
		RateLimit: 1e6, // on, as by default, at a rate never reached (as bench/ runs it)
		// The per-tenant live-job limit stays on, at a count no run reaches (as bench/ runs it).
		TenantMaxLive: 1 << 30,
		Logger:        slog.New(slog.NewJSONHandler(discard{}, nil))})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })
	return srv, r
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func serve(b *testing.B, h http.Handler, method, target, body string, want int) {
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer()
	cpu0 := cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			var req *http.Request
			if body != "" {
				req = httptest.NewRequest(method, target, strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
			} else {
				req = httptest.NewRequest(method, target, nil)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != want {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
	})
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}

func BenchmarkGetJob(b *testing.B) {
	srv, _ := benchServer(b)
	w := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/v1/jobs", strings.NewReader(`{"type":"double"}`))
	req.Header.Set("Content-Type", "application/json")
	srv.Handler().ServeHTTP(w, req)
	var j struct{ ID string }
	json.Unmarshal(w.Body.Bytes(), &j)
	serve(b, srv.Handler(), "GET", "/v1/jobs/"+j.ID, "", 200)
}

func BenchmarkSubmit(b *testing.B) {
	srv, _ := benchServer(b)
	serve(b, srv.Handler(), "POST", "/v1/jobs", `{"type":"double","input":{"n":3}}`, 202)
}

// peerEcho is peers/asynq-raw -mode http.
func peerEcho(b *testing.B) *echo.Echo {
	r := redistest.Start(b)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	c := asynq.NewClient(asynq.RedisClientOpt{Addr: r.Addr})
	b.Cleanup(func() { c.Close(); rdb.Close() })
	e := echo.New()
	e.GET("/status/:id", func(ec echo.Context) error {
		m, err := rdb.HGetAll(ec.Request().Context(), "peer-raw:job:"+ec.Param("id")).Result()
		if err != nil {
			return err
		}
		if len(m) == 0 {
			return ec.JSON(http.StatusNotFound, map[string]string{"error": "not found"})
		}
		return ec.JSON(http.StatusOK, m)
	})
	e.POST("/submit", func(ec echo.Context) error {
		var body struct {
			Type  string          `json:"type"`
			Input json.RawMessage `json:"input"`
		}
		if err := ec.Bind(&body); err != nil {
			return err
		}
		id := uuid.NewString()
		ctx := ec.Request().Context()
		key := "peer-raw:job:" + id
		p := rdb.Pipeline()
		p.HSet(ctx, key, "id", id, "type", body.Type, "state", "queued", "input", string(body.Input))
		p.Expire(ctx, key, time.Hour)
		if _, err := p.Exec(ctx); err != nil {
			return err
		}
		if _, err := c.Enqueue(asynq.NewTask(body.Type, body.Input), asynq.TaskID(id), asynq.Queue("peer-raw-http")); err != nil {
			return err
		}
		return ec.JSON(http.StatusAccepted, map[string]string{"id": id, "state": "queued"})
	})
	rdb.HSet(context.Background(), "peer-raw:job:x", "id", "x", "type", "double", "state", "queued", "input", `{"n":3}`)
	return e
}

func BenchmarkPeerStatus(b *testing.B) {
	serve(b, peerEcho(b), "GET", "/status/x", "", 200)
}

func BenchmarkPeerSubmit(b *testing.B) {
	serve(b, peerEcho(b), "POST", "/submit", `{"type":"double","input":{"n":3}}`, 202)
}
