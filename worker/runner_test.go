package worker

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/internal/store"

	"github.com/hibiken/asynq"

	"github.com/staged-dev/staged/internal/redistest"
	"github.com/staged-dev/staged/tasks"
)

// blockPipeline's one stage counts its runs, signals started, and blocks
// until its context ends.
func blockPipeline(runs *atomic.Int32, started chan<- struct{}) *tasks.Pipeline {
	return &tasks.Pipeline{Name: "block", Stages: []tasks.Stage{
		{Name: "wait", Run: stageFunc(func(ctx context.Context, in string, _ tasks.Progress) (any, error) {
			runs.Add(1)
			started <- struct{}{}
			<-ctx.Done()
			return nil, ctx.Err()
		})},
	}}
}

func TestCancelQueued(t *testing.T) {
	t.Parallel()
	var runs atomic.Int32
	h := newHarness(t, blockPipeline(&runs, make(chan struct{}, 1)))
	id := h.submit("block", `{}`, api.Options{})
	c, err := h.store.Cancel(context.Background(), id, "")
	if err != nil || !c.Idle {
		t.Fatalf("cancel = %+v, %v", c, err)
	}
	// The API deletes the task best effort; here it stays and runs.
	h.start(h.config())
	redistest.Eventually(t, 5*time.Second, "the task to complete", func() bool {
		return h.taskState(id) == asynq.TaskStateCompleted
	})
	if j := h.job(id); j.State != api.StateCanceled || runs.Load() != 0 {
		t.Fatalf("state %s, stage ran %d times", j.State, runs.Load())
	}
}

func TestCancelRunning(t *testing.T) {
	t.Parallel()
	var runs atomic.Int32
	started := make(chan struct{}, 10)
	h := newHarness(t, blockPipeline(&runs, started))
	h.start(h.config())
	id := h.submit("block", `{}`, api.Options{MaxRetries: 3})
	<-started
	if _, err := h.store.Cancel(context.Background(), id, ""); err != nil {
		t.Fatal(err)
	}
	j := h.wait(id, api.StateCanceled, 5*time.Second)
	if stageStates(j) != "canceled" || j.FinishedAt == nil || j.CancelRequested {
		t.Fatalf("canceled record = %+v", j)
	}
	// asynq is told the task succeeded: it is never retried.
	redistest.Eventually(t, 5*time.Second, "the task to complete", func() bool {
		return h.taskState(id) == asynq.TaskStateCompleted
	})
	// A job submitted later runs and finishes after any retry would have
	// fired (RetryBase is 50ms); the canceled one stays canceled.
	later := h.submit("block", `{}`, api.Options{Timeout: 300 * time.Millisecond})
	<-started
	h.wait(later, api.StateFailed, 5*time.Second)
	if j := h.job(id); j.State != api.StateCanceled || runs.Load() != 2 {
		t.Fatalf("state %s, stages ran %d times (want 1 + the later job's 1)", j.State, runs.Load())
	}
}

func TestTimeouts(t *testing.T) {
	t.Parallel()
	sleepy := func(ctx context.Context, in string, _ tasks.Progress) (any, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	h := newHarness(t,
		&tasks.Pipeline{Name: "stage-timeout", Stages: []tasks.Stage{
			{Name: "prepare", Run: stageFunc(func(context.Context, string, tasks.Progress) (any, error) { return 1, nil })},
			{Name: "train", Timeout: 200 * time.Millisecond, Run: stageFunc(sleepy)},
		}},
		&tasks.Pipeline{Name: "job-timeout", Timeout: 5 * time.Second, Stages: []tasks.Stage{
			{Name: "train", Run: stageFunc(sleepy)},
		}},
	)
	h.start(h.config())
	tests := []struct {
		name, typ string
		opts      api.Options
		want      string
	}{
		{"stage", "stage-timeout", api.Options{}, "stage train exceeded its 200ms timeout"},
		{"job", "job-timeout", api.Options{Timeout: 300 * time.Millisecond}, "job exceeded its 300ms timeout in stage train"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := h.with(t)
			j := h.wait(h.submit(tt.typ, `{}`, tt.opts), api.StateFailed, 5*time.Second)
			if j.Error == nil || j.Error.Stage != "train" || j.Error.Message != tt.want {
				t.Fatalf("error = %+v, want %q", j.Error, tt.want)
			}
		})
	}
}

