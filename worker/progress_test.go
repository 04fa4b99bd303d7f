package worker

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/internal/redistest"
	"github.com/staged-dev/staged/tasks"
)

func TestProgressCoalesced(t *testing.T) {
	t.Parallel()
	const reports = 10000
	const flushInterval = 50 * time.Millisecond
	gate := make(chan struct{})
	var took atomic.Int64 // how long the reporting loop ran
	p := &tasks.Pipeline{Name: "chatty", Stages: []tasks.Stage{
		{Name: "train", Run: stageFunc(func(ctx context.Context, _ string, p tasks.Progress) (any, error) {
			start := time.Now()
			for i := range reports {
				p.Report(float64(i+1)/reports, map[string]int{"epoch": i})
			}
			took.Store(int64(time.Since(start)))
			<-gate
			// A stage of FlushInterval or more: its end is written at once.
			<-time.After(flushInterval - time.Since(start))
			return "model", nil
		})},
		{Name: "package", Run: stageFunc(func(_ context.Context, in string, _ tasks.Progress) (any, error) {
			return map[string]string{"model": in}, nil
		})},
	}}
	h := newHarness(t, p)
	cfg := h.config()
	cfg.FlushInterval = flushInterval
	h.start(cfg)
	id := h.submit("chatty", `{}`, api.Options{})

	// The latest report is written while the stage still runs.
	redistest.Eventually(t, 5*time.Second, "the last report to be written", func() bool {
		j := h.job(id)
		return j.State == api.StateRunning && j.Progress == 0.5 && string(j.Partial) == `{"epoch":9999}`
	})
	writesWhileRunning := len(h.events(id))
	close(gate)
	j := h.wait(id, api.StateSucceeded, 5*time.Second)
	if j.Progress != 1 || string(j.Partial) != `{"epoch":9999}` || string(j.Result) != `{"model":"model"}` {
		t.Fatalf("record = %+v", j)
	}
	// The flushes (the first carries train's start) + train→package +
	// finish; the claim and submit write no event.
	flushes := writesWhileRunning
	bound := int(time.Duration(took.Load())/cfg.FlushInterval) + 2
	if flushes < 1 || flushes > bound {
		t.Fatalf("%d progress writes for %d reports over %v, want 1..%d", flushes, reports, time.Duration(took.Load()), bound)
	}
	if n := len(h.events(id)); n != writesWhileRunning+2 {
		t.Fatalf("%d writes in all, want %d", n, writesWhileRunning+2)
	}
	evs := h.events(id)
	if last := evs[len(evs)-2]; last.Stage.Name != "package" || string(last.Partial) != `{"epoch":9999}` {
		t.Fatalf("boundary record = %+v", last)
	}
}
