package server

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

// routes registers every route of the API. It is the only place that does.
//
// Open to all: the probes, /metrics, /openapi.json, the home page and the
// job page (static pages; their scripts call the API with the key they
// are given). With
// keys configured, everything under /v1 needs a key (authenticate) and the
// dashboard an admin key (requireAdmin). The rate limit applies to /v1.
func (s *Server) routes() {
	e := s.echo
	s.middleware(e)

	probe := []string{http.MethodGet, http.MethodHead}
	e.Match(probe, "/healthz", s.healthz)
	e.Match(probe, "/readyz", s.readyz)
	e.GET("/metrics", s.serveMetrics(s.metrics.handler()))
	e.GET("/openapi.json", s.openAPI)

	// Per route, not Group.Use: a group's middleware turns a wrong method
	// (405) into a 404. And wrapped here, once, rather than given to Echo
	// as route middleware, which Echo would wrap anew for every request.
	api := func(h echo.HandlerFunc) echo.HandlerFunc { return s.authenticate(s.rateLimit(h)) }
	v1 := e.Group("/v1")
	v1.POST("/jobs", api(s.submitJob))
	v1.GET("/jobs", api(s.listJobs))
	v1.GET("/jobs/:id", api(s.getJob))
	v1.POST("/jobs/:id/cancel", api(s.cancelJob))
	v1.POST("/jobs/:id/retry", api(s.retryJob))
	v1.GET("/jobs/:id/events", api(s.streamEvents))
	v1.GET("/pipelines", api(s.listPipelines))

	e.GET("/", s.homePage)
	e.GET("/jobs/:id", s.jobPage)

	mon := e.Group(monitoringPath, s.requireAdmin)
	dashboard := s.dashboard()
	mon.Any("", dashboard)
	mon.Any("/*", dashboard)
}
