package worker

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/internal/redistest"
	"github.com/staged-dev/staged/internal/store"
	"github.com/staged-dev/staged/tasks"
)

// The hook answers asynq's MarkAsComplete of a task that a final write
// completed, once, without sending it; any other goes to Redis.
func TestTaskEndsAnswersCompleted(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client()
	te := newTaskEnds(rdb)
	rdb.AddHook(te)
	te.start()
	defer te.stop()
	// The shape of asynq v0.26's markAsCompleteCmd: the task is not in
	// the active list here, so Redis answers NOT FOUND.
	mark := redis.NewScript(`if redis.call("LREM", KEYS[1], 0, ARGV[1]) == 0 then return redis.error_reply("NOT FOUND") end return redis.status_reply("OK")`)
	ctx := context.Background()
	keys := func(id string) []string {
		return []string{"asynq:{q}:active", "asynq:{q}:lease", "asynq:{q}:completed", "asynq:{q}:t:" + id,
			"asynq:{q}:processed:2026-12-01", "asynq:{q}:processed"}
	}
	te.completed("asynq:{q}:t:a")
	if err := mark.Run(ctx, rdb, keys("a"), "a", 1, 2, "msg", 3).Err(); err != nil {
		t.Errorf("completed task: %v, want nil", err)
	}
	if err := mark.Run(ctx, rdb, keys("a"), "a", 1, 2, "msg", 3).Err(); err == nil || !strings.Contains(err.Error(), "NOT FOUND") {
		t.Errorf("second call: %v, want NOT FOUND from Redis", err)
	}
	if err := mark.Run(ctx, rdb, keys("b"), "b", 1, 2, "msg", 3).Err(); err == nil || !strings.Contains(err.Error(), "NOT FOUND") {
		t.Errorf("another task: %v, want NOT FOUND from Redis", err)
	}
	if n := te.answered.Load(); n != 1 {
		t.Errorf("answered %d, want 1", n)
	}
}

// On a single node, the final write of a succeeded or canceled job
// completes its asynq task, and asynq's own MarkAsComplete is answered
// without reaching Redis: asynqmon sees each task completed with its
// result, and asynq's processed counters count each once.
func TestFinalWriteCompletesTask(t *testing.T) {
	p := &tasks.Pipeline{Name: "quick", Stages: []tasks.Stage{
		{Name: "one", Run: stageFunc(func(ctx context.Context, in string, p tasks.Progress) (any, error) { return in + "a", nil })},
		{Name: "two", Run: stageFunc(func(ctx context.Context, in string, p tasks.Progress) (any, error) { return in + "b", nil })},
	}}
	h := newHarness(t, p)
	w := h.start(h.config())
	const n = 5
	ids := make([]string, n)
	for i := range ids {
		ids[i] = h.submit("quick", `"x"`, api.Options{Retention: time.Hour})
	}
	insp := asynq.NewInspectorFromRedisClient(h.rdb)
	for _, id := range ids {
		h.wait(id, api.StateSucceeded, 20*time.Second)
		if res := h.taskResult(id); res.State != api.StateSucceeded {
			t.Errorf("task %s result %+v, want succeeded", id, res)
		}
		if st := h.taskState(id); st != asynq.TaskStateCompleted {
			t.Errorf("task %s is %v, want completed", id, st)
		}
	}
	q := store.TaskQueue(h.job(ids[0]))
	redistest.Eventually(t, 10*time.Second, "asynq answered", func() bool { return w.taskEnds.answered.Load() == n })
	qi, err := insp.GetQueueInfo(q)
	if err != nil {
		t.Fatal(err)
	}
	if qi.Active != 0 || qi.Completed != n || qi.Processed != n || qi.ProcessedTotal != n || qi.Failed != 0 {
		t.Errorf("queue %s: active %d, completed %d, processed %d (total %d), failed %d; want 0, %d, %d (%d), 0",
			q, qi.Active, qi.Completed, qi.Processed, qi.ProcessedTotal, qi.Failed, n, n, n)
	}
	info, err := insp.GetTaskInfo(q, ids[0])
	if err != nil || info.CompletedAt.IsZero() {
		t.Errorf("task %s: completed at %v (%v)", ids[0], info.CompletedAt, err)
	}
}

// A final write completes the task only when asynq's Redis is the store's.
func TestSameRedis(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a := redis.NewClient(&redis.Options{Addr: srv.Addr})
	b := redis.NewClient(&redis.Options{Addr: srv.Addr})
	c := redis.NewClient(&redis.Options{Addr: srv.Addr, DB: 1})
	defer a.Close()
	defer b.Close()
	defer c.Close()
	for _, tt := range []struct {
		rdb, asynqRdb redis.UniversalClient
		want          bool
	}{{a, a, true}, {a, b, true}, {a, c, false}} {
		w := &Worker{rdb: tt.rdb, asynqRdb: tt.asynqRdb}
		if got := w.sameRedis(); got != tt.want {
			t.Errorf("sameRedis(%v, %v) = %v, want %v", tt.rdb, tt.asynqRdb, got, tt.want)
		}
	}
}