func TestPanic(t *testing.T) {
	t.Parallel()
	h := newHarness(t,
		&tasks.Pipeline{Name: "panic", Stages: []tasks.Stage{
			{Name: "boom", Run: stageFunc(func(context.Context, string, tasks.Progress) (any, error) { panic("kaboom") })},
		}},
		chainPipeline(nil, nil),
	)
	h.start(h.config())
	j := h.wait(h.submit("panic", `{}`, api.Options{}), api.StateFailed, 5*time.Second)
	if j.Error == nil || j.Error.Message != "panic in stage boom: kaboom" || stageStates(j) != "failed" {
		t.Fatalf("record = %+v", j)
	}
	// The worker lives on.
	if j := h.wait(h.submit("chain", `"x"`, api.Options{}), api.StateSucceeded, 5*time.Second); string(j.Result) != `"xabc"` {
		t.Fatalf("result = %s", j.Result)
	}
}

func TestRetries(t *testing.T) {
	t.Parallel()
	var runs atomic.Int32
	h := newHarness(t, &tasks.Pipeline{Name: "flaky", Stages: []tasks.Stage{
		{Name: "ok", Run: stageFunc(func(context.Context, string, tasks.Progress) (any, error) { return "fine", nil })},
		{Name: "bad", Run: stageFunc(func(context.Context, string, tasks.Progress) (any, error) {
			return nil, errors.New("disk full #" + string(rune('0'+runs.Add(1))))
		})},
	}})
	h.start(h.config())
	id := h.submit("flaky", `{}`, api.Options{MaxRetries: 2})
	j := h.wait(id, api.StateFailed, 10*time.Second)
	if j.Attempt != 3 || !slices.Equal(attempts(j), []int{1, 3}) || stageStates(j) != "succeeded,failed" ||
		j.Error == nil || *j.Error != (api.JobError{Stage: "bad", Message: "disk full #3"}) || j.NextAttemptAt != nil {
		t.Fatalf("record = %+v %v %s", j, attempts(j), stageStates(j))
	}
	var retrying int
	for _, e := range h.events(id) {
		if e.State != api.StateRetrying {
			continue
		}
		retrying++
		if e.NextAttemptAt == nil || e.NextAttemptAt.Before(e.UpdatedAt) || e.Error == nil || e.Stages[1].State != api.StateRetrying {
			t.Errorf("retrying record = %+v", e)
		}
	}
	if retrying != 2 {
		t.Errorf("%d retrying records, want 2", retrying)
	}
	// asynq archives the task after the handler has written the failed
	// record and returned: wait for it.
	redistest.Eventually(t, 10*time.Second, "asynq task "+id+" archived", func() bool {
		return h.taskState(id) == asynq.TaskStateArchived
	})
}

