package worker

import (
	"context"
	"testing"
	"time"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/internal/store"

	"github.com/redis/go-redis/v9"
)

// An idle worker whose poll would come only after an hour picks a job up
// from the wake-up alone, also when the dequeue that waits is another
// queue's.
func TestWakeUpPicksJobUp(t *testing.T) {
	t.Parallel()
	h := newHarness(t, chainPipeline(nil, nil))
	cfg := h.config()
	cfg.TaskCheckInterval = time.Hour
	cfg.Queues = map[string]int{"low": 1, "high": 3}
	w := h.start(cfg)
	// The worker is idle: its dequeue waits for a push.
	for _, q := range []string{"low", "high", "high", "low"} {
		id := h.submit("chain", `"x"`, api.Options{Queue: q})
		store.Wake(context.Background(), h.rdb, store.TaskQueue(h.job(id))) // as the API does
		j := h.wait(id, api.StateSucceeded, 10*time.Second)
		if string(j.Result) != `"xabc"` {
			t.Fatalf("result %s", j.Result)
		}
	}
	if n := metric(t, w.Gatherer(), "staged_jobs_finished_total", "type", "chain", "state", "succeeded"); n != 4 {
		t.Errorf("staged_jobs_finished_total = %v, want 4", n)
	}
}

// A wake-up for a queue the worker does not serve is ignored.
func TestWakeUpOtherQueue(t *testing.T) {
	wk := newWaker(map[string]int{"a": 1}, time.Hour)
	wk.wakeUp("b")
	select {
	case q := <-wk.wake:
		t.Fatalf("woken for queue %q", q)
	default:
	}
	wk.wakeUp("a")
	wk.wakeUp("a") // coalesced with the first
	if q := <-wk.wake; q != "a" {
		t.Fatalf("woken for %q", q)
	}
	select {
	case q := <-wk.wake:
		t.Fatalf("second wake-up for %q kept", q)
	default:
	}
}

func TestRetarget(t *testing.T) {
	args := []any{"evalsha", "sha", 4, "asynq:{a}:pending", "asynq:{a}:paused", "asynq:{a}:active", "asynq:{a}:lease", int64(1), "asynq:{a}:t:"}
	q, ok := dequeueQueue(fakeCmd(args))
	if !ok || q != "a" {
		t.Fatalf("dequeueQueue = %q %v", q, ok)
	}
	got := retarget(args, "a", "b")
	want := []any{"evalsha", "sha", 4, "asynq:{b}:pending", "asynq:{b}:paused", "asynq:{b}:active", "asynq:{b}:lease", int64(1), "asynq:{b}:t:"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("retarget arg %d = %v, want %v", i, got[i], want[i])
		}
	}
	if args[3] != "asynq:{a}:pending" {
		t.Fatalf("retarget changed its input")
	}
	if _, ok := dequeueQueue(fakeCmd([]any{"evalsha", "sha", 1, "staged:job:{x}"})); ok {
		t.Fatalf("another script taken for a dequeue")
	}
}

func fakeCmd(args []any) *redis.Cmd { return redis.NewCmd(context.Background(), args...) }

// A busy worker does not send the dequeues of a queue found empty less
// than TaskCheckInterval ago, unless a wake-up names it.
func TestWakerSkipsEmptyQueue(t *testing.T) {
	const wait = 300 * time.Millisecond
	wk := newWaker(map[string]int{"a": 1, "b": 1}, wait)
	sent := map[string]int{}
	hook := wk.ProcessHook(func(_ context.Context, cmd redis.Cmder) error {
		q, _ := dequeueQueue(cmd)
		sent[q]++
		if q == "a" { // always empty
			cmd.SetErr(redis.Nil)
			return redis.Nil
		}
		cmd.(*redis.Cmd).SetVal("task") // b always has a task
		return nil
	})
	dequeue := func(q string) error {
		args := []any{"evalsha", "sha", 4, "asynq:{" + q + "}:pending", "asynq:{" + q + "}:paused", "asynq:{" + q + "}:active", "asynq:{" + q + "}:lease", int64(1), "asynq:{" + q + "}:t:"}
		cmd := redis.NewCmd(context.Background(), args...)
		err := hook(context.Background(), cmd)
		if err != cmd.Err() {
			t.Fatalf("hook returned %v, the command has %v", err, cmd.Err())
		}
		return err
	}
	start := time.Now()
	for range 5 {
		if err := dequeue("a"); err != redis.Nil {
			t.Fatalf("dequeue a: %v", err)
		}
		if err := dequeue("b"); err != nil {
			t.Fatalf("dequeue b: %v", err)
		}
	}
	if time.Since(start) < wait && (sent["a"] != 1 || sent["b"] != 5) {
		t.Fatalf("sent %v, want a once and b 5 times", sent)
	}
	wk.wakeUp("a") // a job on a: dequeue it for real
	<-wk.wake      // (a waiting dequeue would take it)
	_ = dequeue("a")
	if sent["a"] != 2 {
		t.Fatalf("after a wake-up, a sent %d times, want 2", sent["a"])
	}
	_ = dequeue("b")
	_ = dequeue("a")
	if time.Since(start) < wait && sent["a"] != 2 {
		t.Fatalf("a sent %d times, want 2", sent["a"])
	}
	n := sent["a"]
	time.Sleep(wait) // its mark runs out: a is dequeued for real again
	_ = dequeue("b")
	_ = dequeue("a")
	if sent["a"] != n+1 {
		t.Fatalf("after TaskCheckInterval, a sent %d times, want %d", sent["a"], n+1)
	}
}
