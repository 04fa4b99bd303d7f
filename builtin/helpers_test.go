package builtin

import (
	"context"
	"encoding/json"
	"sync"
	"testing"

	"github.com/staged-dev/staged/tasks"
)

// report is one call of Progress.Report.
type report struct {
	frac    float64
	partial any
}

// fakeProgress records reports and, when signal is set, sends on it
// (without blocking) after each one.
type fakeProgress struct {
	mu      sync.Mutex
	reports []report
	signal  chan struct{}
}

func (p *fakeProgress) Report(frac float64, partial any) {
	p.mu.Lock()
	p.reports = append(p.reports, report{frac, partial})
	p.mu.Unlock()
	if p.signal != nil {
		select {
		case p.signal <- struct{}{}:
		default:
		}
	}
}

func (p *fakeProgress) all() []report {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]report(nil), p.reports...)
}

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

// runStages runs stages in order from in, as the worker does: each output
// is JSON-encoded and becomes the next stage's in. It returns every stage's
// encoded output (the checkpoints; the last is the result).
func runStages(t testing.TB, ctx context.Context, stages []tasks.Stage, in json.RawMessage, p tasks.Progress) []json.RawMessage {
	t.Helper()
	var outs []json.RawMessage
	for _, s := range stages {
		out, err := s.Run(ctx, in, p)
		if err != nil {
			t.Fatalf("stage %s: %v", s.Name, err)
		}
		in, err = json.Marshal(out)
		if err != nil {
			t.Fatalf("stage %s: encode output: %v", s.Name, err)
		}
		outs = append(outs, in)
	}
	return outs
}

// run runs a whole job of p with input raw and returns its result.
func run(t testing.TB, p *tasks.Pipeline, raw string, prog tasks.Progress) json.RawMessage {
	t.Helper()
	in := normalize(t, p, raw)
	outs := runStages(t, context.Background(), stagesFor(t, p, in), in, prog)
	return outs[len(outs)-1]
}
