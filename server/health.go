package server

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/staged-dev/staged/tasks"
)

const (
	// readyTimeout bounds the readiness PING.
	readyTimeout = time.Second
	// policyCacheTTL is how long the maxmemory-policy check is cached.
	policyCacheTTL = 30 * time.Second
)

// healthCache remembers Redis's maxmemory-policy between readiness checks.
type healthCache struct {
	mu      sync.Mutex
	policy  string // "" when unknown (CONFIG refused)
	checked time.Time
}

var healthyBody = []byte(`{"status":"ok"}`)

// healthz is GET /healthz: the process is alive. It touches nothing.
func (s *Server) healthz(c echo.Context) error {
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, healthyBody)
}

// readiness is the body of GET /readyz.
type readiness struct {
	Status   string   `json:"status"`
	Redis    string   `json:"redis"`
	Warnings []string `json:"warnings,omitempty"`
}

// readyz is GET /readyz: 200 when Redis answers a PING within a second
// and is the right kind of node (Config.CheckRedis), 503 otherwise. It
// warns when Redis may evict job keys.
func (s *Server) readyz(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), readyTimeout)
	defer cancel()
	if err := s.cfg.Redis.Ping(ctx).Err(); err != nil {
		return &tasks.Error{Code: tasks.EUNAVAILABLE, Message: "Redis is not answering, so jobs can be neither submitted nor read", Err: err}
	}
	if s.cfg.CheckRedis != nil {
		if err := s.cfg.CheckRedis(ctx); err != nil {
			return &tasks.Error{Code: tasks.EUNAVAILABLE, Message: "jobs cannot be submitted: " + err.Error()}
		}
	}
	r := readiness{Status: "ready", Redis: "ok"}
	if p := s.evictionPolicy(ctx); p != "" && p != "noeviction" {
		r.Warnings = append(r.Warnings, fmt.Sprintf("redis maxmemory-policy is %s; set noeviction or jobs can be evicted", p))
	}
	return c.JSON(http.StatusOK, r)
}

// evictionPolicy returns Redis's maxmemory-policy, cached for
// policyCacheTTL; "" when Redis refuses CONFIG (as managed services do).
func (s *Server) evictionPolicy(ctx context.Context) string {
	h := &s.health
	h.mu.Lock()
	if !h.checked.IsZero() && time.Since(h.checked) < policyCacheTTL {
		p := h.policy
		h.mu.Unlock()
		return p
	}
	h.mu.Unlock()

	var p string
	if m, err := s.cfg.Redis.ConfigGet(ctx, "maxmemory-policy").Result(); err == nil {
		p = m["maxmemory-policy"]
	} else if ctx.Err() != nil {
		return "" // timed out: try again next time
	}
	h.mu.Lock()
	h.policy, h.checked = p, time.Now()
	h.mu.Unlock()
	return p
}
