package server

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/internal/catalog"
	"github.com/staged-dev/staged/tasks"
)

// pipelineInfo describes one job type in GET /v1/pipelines: the
// definition a submit uses now, and who runs it.
type pipelineInfo struct {
	api.Definition
	// Workers is how many live workers run the pipeline (any definition).
	Workers int `json:"workers"`
	// LastSeen is the last heartbeat of a worker that runs it.
	LastSeen time.Time `json:"last_seen"`
	// Definitions are all the definitions in the catalogue, the one a
	// submit uses first; more than one during a rolling deploy that
	// changes the pipeline.
	Definitions []definitionInfo `json:"definitions"`
}

type definitionInfo struct {
	Digest    string                `json:"digest"`
	Stages    []api.StageDefinition `json:"stages"`
	Workers   int                   `json:"workers"`
	FirstSeen time.Time             `json:"first_seen"`
	LastSeen  time.Time             `json:"last_seen"`
}

// listPipelines is GET /v1/pipelines: the pipeline catalogue the workers
// publish, with live worker counts and last-seen times.
func (s *Server) listPipelines(c echo.Context) error {
	ctx, cancel := s.redisCtx(c.Request().Context())
	defer cancel()
	snap, err := s.catalog.Get(ctx, time.Second)
	if err != nil {
		return &tasks.Error{Code: tasks.EUNAVAILABLE, Message: "the pipeline catalogue is unavailable (Redis does not answer); try again shortly", Err: err}
	}
	out := struct {
		Pipelines []pipelineInfo `json:"pipelines"`
	}{Pipelines: make([]pipelineInfo, 0, len(snap.Pipelines))}
	for _, name := range snap.Names() {
		es, _ := snap.Entries(name)
		out.Pipelines = append(out.Pipelines, describe(es))
	}
	b, err := api.Marshal(out)
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, b)
}

func describe(es []*catalog.Entry) pipelineInfo {
	info := pipelineInfo{Definition: es[0].Def, Definitions: make([]definitionInfo, len(es))}
	for i, e := range es {
		info.Workers += e.Workers
		if e.LastSeen.After(info.LastSeen) {
			info.LastSeen = e.LastSeen
		}
		info.Definitions[i] = definitionInfo{Digest: e.Def.Digest, Stages: e.Def.Stages, Workers: e.Workers,
			FirstSeen: e.FirstSeen, LastSeen: e.LastSeen}
	}
	return info
}

// serveMetrics serves the metrics with a zero counter for every job type in
// the catalogue, so that a dashboard shows a type before its first job.
func (s *Server) serveMetrics(h echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx, cancel := s.redisCtx(c.Request().Context())
		if snap, err := s.catalog.Get(ctx, 0); err == nil {
			for _, name := range snap.Names() {
				s.metrics.submitted.WithLabelValues(name)
				s.metrics.canceled.WithLabelValues(name)
			}
		}
		cancel()
		return h(c)
	}
}
