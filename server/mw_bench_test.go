package server

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"

	"github.com/staged-dev/staged/internal/redistest"
)

// The middleware benchmarks measure what the API's request path costs
// besides the handler's own work: the same stub handler (a 1.1 KB JSON
// body written as it is) behind staged's middleware and the rate limiter
// (on, at a rate never reached, as the bench runs it) and behind a bare
// Echo, as peers/asynq-raw serves its routes.

var stubRecord = []byte(`{"id":"` + strings.Repeat("x", 1100) + `"}`)

func stub(c echo.Context) error {
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, stubRecord)
}

// nullWriter is a reusable http.ResponseWriter that keeps nothing.
type nullWriter struct{ h http.Header }

func (w *nullWriter) Header() http.Header         { return w.h }
func (w *nullWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *nullWriter) WriteHeader(int)             {}

func serveStub(b *testing.B, h http.Handler, target string) {
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		req, _ := http.NewRequestWithContext(context.Background(), "GET", target, nil)
		req.RemoteAddr = "127.0.0.1:40000"
		w := &nullWriter{h: http.Header{}}
		for pb.Next() {
			clear(w.h)
			ctx, cancel := context.WithCancel(context.Background()) // as net/http gives each request
			h.ServeHTTP(w, req.WithContext(ctx))
			cancel()
		}
	})
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}

// cpuTime is the process's CPU time (user + system): on a loaded machine,
// the wall time per request says little.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkMiddleware(b *testing.B) {
	r := redistest.Start(b)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	b.Cleanup(func() { rdb.Close() })
	srv, err := New(Config{Redis: rdb, RedisConnOpt: asynq.RedisClientOpt{Addr: r.Addr}, Registry: testRegistry(),
		RateLimit: 1e6, Logger: slog.New(slog.NewJSONHandler(discard{}, nil))})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })
	srv.echo.GET("/v1/stub/:id", srv.authenticate(srv.rateLimit(stub))) // wrapped once, as routes() does
	srv.metrics.route("/v1/stub/:id")
	serveStub(b, srv.Handler(), "/v1/stub/abc")
}

func BenchmarkPeerMiddleware(b *testing.B) {
	e := echo.New()
	e.GET("/status/:id", stub)
	serveStub(b, e, "/status/abc")
}
