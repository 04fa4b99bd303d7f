package server

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"
	"github.com/labstack/echo/v4"

	"github.com/staged-dev/staged/internal/store"
	"github.com/staged-dev/staged/tasks"
)

// monitoringPath is where the asynqmon dashboard is mounted.
const monitoringPath = "/monitoring"

// newMonitor builds the asynqmon dashboard, read-only unless write is
// true. asynqmon panics on a connection option it does not support; that
// becomes an error here. Who may open it is decided by requireAdmin
// (auth.go).
//
// asynqmon shows every task's payload; staged's payloads are only the job
// id and its task generation (store.Payload), never the job's input.
func newMonitor(opt asynq.RedisConnOpt, write bool) (h *asynqmon.HTTPHandler, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("server: asynqmon: %v", r)
		}
	}()
	return asynqmon.New(asynqmon.Options{RootPath: monitoringPath, RedisConnOpt: opt, ReadOnly: !write}), nil
}

// dashboard serves the asynqmon handler with what asynqmon gets wrong
// fixed in front of it:
//
//   - GET /api/metrics needs a Prometheus server, which staged never
//     configures (and asynqmon's page does not offer without one): 404,
//     not asynqmon's 500.
//   - a queue that does not exist (/api/queues/{q}, its tasks, groups,
//     :pause ...) is a 404 problem, not asynqmon's 500;
//   - with writes on, a write (any method but GET, HEAD, OPTIONS) must come
//     from the dashboard's own origin: http.CrossOriginProtection (Go's own
//     CSRF guard: Sec-Fetch-Site, else Origin against Host) refuses a form
//     another site submits with the browser's cached Basic credentials.
//     Clients that are not browsers send neither header and pass.
func (s *Server) dashboard() echo.HandlerFunc {
	h := echo.WrapHandler(s.monitor)
	csrf := http.NewCrossOriginProtection()
	return func(c echo.Context) error {
		req := c.Request()
		write := req.Method != http.MethodGet && req.Method != http.MethodHead && req.Method != http.MethodOptions
		if write && !s.cfg.MonitoringWrite {
			return h(c) // asynqmon answers 405: the dashboard is read-only
		}
		if write {
			if err := csrf.Check(req); err != nil {
				return tasks.Errorf(tasks.EFORBIDDEN, "the dashboard only accepts changes from its own pages (%v)", err)
			}
		}
		api, ok := strings.CutPrefix(req.URL.Path, monitoringPath+"/api/")
		if !ok {
			return h(c)
		}
		if api == "metrics" {
			return tasks.Errorf(tasks.ENOTFOUND, "the dashboard has no metrics: no Prometheus server is configured for it (staged's own metrics are at /metrics)")
		}
		if rest, ok := strings.CutPrefix(api, "queues/"); ok {
			q, _, _ := strings.Cut(rest, "/")
			for _, action := range []string{":pause", ":resume"} {
				q = strings.TrimSuffix(q, action)
			}
			if err := s.queueExists(q); err != nil {
				return err
			}
		}
		return h(c)
	}
}

// queueExists returns nil if asynq knows queue q, a tasks.ENOTFOUND error
// if it does not, and tasks.EUNAVAILABLE if Redis cannot say.
func (s *Server) queueExists(q string) error {
	qs, err := s.inspector.Queues()
	if err != nil {
		return store.RedisError("dashboard: queues", err)
	}
	if !slices.Contains(qs, q) {
		if len(q) > maxQueueName || !utf8.ValidString(q) {
			return tasks.Errorf(tasks.ENOTFOUND, "no such queue")
		}
		return tasks.Errorf(tasks.ENOTFOUND, "no queue %q", q)
	}
	return nil
}