// TestPermanentErrors covers the errors a retry cannot fix, the payload
// limits among them: a stage output, a result or a partial result over
// MaxPayload fails the job at once, and the oversized value is not stored.
func TestPermanentErrors(t *testing.T) {
	t.Parallel()
	const limit = 1024
	big := strings.Repeat("x", 2000)
	atLimit := strings.Repeat("y", limit-2) // limit bytes as a JSON string
	ret := func(v string) tasks.StageFunc {
		return stageFunc(func(context.Context, string, tasks.Progress) (any, error) { return v, nil })
	}
	h := newHarness(t,
		&tasks.Pipeline{Name: "big-output", Stages: []tasks.Stage{{Name: "s", Run: ret(big)}, {Name: "t", Run: ret("small")}}},
		&tasks.Pipeline{Name: "big-result", Stages: []tasks.Stage{{Name: "r", Run: ret("small")}, {Name: "s", Run: ret(big)}}},
		&tasks.Pipeline{Name: "big-partial", Stages: []tasks.Stage{
			{Name: "s", Run: stageFunc(func(ctx context.Context, _ string, p tasks.Progress) (any, error) {
				p.Report(0.5, big)
				<-ctx.Done()
				return nil, ctx.Err()
			})},
		}},
		&tasks.Pipeline{Name: "at-limit", Stages: []tasks.Stage{
			{Name: "s", Run: stageFunc(func(_ context.Context, _ string, p tasks.Progress) (any, error) {
				p.Report(0.5, atLimit)
				return atLimit, nil
			})},
		}},
		&tasks.Pipeline{Name: "bad-input", Stages: []tasks.Stage{
			{Name: "s", Run: stageFunc(func(context.Context, string, tasks.Progress) (any, error) {
				return nil, tasks.Permanent(errors.New("samples must be positive"))
			})},
		}},
	)
	cfg := h.config()
	cfg.MaxPayload = limit
	h.start(cfg)
	const hint = "; keep large data elsewhere and pass a reference to it"
	tests := []struct {
		typ        string
		want       string // the error message; "" for success
		wantStages string
	}{
		{"big-output", "stage s returned an output of 2002 bytes (as JSON), over the 1024-byte limit" + hint, "failed,pending"},
		{"big-result", "stage s returned a result of 2002 bytes (as JSON), over the 1024-byte limit" + hint, "succeeded,failed"},
		{"big-partial", "stage s reported a partial result of 2002 bytes (as JSON), over the 1024-byte limit" + hint, "failed"},
		{"at-limit", "", "succeeded"},
		{"bad-input", "samples must be positive", "failed"},
	}
	for _, tt := range tests {
		t.Run(tt.typ, func(t *testing.T) {
			t.Parallel()
			h := h.with(t)
			id := h.submit(tt.typ, `{}`, api.Options{MaxRetries: 3})
			if tt.want == "" {
				j := h.wait(id, api.StateSucceeded, 5*time.Second)
				if len(j.Result) != limit || len(j.Partial) != limit {
					t.Fatalf("result of %d bytes, partial of %d, want %d each", len(j.Result), len(j.Partial), limit)
				}
				return
			}
			j := h.wait(id, api.StateFailed, 5*time.Second)
			if j.Error == nil || j.Error.Message != tt.want || j.Attempt != 1 || stageStates(j) != tt.wantStages {
				t.Fatalf("record = %+v, error %+v", j, j.Error)
			}
			if strings.Contains(string(j.Result), "xxx") || strings.Contains(string(j.Partial), "xxx") {
				t.Fatalf("the oversized value was stored: result %.20s, partial %.20s", j.Result, j.Partial)
			}
			if n, _ := h.rdb.HExists(context.Background(), store.JobKey(id), "out:0").Result(); n && tt.typ == "big-output" {
				t.Fatalf("the oversized output was checkpointed")
			}
		})
	}
}

// A panic outside the stages (here the pipeline's Build) goes to asynq as
// it did when the attempt ran on asynq's goroutine: asynq retries the task
// and the worker lives on; the line about it names the job.
func TestPanicOutsideStages(t *testing.T) {
	t.Parallel()
	var builds atomic.Int32
	h := newHarness(t,
		&tasks.Pipeline{Name: "badbuild", Stages: []tasks.Stage{
			{Name: "s", Run: stageFunc(func(context.Context, string, tasks.Progress) (any, error) { return "ok", nil })},
		}, Build: func(json.RawMessage) ([]tasks.Stage, error) {
			builds.Add(1)
			panic("build kaboom")
		}},
		chainPipeline(nil, nil),
	)
	rec := newRecorder()
	cfg := h.config()
	cfg.Logger = slog.New(rec)
	h.start(cfg)
	id := h.submit("badbuild", `{}`, api.Options{MaxRetries: 1})
	redistest.Eventually(t, 10*time.Second, "asynq's retry of the panicked attempt", func() bool { return builds.Load() >= 2 })
	if j := h.wait(h.submit("chain", `"x"`, api.Options{}), api.StateSucceeded, 5*time.Second); string(j.Result) != `"xabc"` {
		t.Fatalf("result = %s", j.Result)
	}
	if !slices.ContainsFunc(rec.records(), func(r logRecord) bool {
		return strings.Contains(r.msg, "panicked outside its stages") && r.attrs["job_id"] == id
	}) {
		t.Errorf("no line about the panic with job_id %s", id)
	}
}
