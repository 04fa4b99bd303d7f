package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"sort"
	"time"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/execstage"
	"github.com/staged-dev/staged/internal/store"
	"github.com/staged-dev/staged/tasks"
)

// The exec scenario: what a command stage (docs/PROTOCOL.md) costs next to
// a Go stage, in ms per stage.
//
//   - direct: the stage function alone, called one run after another: a Go
//     no-op, a no-op command in sh (spawn, stdin, one result line, exit),
//     and one in python3 with python/staged_stage.py when python3 is there;
//   - worker: 4-stage jobs of Go no-ops and of sh no-ops, drained one job
//     at a time by a worker (concurrency 1): wall time per stage, with the
//     worker's record writes, so the difference is the exec overhead as a
//     job sees it.

// noopSh is the smallest stage that speaks the protocol.
var noopSh = []string{"sh", "-c", `cat >/dev/null; echo '::staged:: {"result":{}}'`}

// noopPy is the same with the Python helper.
var noopPy = []string{"python3", "-c", `import staged_stage as s; s.run(lambda d: {})`}

func execScenario(ctx context.Context, e *env) (*result, error) {
	runs := min(max(e.o.n/10, 20), 300)
	r := newResult("exec")
	r.set("direct_runs", runs)
	goNoop := func(ctx context.Context, in json.RawMessage, p tasks.Progress) (any, error) { return in, nil }
	kinds := []struct {
		name string
		fn   tasks.StageFunc
	}{
		{"go", goNoop},
		{"sh", (&execstage.Command{Argv: noopSh}).Run},
	}
	if _, err := exec.LookPath("python3"); err == nil {
		py := &execstage.Command{Argv: noopPy, Env: []string{"PYTHONPATH=python"}}
		kinds = append(kinds, struct {
			name string
			fn   tasks.StageFunc
		}{"python3", py.Run})
	}
	for _, k := range kinds {
		n := runs
		if k.name == "python3" {
			n = max(runs/3, 5) // ~30 ms each on an idle machine: keep --smoke short
		}
		ms, err := directRuns(ctx, k.fn, n)
		if err != nil {
			return nil, fmt.Errorf("direct %s: %w", k.name, err)
		}
		sort.Float64s(ms)
		r.set("direct_"+k.name+"_ms_p50", ms[len(ms)/2])
		r.set("direct_"+k.name+"_ms_p99", ms[len(ms)*99/100])
		r.set("direct_"+k.name+"_ms_mean", mean(ms))
	}

	jobs := min(max(e.o.n/20, 10), 100)
	r.set("worker_jobs", jobs)
	r.set("worker_stages_per_job", 4)
	var goMs float64
	for _, k := range []struct {
		name string
		fn   tasks.StageFunc
	}{{"go", goNoop}, {"sh", (&execstage.Command{Argv: noopSh}).Run}} {
		if err := e.reset(ctx); err != nil {
			return nil, err
		}
		ms, err := e.drainNoop(ctx, "bench-noop-"+k.name, k.fn, jobs)
		if err != nil {
			return nil, fmt.Errorf("worker %s: %w", k.name, err)
		}
		r.set("worker_"+k.name+"_ms_per_stage", ms)
		if k.name == "go" {
			goMs = ms
		} else {
			r.set("worker_"+k.name+"_overhead_ms_per_stage", ms-goMs)
		}
	}
	return r, nil
}

// directRuns calls fn runs times and returns each call's milliseconds.
func directRuns(ctx context.Context, fn tasks.StageFunc, runs int) ([]float64, error) {
	ctx = tasks.WithStageInfo(ctx, tasks.StageInfo{JobID: "bench", Stage: "noop", Index: 1, Total: 1, Attempt: 1})
	in := json.RawMessage(`{"n":1}`)
	ms := make([]float64, 0, runs)
	for range runs {
		t0 := time.Now()
		if _, err := fn(ctx, in, noProgress{}); err != nil {
			return nil, err
		}
		ms = append(ms, float64(time.Since(t0).Nanoseconds())/1e6)
	}
	return ms, nil
}

type noProgress struct{}

func (noProgress) Report(float64, any) {}

// drainNoop registers a 4-stage pipeline of fn (once), submits n jobs of
// it, drains them with a worker of concurrency 1 and returns the wall time
// per stage in ms.
func (e *env) drainNoop(ctx context.Context, name string, fn tasks.StageFunc, n int) (float64, error) {
	if e.reg.Get(name) == nil {
		var st []tasks.Stage
		for i := 1; i <= 4; i++ {
			st = append(st, tasks.Stage{Name: fmt.Sprintf("s%d", i), Run: fn})
		}
		if err := e.reg.Register(&tasks.Pipeline{Name: name, Stages: st}); err != nil {
			return 0, err
		}
	}
	p := e.reg.Get(name)
	rdb := e.clientWith(0)
	defer rdb.Close()
	js := store.NewStore(rdb)
	opts := api.Options{Retention: retention, Timeout: tasks.DefaultJobTimeout, Queue: benchQueue}
	ids := make([]string, 0, n)
	for range n {
		j := store.NewJob(p, benchQueue, time.Now().UTC()) // with p's digest: routed to its workers
		if _, err := js.Create(ctx, j, "", json.RawMessage(`{}`), opts); err != nil {
			return 0, err
		}
		if err := store.Enqueue(ctx, e.client, j, 1, 0, opts.Timeout, opts.Retention); err != nil {
			return 0, err
		}
		ids = append(ids, j.ID)
	}
	base, err := e.processed(ctx)
	if err != nil {
		return 0, err
	}
	w, err := e.startWorker(1)
	if err != nil {
		return 0, err
	}
	_, werr := e.waitProcessed(ctx, base+int64(n), 2*time.Minute)
	if err := w.stop(); err != nil {
		e.logf("worker stop: %v", err)
	}
	if werr != nil {
		return 0, werr
	}
	// From each job's start to its finish, as its record says: the
	// stages and the worker's writes between them, not the queue.
	var total time.Duration
	for _, id := range ids {
		j, err := js.Get(ctx, id, "")
		if err != nil {
			return 0, err
		}
		if j.State != api.StateSucceeded || j.StartedAt == nil || j.FinishedAt == nil {
			return 0, fmt.Errorf("job %s: %s", id, j.State)
		}
		total += j.FinishedAt.Sub(*j.StartedAt)
	}
	return float64(total.Nanoseconds()) / 1e6 / float64(n*4), nil
}

func mean(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}
