package worker

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/internal/redistest"
	"github.com/staged-dev/staged/internal/store"
)

// asynqDequeue is asynq v0.26's dequeue script (internal/rdb dequeueCmd),
// sent as its processor sends it.
var asynqDequeue = redis.NewScript(`
if redis.call("EXISTS", KEYS[2]) == 0 then
	local id = redis.call("RPOPLPUSH", KEYS[1], KEYS[3])
	if id then
		local key = ARGV[2] .. id
		redis.call("HSET", key, "state", "active")
		redis.call("HDEL", key, "pending_since")
		redis.call("ZADD", KEYS[4], ARGV[1], id)
		return redis.call("HGET", key, "msg")
	end
end
return nil`)

// scriptCounter counts the scripts that reach Redis.
type scriptCounter struct{ n atomic.Int64 }

func (c *scriptCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *scriptCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (c *scriptCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if n := cmd.Name(); n == "evalsha" || n == "eval" {
			c.n.Add(1)
		}
		return next(ctx, cmd)
	}
}

// prefetchRig is a client of h's Redis with a waker that prefetches (as
// asynq's server client has), and the scripts counted below it.
type prefetchRig struct {
	h       *harness
	q       string
	c       *redis.Client
	wk      *waker
	scripts *scriptCounter
	ids     []string // the jobs, in the order asynq dequeues them
}

