package server

import (
	"encoding/json"
	"testing"
	"time"
)

// TestPipelines: GET /v1/pipelines shows the catalogue: each pipeline's
// definition (stages, input fields, defaults and schema, digest) and who
// runs it. The test's pipelines are published by New without a worker.
func TestPipelines(t *testing.T) {
	e := newEnv(t)
	res, b := e.do("GET", "/v1/pipelines", "", nil)
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, type %q, body %s", res.StatusCode, res.Header.Get("Content-Type"), b)
	}
	var got struct {
		Pipelines []pipelineInfo `json:"pipelines"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	reg := testRegistry()
	if len(got.Pipelines) != 2 || got.Pipelines[0].Name != "double" || got.Pipelines[1].Name != "shaped" {
		t.Fatalf("pipelines = %s", b)
	}
	for _, p := range got.Pipelines {
		want := reg.Get(p.Name).Definition()
		wantJSON, _ := json.Marshal(want)
		gotJSON, _ := json.Marshal(p.Definition)
		if !jsonEqual(gotJSON, string(wantJSON)) {
			t.Errorf("%s: definition\n %s\nwant\n %s", p.Name, gotJSON, wantJSON)
		}
		if p.Workers != 0 || time.Since(p.LastSeen) > time.Minute || len(p.Definitions) != 1 ||
			p.Definitions[0].Digest != want.Digest || p.Definitions[0].FirstSeen.IsZero() {
			t.Errorf("%s: workers %d, last seen %v, definitions %+v", p.Name, p.Workers, p.LastSeen, p.Definitions)
		}
	}
	d := got.Pipelines[0]
	if d.Description != "two stages for tests" || len(d.Stages) != 2 || d.Stages[0].Weight != 2 ||
		d.Stages[1].Timeout == nil || *d.Stages[1].Timeout != "1m0s" || d.Timeout != "1h0m0s" || d.MaxRetries != 2 ||
		!jsonEqual(d.Input.Defaults, `{"n":1,"label":"x"}`) || len(d.Input.Schema) == 0 {
		t.Errorf("double = %+v", d)
	}
	if !got.Pipelines[1].StagesFromInput {
		t.Errorf("shaped: stages_from_input is false")
	}
}
