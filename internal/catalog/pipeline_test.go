package catalog

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/staged-dev/staged/tasks"
)

type crawlInput struct {
	Count int    `json:"count" jsonschema:"minimum=1"`
	URL   string `json:"url"`
}

// TestPipelineOf: a definition becomes a pipeline with its stages, timeout
// and input checks, and one whose digest does not match its content is
// refused.
func TestPipelineOf(t *testing.T) {
	src := &tasks.Pipeline{Name: "crawl", Input: tasks.InputOf(crawlInput{Count: 1}, nil),
		Stages: []tasks.Stage{{Name: "fetch"}, {Name: "parse"}}}
	d := src.Definition()
	p, err := PipelineOf(&d)
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "crawl" || len(p.Stages) != 2 || p.Stages[1].Name != "parse" || p.Timeout != tasks.DefaultJobTimeout {
		t.Errorf("PipelineOf = %+v", p)
	}
	if p.Digest() != src.Digest() {
		t.Errorf("digest %s, want the source's %s", p.Digest(), src.Digest())
	}
	_, err = p.Input.Normalize(json.RawMessage(`{"count":0}`))
	var e *tasks.Error
	if !errors.As(err, &e) || e.Field != "input.count" {
		t.Errorf("the definition's pipeline accepted count 0: %v", err)
	}
	d.Stages[0].Name = "changed"
	if _, err := PipelineOf(&d); err == nil {
		t.Error("a definition whose digest does not match its content was accepted")
	}
}