// newPrefetchRig submits n chain jobs and returns a rig on their queue.
func newPrefetchRig(t *testing.T, h *harness, n int) *prefetchRig {
	ctx := context.Background()
	r := &prefetchRig{h: h, scripts: &scriptCounter{}}
	for range n {
		r.ids = append(r.ids, h.submit("chain", `"x"`, api.Options{}))
	}
	r.q = store.TaskQueue(h.job(r.ids[0]))
	// asynq pops from the right of its pending list.
	pending, err := h.rdb.LRange(ctx, "asynq:{"+r.q+"}:pending", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(pending)
	r.ids = pending
	r.c = redis.NewClient(&redis.Options{Addr: h.srv.Addr})
	t.Cleanup(func() { r.c.Close() })
	r.wk = newWaker(map[string]int{r.q: 1}, 100*time.Millisecond) // an empty dequeue waits that long
	r.wk.pf = &prefetcher{rdb: r.c, conc: 8, max: prefetchMax, hold: time.Hour}
	r.c.AddHook(r.wk)
	r.c.AddHook(r.scripts)
	for _, s := range []*redis.Script{asynqDequeue, prefetchScript, handBackScript} {
		if err := s.Load(ctx, h.rdb).Err(); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// dequeue is one dequeue of asynq's processor; it returns the task's id.
func (r *prefetchRig) dequeue(t *testing.T) string {
	t.Helper()
	k := "asynq:{" + r.q + "}:"
	msg, err := asynqDequeue.Run(context.Background(), r.c, []string{k + "pending", k + "paused", k + "active", k + "lease"},
		time.Now().Add(30*time.Second).Unix(), k+"t:").Text()
	if err != nil {
		t.Fatalf("dequeue: %v", err)
	}
	for _, id := range r.ids {
		if strings.Contains(msg, id) {
			return id
		}
	}
	t.Fatalf("dequeued a task of no job submitted: %q", msg)
	return ""
}

// lists returns the ids in q's pending and active lists and lease set
// (pending in dequeue order, the others sorted).
func (r *prefetchRig) lists(t *testing.T) (pending, active, lease []string) {
	t.Helper()
	ctx := context.Background()
	k := "asynq:{" + r.q + "}:"
	var err error
	if pending, err = r.h.rdb.LRange(ctx, k+"pending", 0, -1).Result(); err != nil {
		t.Fatal(err)
	}
	slices.Reverse(pending) // in dequeue order
	if active, err = r.h.rdb.LRange(ctx, k+"active", 0, -1).Result(); err != nil {
		t.Fatal(err)
	}
	if lease, err = r.h.rdb.ZRange(ctx, k+"lease", 0, -1).Result(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(active)
	slices.Sort(lease)
	return
}

func (r *prefetchRig) state(t *testing.T, id string) string {
	t.Helper()
	s, err := r.h.rdb.HGet(context.Background(), "asynq:{"+r.q+"}:t:"+id, "state").Result()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A dequeue that reaches Redis takes as many tasks as there are free slots
// (here all five) in one script: the next four dequeues are answered
// without a round trip, in queue order, and the tasks are active and
// leased as asynq's own dequeue leaves them.
func TestPrefetchOneRoundTrip(t *testing.T) {
	t.Parallel()
	h := newHarness(t, chainPipeline(nil, nil))
	r := newPrefetchRig(t, h, 5)
	var got []string
	for range 5 {
		got = append(got, r.dequeue(t))
	}
	if !slices.Equal(got, r.ids) {
		t.Fatalf("dequeued %v, want %v (queue order)", got, r.ids)
	}
	if n := r.scripts.n.Load(); n != 1 {
		t.Fatalf("%d scripts reached Redis for 5 dequeues, want 1", n)
	}
	pending, active, lease := r.lists(t)
	want := slices.Sorted(slices.Values(r.ids))
	if len(pending) != 0 || !slices.Equal(active, want) || !slices.Equal(lease, want) {
		t.Fatalf("pending %v, active %v, lease %v; want none pending, all 5 active and leased", pending, active, lease)
	}
	for _, id := range r.ids {
		if s := r.state(t, id); s != "active" {
			t.Errorf("task %s in state %q, want active", id, s)
		}
	}
	// Five tasks are held now (of 8 slots): a dequeue takes at most 3.
	if k := r.wk.pf.want(); k != 3 {
		t.Errorf("want() = %d with 5 of 8 slots taken, want 3", k)
	}
	r.wk.pf.finished()
	if k := r.wk.pf.want(); k != 4 {
		t.Errorf("want() = %d with 4 of 8 slots taken, want 4", k)
	}
}

// Stopping hands the buffered tasks back to the head of their queue, in
// order; the tasks handed to asynq stay active.
func TestPrefetchStopHandsBack(t *testing.T) {
	t.Parallel()
	h := newHarness(t, chainPipeline(nil, nil))
	r := newPrefetchRig(t, h, 5)
	a, b := r.dequeue(t), r.dequeue(t)
	r.wk.pf.stop(context.Background())
	pending, active, lease := r.lists(t)
	if !slices.Equal(pending, r.ids[2:]) {
		t.Fatalf("pending %v, want %v in this order", pending, r.ids[2:])
	}
	held := slices.Sorted(slices.Values([]string{a, b}))
	if !slices.Equal(active, held) || !slices.Equal(lease, held) {
		t.Errorf("active %v, lease %v; want the two dequeued, %v", active, lease, held)
	}
	for _, id := range r.ids[2:] {
		if s := r.state(t, id); s != "pending" {
			t.Errorf("task %s in state %q, want pending", id, s)
		}
	}
	if n := r.wk.pf.handedBack.Load(); n != 3 {
		t.Errorf("handed back %d, want 3", n)
	}
	// After stop, a dequeue takes one task and buffers none.
	if c := r.dequeue(t); c != r.ids[2] {
		t.Errorf("dequeued %s after stop, want %s", c, r.ids[2])
	}
	if pending, _, _ := r.lists(t); len(pending) != 2 {
		t.Errorf("%d pending after a dequeue past stop, want 2", len(pending))
	}
}

// A task left in the buffer for the hold time goes back to its queue.
func TestPrefetchHoldExpires(t *testing.T) {
	t.Parallel()
	h := newHarness(t, chainPipeline(nil, nil))
	r := newPrefetchRig(t, h, 3)
	r.wk.pf.hold = 50 * time.Millisecond
	r.dequeue(t)
	redistest.Eventually(t, 10*time.Second, "the 2 buffered tasks back in pending", func() bool {
		pending, _, _ := r.lists(t)
		return slices.Equal(pending, r.ids[1:])
	})
	for _, id := range r.ids[1:] {
		if s := r.state(t, id); s != "pending" {
			t.Errorf("task %s in state %q, want pending", id, s)
		}
	}
	if _, ok := r.wk.pf.pop(); ok {
		t.Errorf("a handed-back task still in the buffer")
	}
}

// A worker stopped while it holds prefetched tasks no handler has taken
// leaves them pending for other workers, not active until the recoverer.
func TestWorkerStopHandsPrefetchBack(t *testing.T) {
	t.Parallel()
	gate, started := make(chan struct{}), make(chan string, 16)
	h := newHarness(t, chainPipeline(gate, started))
	// Three of the four tasks wait in the buffer.
	_, ids, stop := runBuffered(t, h, h.config(), started, 4)
	stop()
	q := store.TaskQueue(h.job(ids[0]))
	insp := asynq.NewInspectorFromRedisClient(h.rdb)
	pending := 0
	for _, id := range ids {
		j := h.job(id)
		info, err := insp.GetTaskInfo(q, store.TaskID(id, 1))
		if err != nil {
			t.Fatalf("task of %s: %v", id, err)
		}
		if info.State == asynq.TaskStateActive {
			t.Errorf("job %s: its task is still active after the worker stopped", id)
		}
		if info.State == asynq.TaskStatePending && j.State == api.StateQueued {
			pending++
		}
	}
	if pending != 3 {
		t.Errorf("%d jobs queued with a pending task, want the 3 prefetched", pending)
	}
}

// The tasks a killed worker had prefetched are active with a lease nobody
// extends; asynq's recoverer retries them like the killed worker's running
// tasks, and each job runs once. When the dequeue claimed their jobs (one
// node), the claims lapse with their leases: the retried tasks find the
// jobs busy until then, and the reconciler takes each job over once its
// lease has lapsed (about Lease + ReconcileEvery after the kill, as for a
// killed worker's running jobs).
func TestKilledPrefetchRecovered(t *testing.T) {
	t.Parallel()
	for _, claims := range []bool{false, true} {
		t.Run(fmt.Sprintf("claims=%v", claims), func(t *testing.T) {
			t.Parallel()
			started := make(chan string, 64)
			h := newHarness(t, chainPipeline(nil, started))
			cfg := h.config()
			r := newPrefetchRig(t, h, 5)
			if claims {
				r.wk.pf.take, r.wk.pf.lease = h.store, cfg.Lease
			}
			r.dequeue(t) // takes all 5; the "killed" worker ran none of them
			r.c.Close()
			_, active, _ := r.lists(t)
			if len(active) != 5 {
				t.Fatalf("%d active, want 5", len(active))
			}
			ctx := context.Background()
			want := map[bool]string{false: "queued", true: "running"}[claims]
			for _, id := range r.ids {
				if s := h.rdb.HGet(ctx, store.JobKey(id), "state").Val(); s != want {
					t.Fatalf("job %s in state %q after the dequeue, want %s", id, s, want)
				}
			}
			// Their leases lapse (as 30 s + asynq's 30 s of slack would), and a
			// worker starts: its recoverer runs at once.
			lease := "asynq:{" + r.q + "}:lease"
			for _, id := range r.ids {
				if err := h.rdb.ZAddXX(ctx, lease, redis.Z{Score: float64(time.Now().Add(-2 * time.Minute).Unix()), Member: id}).Err(); err != nil {
					t.Fatal(err)
				}
			}
			h.start(cfg)
			for _, id := range r.ids {
				j := h.wait(id, api.StateSucceeded, 30*time.Second)
				if string(j.Result) != `"xabc"` || !slices.Equal(attempts(j), []int{1, 1, 1}) {
					t.Errorf("job %s: result %s, stage attempts %v; want \"xabc\" and each stage once", id, j.Result, attempts(j))
				}
			}
			if n := len(started); n != 15 {
				t.Errorf("%d stages ran for 5 jobs of 3 stages, want 15", n)
			}
		})
	}
}

// While slots free up faster than a fetch's round trip, a dequeue that
// leaves the buffer short tops it up in the background (read-ahead): the
// processor's next dequeues find tasks buffered instead of waiting for
// Redis. Stop hands back the tasks of both fetches.
func TestPrefetchReadAhead(t *testing.T) {
	t.Parallel()
	h := newHarness(t, chainPipeline(nil, nil))
	r := newPrefetchRig(t, h, 40)
	pf := r.wk.pf
	// Slots freeing up one after the other, and fetches that take a
	// second: all 8 slots are expected to free up during one fetch.
	pf.rtt.Store(int64(time.Second))
	for range 2 {
		pf.started()
	}
	pf.finished()
	pf.finished()
	if n := pf.ahead(); n != 8 {
		t.Fatalf("ahead() = %d, want 8 (all slots)", n)
	}
	// The dequeue takes 1 + 7 free slots' tasks, then a refill tops the
	// 7 buffered up to 4×8.
	first := r.dequeue(t)
	redistest.Eventually(t, 10*time.Second, "the refill of 25 tasks", func() bool { return pf.refilled.Load() == 25 })
	redistest.Eventually(t, 10*time.Second, "the refill over", func() bool {
		pf.mu.Lock()
		defer pf.mu.Unlock()
		return !pf.refilling
	})
	if n := r.scripts.n.Load(); n != 2 {
		t.Fatalf("%d scripts reached Redis, want 2 (the dequeue's fetch and the refill)", n)
	}
	pending, active, _ := r.lists(t)
	if len(pending) != 7 || len(active) != 33 {
		t.Fatalf("%d pending, %d active; want 7 and 33", len(pending), len(active))
	}
	var got []string
	for range 5 {
		got = append(got, r.dequeue(t))
	}
	if want := r.ids[1:6]; first != r.ids[0] || !slices.Equal(got, want) {
		t.Errorf("dequeued %s then %v, want %s then %v (queue order)", first, got, r.ids[0], want)
	}
	pf.stop(context.Background())
	if n := pf.handedBack.Load(); n != 27 {
		t.Errorf("handed back %d at stop, want the 27 still buffered", n)
	}
}

// A worker whose slots free up slowly (or not since long) reads no task
// ahead: no task waits in its buffer for a slot.
func TestPrefetchNoReadAheadWhenSlow(t *testing.T) {
	t.Parallel()
	h := newHarness(t, chainPipeline(nil, nil))
	r := newPrefetchRig(t, h, 20)
	pf := r.wk.pf
	pf.rtt.Store(int64(time.Millisecond))
	pf.started()
	pf.finished()
	pf.gap.Store(int64(time.Second)) // a slot frees up every second
	if n := pf.ahead(); n != 0 {
		t.Fatalf("ahead() = %d, want 0", n)
	}
	r.dequeue(t)
	pf.mu.Lock()
	refilling, buffered := pf.refilling, len(pf.buf)
	pf.mu.Unlock()
	if refilling || buffered != 7 {
		t.Errorf("after a dequeue: refilling %v, %d buffered; want no refill and the 7 free slots' tasks", refilling, buffered)
	}
}
