package server

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
)

// middleware installs the request's outer layer (front): the request id,
// the request log and metrics, panic recovery and the body limit.
// (Authentication and the rate limit guard the /v1 routes: routes.go.)
func (s *Server) middleware(e *echo.Echo) {
	s.newRequestID = newRequestIDGenerator()
	e.Use(s.front)
}

// front is the outer layer of every request, outermost first: the request
// id (requestID), the request log and metrics (observe), panic recovery
// (recoverPanics) and the body limit (limitBody). It is one middleware,
// not four, because Echo wraps its middleware around the handler anew for
// every request: one closure instead of four on the hot paths.
func (s *Server) front(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		rid := requestID(c, s.newRequestID)
		if err := s.guarded(c, next); err != nil {
			c.Error(err) // commit the problem now, so the status observed is the real one
		}
		s.observe(c, rid, time.Since(start))
		return nil
	}
}

// guarded runs next with the body limit and panic recovery.
func (s *Server) guarded(c echo.Context, next echo.HandlerFunc) (err error) {
	defer s.recoverPanics(c, &err)
	if err := s.limitBody(c); err != nil {
		return err
	}
	return next(c)
}

// maxRequestID is the longest X-Request-Id taken from a client.
const maxRequestID = 128

// requestID gives every request an id, echoed in X-Request-Id and logged:
// the client's own X-Request-Id when it is short and plain (plainRequestID),
// otherwise a new one from gen, so that no client can put a megabyte or a
// control character into every log line about its request.
func requestID(c echo.Context, gen func() string) string {
	rid := c.Request().Header.Get(echo.HeaderXRequestID)
	if !plainRequestID(rid) {
		rid = gen()
	}
	c.Response().Header()[echo.HeaderXRequestID] = []string{rid} // the name is canonical: no Set needed
	return rid
}

// plainRequestID reports whether id is 1 to maxRequestID characters of
// letters, digits and - _ . : + / = (UUIDs, ULIDs, base64, trace ids).
func plainRequestID(id string) bool {
	if id == "" || len(id) > maxRequestID {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-_.:+/=", c) >= 0) {
			return false
		}
	}
	return true
}

// newRequestIDGenerator returns a cheap generator of unique request ids: a
// random per-process prefix and a counter, in one allocation.
func newRequestIDGenerator() func() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	prefix := hex.EncodeToString(b[:]) + "-"
	var n atomic.Uint64
	return func() string {
		buf := make([]byte, 0, 32) // on the stack: the string is the one allocation
		buf = append(buf, prefix...)
		return string(strconv.AppendUint(buf, n.Add(1), 36))
	}
}

// observe counts a request that was answered in d in the metrics (route
// pattern, method, status, duration) and writes one slog line about it:
// method, path (never the query), status, duration, request id and tenant
// (the key's name); never headers (Authorization) or bodies. Successful
// requests log at Debug so that the hot paths (submit, poll) pay next to
// nothing unless asked; client errors log at Info, server errors at Error.
func (s *Server) observe(c echo.Context, rid string, d time.Duration) {
	res := c.Response()
	req := c.Request()
	s.metrics.observe(c.Path(), req.Method, res.Status, d)
	level := slog.LevelDebug
	switch {
	case res.Status >= http.StatusInternalServerError:
		level = slog.LevelError
	case res.Status >= http.StatusBadRequest:
		level = slog.LevelInfo
	}
	if !s.log.Enabled(req.Context(), level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("method", req.Method),
		slog.String("path", req.URL.Path),
		slog.Int("status", res.Status),
		slog.Duration("duration", d),
		slog.String("request_id", rid),
	}
	if t := tenantOf(c); t != "" {
		attrs = append(attrs, slog.String("tenant", t)) // the key's name, never its secret
	}
	s.log.LogAttrs(req.Context(), level, "request", attrs...)
}

// recoverPanics, deferred around a handler (guarded), turns its panic
// into a logged 500 problem (*err), so that one bad request never takes the
// process down. http.ErrAbortHandler is re-raised: it is net/http's way
// to abort a response.
func (s *Server) recoverPanics(c echo.Context, err *error) {
	r := recover()
	if r == nil {
		return
	}
	if r == http.ErrAbortHandler {
		panic(r)
	}
	s.log.Error("panic in handler", "method", c.Request().Method, "path", c.Request().URL.Path,
		"request_id", c.Response().Header().Get(echo.HeaderXRequestID),
		"panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	*err = fmt.Errorf("panic: %v", r)
}

// limitBody caps the request body at Config.MaxBody: a declared length
// over it is refused at once, and reading past it fails with an
// *http.MaxBytesError that problemFor maps to 413.
func (s *Server) limitBody(c echo.Context) error {
	req := c.Request()
	if req.ContentLength > s.cfg.MaxBody {
		return &http.MaxBytesError{Limit: s.cfg.MaxBody}
	}
	if req.Body != nil && req.Body != http.NoBody {
		req.Body = http.MaxBytesReader(c.Response(), req.Body, s.cfg.MaxBody)
	}
	return nil
}
