package builtin

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/staged-dev/staged/stagedtest"
	"github.com/staged-dev/staged/tasks"
)

// normalize returns pipeline p's normalised input for raw, failing the
// test on an error.
func normalize(t testing.TB, p *tasks.Pipeline, raw string) json.RawMessage {
	t.Helper()
	in, err := p.Input.Normalize(json.RawMessage(raw))
	if err != nil {
		t.Fatalf("%s: Normalize(%s): %v", p.Name, raw, err)
	}
	return in
}

// stagesFor returns the stages of a job of p with normalised input in.
func stagesFor(t testing.TB, p *tasks.Pipeline, in json.RawMessage) []tasks.Stage {
	t.Helper()
	st, err := p.StagesFor(in)
	if err != nil {
		t.Fatalf("%s: StagesFor(%s): %v", p.Name, in, err)
	}
	return st
}

// runStages runs stages in order from in with stagedtest, as the worker
// does, failing the test on an error. It returns every stage's encoded
// output (the checkpoints; the last is the result).
func runStages(t testing.TB, ctx context.Context, stages []tasks.Stage, in json.RawMessage) []json.RawMessage {
	t.Helper()
	res, err := stagedtest.RunStages(ctx, stages, in)
	if err != nil {
		t.Fatalf("stage %s: %v", res.Failed, err)
	}
	return res.Outputs
}

// run runs a whole job of p with input raw with stagedtest, failing the
// test on an error.
func run(t testing.TB, p *tasks.Pipeline, raw string) *stagedtest.Result {
	t.Helper()
	res, err := stagedtest.RunPipeline(context.Background(), p, raw)
	if err != nil {
		t.Fatalf("%s with input %s: %v", p.Name, raw, err)
	}
	return res
}

// signalOnReport is a stagedtest option that sends on the returned channel
// (without blocking) after each progress report.
func signalOnReport() (stagedtest.Option, <-chan struct{}) {
	ch := make(chan struct{}, 1)
	return stagedtest.OnReport(func(stagedtest.Report) {
		select {
		case ch <- struct{}{}:
		default:
		}
	}), ch
}
