package server

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

// routes registers every route of the API. It is the only place that does.
func (s *Server) routes() {
	e := s.echo
	s.middleware(e)

	probe := []string{http.MethodGet, http.MethodHead}
	e.Match(probe, "/healthz", s.healthz)
	e.Match(probe, "/readyz", s.readyz)

	v1 := e.Group("/v1")
	v1.POST("/jobs", s.submitJob)
	v1.GET("/jobs/:id", s.getJob)
	v1.POST("/jobs/:id/cancel", s.cancelJob)
	v1.GET("/jobs/:id/events", s.streamEvents)
	v1.GET("/pipelines", s.listPipelines)

	e.GET("/jobs/:id", s.jobPage)

	mon := e.Group("/monitoring", s.requireAdmin)
	dashboard := echo.WrapHandler(s.monitor)
	mon.Any("", dashboard)
	mon.Any("/*", dashboard)
}
