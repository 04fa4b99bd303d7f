package server

import (
	"encoding/json"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/staged-dev/staged/tasks"
)

// pipelineInfo describes one job type in GET /v1/pipelines.
type pipelineInfo struct {
	Name        string      `json:"name"`
	Description string      `json:"description"`
	Stages      []stageInfo `json:"stages"`
	Input       inputInfo   `json:"input"`
	// Timeout is the default per-attempt timeout, a Go duration.
	Timeout    string `json:"timeout"`
	MaxRetries int    `json:"max_retries"`
}

type stageInfo struct {
	Name   string  `json:"name"`
	Weight float64 `json:"weight"`
	// Timeout is the stage's own timeout, or null when only the job's applies.
	Timeout *string `json:"timeout"`
}

type inputInfo struct {
	Fields   []tasks.Field   `json:"fields"`
	Defaults json.RawMessage `json:"defaults"`
}

// listPipelines is GET /v1/pipelines: the registered job types, their
// stages, input fields and defaults.
func (s *Server) listPipelines(c echo.Context) error {
	all := s.cfg.Registry.All()
	out := struct {
		Pipelines []pipelineInfo `json:"pipelines"`
	}{Pipelines: make([]pipelineInfo, 0, len(all))}
	for _, p := range all {
		out.Pipelines = append(out.Pipelines, describe(p))
	}
	b, err := tasks.Marshal(out)
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, b)
}

func describe(p *tasks.Pipeline) pipelineInfo {
	info := pipelineInfo{
		Name: p.Name, Description: p.Description, MaxRetries: p.MaxRetries,
		Timeout: tasks.DefaultJobTimeout.String(),
		Stages:  make([]stageInfo, len(p.Stages)),
		Input:   inputInfo{Fields: []tasks.Field{}, Defaults: json.RawMessage(`{}`)},
	}
	if p.Timeout > 0 {
		info.Timeout = p.Timeout.String()
	}
	for i, st := range p.Stages {
		si := stageInfo{Name: st.Name, Weight: st.Weight}
		if si.Weight <= 0 {
			si.Weight = 1
		}
		if st.Timeout > 0 {
			t := st.Timeout.String()
			si.Timeout = &t
		}
		info.Stages[i] = si
	}
	if p.Input != nil {
		if p.Input.Fields != nil {
			info.Input.Fields = p.Input.Fields
		}
		if len(p.Input.Defaults) > 0 {
			info.Input.Defaults = p.Input.Defaults
		}
	}
	return info
}
