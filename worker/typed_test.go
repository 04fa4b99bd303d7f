package worker

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/tasks"
)

type typedIn struct {
	N int `json:"n"`
}

type typedOut struct {
	Sum int `json:"sum"`
}

// A typed stage that gets an input it cannot decode (here from an untyped
// stage before it) fails the job at once, without retries, and the job's
// error names the stage and the field.
func TestTypedStageBadInput(t *testing.T) {
	t.Parallel()
	add := func(_ context.Context, in typedIn, _ tasks.Progress) (typedOut, error) {
		return typedOut{Sum: in.N + 1}, nil
	}
	h := newHarness(t, &tasks.Pipeline{
		Name:       "typed",
		Input:      tasks.InputOf(typedIn{N: 1}, nil),
		MaxRetries: 5,
		Stages: []tasks.Stage{
			{Name: "untyped", Run: func(_ context.Context, in json.RawMessage, _ tasks.Progress) (any, error) {
				if strings.Contains(string(in), `"n":2`) {
					return map[string]any{"n": "two"}, nil // the wrong type
				}
				return json.RawMessage(in), nil
			}},
			tasks.StageOf("add", add),
		},
	})
	h.start(h.config())

	ok := h.wait(h.submit("typed", `{"n":1}`, api.Options{}), api.StateSucceeded, 30*time.Second)
	if string(ok.Result) != `{"sum":2}` {
		t.Errorf("result %s, want {\"sum\":2}", ok.Result)
	}

	j := h.wait(h.submit("typed", `{"n":2}`, api.Options{}), api.StateFailed, 30*time.Second)
	if j.Attempt != 1 {
		t.Errorf("failed at attempt %d, want 1: a decode error is permanent", j.Attempt)
	}
	if j.Error == nil || j.Error.Stage != "add" || !strings.Contains(j.Error.Message, "stage add: field n must be integer, not string") {
		t.Errorf("job error %+v, want stage add naming field n", j.Error)
	}
	if got := stageStates(j); got != "succeeded,failed" {
		t.Errorf("stages %s, want succeeded,failed", got)
	}
}
