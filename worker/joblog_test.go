package worker

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
)

// countingHandler is a recorder that counts its WithAttrs calls.
type countingHandler struct {
	*recorder
	withs *atomic.Int32
}

func (h countingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	h.withs.Add(1)
	return countingHandler{h.recorder.WithAttrs(as).(*recorder), h.withs}
}

// A job's logger adds the job's id to its handler only for a line the
// handler writes, and every such line has it.
func TestJobLogAddsTheIDWhenWriting(t *testing.T) {
	rec := newRecorder()
	var withs atomic.Int32
	w := &Worker{log: slog.New(countingHandler{rec, &withs}).With("component", "worker")}
	withs.Store(0)

	log := w.jobLog("j1")
	if log.Enabled(context.Background(), slog.LevelDebug); withs.Load() != 0 {
		t.Fatalf("the job's id was added (%d WithAttrs) before a line was written", withs.Load())
	}
	log.Info("one", "k", "v")
	log.With("stage", "s").Warn("two")
	log.WithGroup("g").Error("three")
	got := rec.records()
	if len(got) != 3 {
		t.Fatalf("%d lines: %v", len(got), got)
	}
	for _, r := range got {
		if r.attrs["job_id"] != "j1" || r.attrs["component"] != "worker" {
			t.Errorf("line %v: want job_id j1 and component worker", r)
		}
	}
	if got[1].attrs["stage"] != "s" {
		t.Errorf("line %v: want stage s", got[1])
	}
	if n := withs.Load(); n != 2 { // the id once, then stage
		t.Errorf("%d WithAttrs, want 2", n)
	}
}
