package worker

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/internal/store"

	"github.com/staged-dev/staged/tasks"
)

// crashPipeline: stage a runs for aRuns (reporting progress every few ms
// meanwhile) and counts its runs; stage b's first run crashes its worker
// (cuts it off from Redis: no more record writes or lease renewals) and
// blocks, later runs return at once.
type crashPipeline struct {
	aFor    time.Duration
	aRuns   atomic.Int32
	crash   func()
	crashed atomic.Bool
	started chan struct{}
}

func (cp *crashPipeline) pipeline() *tasks.Pipeline {
	return &tasks.Pipeline{Name: "crash", Stages: []tasks.Stage{
		{Name: "a", Run: stageFunc(func(ctx context.Context, in string, p tasks.Progress) (any, error) {
			cp.aRuns.Add(1)
			end := time.Now().Add(cp.aFor)
			for time.Now().Before(end) {
				p.Report(0.5, nil)
				select {
				case <-time.After(5 * time.Millisecond):
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
			return "a", nil
		})},
		{Name: "b", Run: stageFunc(func(ctx context.Context, in string, _ tasks.Progress) (any, error) {
			if cp.crashed.CompareAndSwap(false, true) {
				cp.crash()
				close(cp.started)
				<-ctx.Done()
				return nil, ctx.Err()
			}
			return in + "b", nil
		})},
	}}
}

// crashAfterA runs a job of cp on worker A (with A's FlushInterval), which
// crashes when stage b starts; worker B takes the job over once A's lease
// has lapsed. It returns the finished record.
func crashAfterA(t *testing.T, cp *crashPipeline, flush time.Duration) *api.Job {
	var cut atomic.Bool
	cp.crash = func() { cut.Store(true) }
	cp.started = make(chan struct{})
	h := newHarness(t, cp.pipeline())
	cfg := h.config()
	cfg.FlushInterval = flush
	cfg.ShutdownGrace = 100 * time.Millisecond
	a := h.newWorker(cfg)
	down := &tasks.Error{Code: tasks.EUNAVAILABLE, Message: "test: worker crashed"}
	a.renew = func(ctx context.Context, id string, token int64, lease time.Duration) (bool, error) {
		if cut.Load() {
			return false, down
		}
		return a.store.Renew(ctx, id, token, lease)
	}
	a.save = func(ctx context.Context, j *api.Job, token int64, sa store.SaveArgs) (store.SaveResult, error) {
		if cut.Load() {
			return store.SaveResult{}, down
		}
		return a.store.Save(ctx, j, token, sa)
	}
	h.run(a)
	id := h.submit("crash", `{}`, api.Options{})
	<-cp.started
	a.srv.Stop() // A takes no new tasks: the next generation goes to B
	h.start(h.config())
	j := h.wait(id, api.StateSucceeded, 15*time.Second)
	if string(j.Result) != `"ab"` {
		t.Fatalf("result %s, want \"ab\"", j.Result)
	}
	return j
}

// A stage shorter than FlushInterval that completed less than a
// FlushInterval before a crash runs again: its boundary was not written yet.
func TestWriteBehindShortStageReruns(t *testing.T) {
	t.Parallel()
	cp := &crashPipeline{}
	// The crash comes well within A's FlushInterval of stage a's end.
	crashAfterA(t, cp, time.Minute)
	if n := cp.aRuns.Load(); n != 2 {
		t.Fatalf("stage a ran %d times, want 2 (its end was not written before the crash)", n)
	}
}

// A stage that ran FlushInterval or longer is written when it ends, before
// the next stage starts: it never runs again, even when progress writes
// during the stage kept the last write recent.
func TestWriteBehindLongStageNeverReruns(t *testing.T) {
	t.Parallel()
	const flush = 50 * time.Millisecond
	cp := &crashPipeline{aFor: 3 * flush}
	j := crashAfterA(t, cp, flush)
	if n := cp.aRuns.Load(); n != 1 {
		t.Fatalf("stage a ran %d times, want 1", n)
	}
	if a := j.Stages[0]; a.State != api.StateSucceeded || a.Attempts != 1 {
		t.Fatalf("stage a: %s, %d attempts", a.State, a.Attempts)
	}
}
