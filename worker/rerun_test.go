package worker

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/internal/redistest"
	"github.com/staged-dev/staged/internal/store"
	"github.com/staged-dev/staged/tasks"
)

// rerun queues job id again the way POST /v1/jobs/{id}/retry does.
func (h *harness) rerun(id string) *store.Rerun {
	h.t.Helper()
	ctx := context.Background()
	r, err := h.store.Rerun(ctx, id, "")
	if err != nil {
		h.t.Fatal(err)
	}
	if err := store.Enqueue(ctx, h.client, r.Job, r.Gen, r.Options.MaxRetries, r.Options.Timeout, r.Options.Retention); err != nil {
		h.t.Fatal(err)
	}
	return r
}

// taskResult waits until the task with the given id carries a result (the
// handler writes it after the job's final record) and returns it.
func (h *harness) taskResult(taskID string) taskResult {
	h.t.Helper()
	insp := asynq.NewInspectorFromRedisClient(h.rdb)
	var info *asynq.TaskInfo
	redistest.Eventually(h.t, 10*time.Second, "a result on task "+taskID, func() bool {
		var err error
		info, err = insp.GetTaskInfo(store.TaskQueue(h.job(jobIDsIn(taskID)[0])), taskID)
		return err == nil && len(info.Result) > 0
	})
	var res taskResult
	if err := json.Unmarshal(info.Result, &res); err != nil {
		h.t.Fatalf("task %s (%s) result %q: %v", taskID, info.State, info.Result, err)
	}
	return res
}

func TestRerunFromFailedStage(t *testing.T) {
	var runs [4]atomic.Int32
	var failC atomic.Bool
	failC.Store(true)
	stage := func(k int) tasks.StageFunc {
		return stageFunc(func(ctx context.Context, in string, p tasks.Progress) (any, error) {
			runs[k].Add(1)
			if k == 2 && failC.Load() {
				return nil, tasks.Permanent(errors.New("the data set is not there yet"))
			}
			return in + string(rune('a'+k)), nil
		})
	}
	p := &tasks.Pipeline{Name: "flaky", Stages: []tasks.Stage{
		{Name: "one", Run: stage(0)}, {Name: "two", Run: stage(1)}, {Name: "three", Run: stage(2)}, {Name: "four", Run: stage(3)},
	}}
	h := newHarness(t, p)
	h.start(h.config())
	id := h.submit("flaky", `"x"`, api.Options{Retention: time.Hour})
	j := h.wait(id, api.StateFailed, 20*time.Second)
	if j.Error == nil || j.Error.Stage != "three" || stageStates(j) != "succeeded,succeeded,failed,pending" {
		t.Fatalf("failed job: error %+v, stages %s", j.Error, stageStates(j))
	}
	if res := h.taskResult(id); res.State != api.StateFailed || res.Stage != "three" {
		t.Fatalf("the failed task's result = %+v", res)
	}

	failC.Store(false)
	r := h.rerun(id)
	if r.Job.State != api.StateQueued || stageStates(r.Job) != "succeeded,succeeded,pending,pending" || r.Job.Error != nil || r.Gen != 2 {
		t.Fatalf("rerun record: %s %s %+v gen %d", r.Job.State, stageStates(r.Job), r.Job.Error, r.Gen)
	}
	j = h.wait(id, api.StateSucceeded, 20*time.Second)
	if got := []int32{runs[0].Load(), runs[1].Load(), runs[2].Load(), runs[3].Load()}; !slices.Equal(got, []int32{1, 1, 2, 1}) {
		t.Fatalf("stage runs = %v, want [1 1 2 1]: stages 1 and 2 must not run again", got)
	}
	if string(j.Result) != `"xabcd"` || j.Attempt != 2 || j.Error != nil {
		t.Fatalf("after the rerun: result %s attempt %d error %+v", j.Result, j.Attempt, j.Error)
	}
	// The event stream tells the story: failed, queued again, succeeded
	// (short stages may fold their running writes into the next one).
	var states []api.State
	for _, e := range h.events(id) {
		if e.State != api.StateRunning && (len(states) == 0 || states[len(states)-1] != e.State) {
			states = append(states, e.State)
		}
	}
	if want := []api.State{api.StateFailed, api.StateQueued, api.StateSucceeded}; !slices.Equal(states, want) {
		t.Fatalf("event states = %v, want %v", states, want)
	}
	if res := h.taskResult(store.TaskID(id, 2)); res.State != api.StateSucceeded || res.Attempt != 2 {
		t.Fatalf("the rerun task's result = %+v", res)
	}
	// Finished again: a second rerun is a conflict.
	if _, err := h.store.Rerun(context.Background(), id, ""); tasks.ErrorCode(err) != tasks.ECONFLICT {
		t.Fatalf("rerun of a succeeded job: %v, want ECONFLICT", err)
	}
}

func TestRerunCanceled(t *testing.T) {
	var firstRuns atomic.Int32
	started := make(chan struct{}, 4)
	release := make(chan struct{})
	p := &tasks.Pipeline{Name: "held", Stages: []tasks.Stage{
		{Name: "quick", Run: stageFunc(func(ctx context.Context, in string, p tasks.Progress) (any, error) {
			firstRuns.Add(1)
			// Long enough to be checkpointed at once (FlushInterval 50ms).
			time.Sleep(60 * time.Millisecond)
			return in + "1", nil
		})},
		{Name: "held", Run: stageFunc(func(ctx context.Context, in string, p tasks.Progress) (any, error) {
			started <- struct{}{}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-release:
				return in + "2", nil
			}
		})},
	}}
	h := newHarness(t, p)
	h.start(h.config())
	id := h.submit("held", `"x"`, api.Options{Retention: time.Hour})
	<-started
	if _, err := h.store.Rerun(context.Background(), id, ""); tasks.ErrorCode(err) != tasks.ECONFLICT {
		t.Fatalf("rerun of a running job: %v, want ECONFLICT", err)
	}
	if _, err := h.store.Cancel(context.Background(), id, ""); err != nil {
		t.Fatal(err)
	}
	h.wait(id, api.StateCanceled, 20*time.Second)
	if res := h.taskResult(id); res.State != api.StateCanceled || res.Stage != "held" {
		t.Fatalf("the canceled task's result = %+v", res)
	}
	close(release)
	h.rerun(id)
	j := h.wait(id, api.StateSucceeded, 20*time.Second)
	if string(j.Result) != `"x12"` || firstRuns.Load() != 1 {
		t.Fatalf("after the rerun: result %s, stage 1 ran %d times", j.Result, firstRuns.Load())
	}
}
