package worker

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/internal/redistest"
	"github.com/staged-dev/staged/internal/store"
)

// On one node the dequeue claims the jobs of the tasks it takes: the
// handlers make no claim round trip of their own, and every job runs once,
// each stage once. With the dequeue's claims off (the Cluster's path) each
// handler claims by itself.
func TestDequeueClaims(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name  string
		take  bool
		trips int64
	}{{"dequeue claims", true, 0}, {"handler claims", false, 12}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			started := make(chan string, 64)
			h := newHarness(t, chainPipeline(nil, started))
			var ids []string
			for range 12 {
				ids = append(ids, h.submit("chain", `"x"`, api.Options{}))
			}
			w := h.newWorker(h.config())
			if !w.waker.pf.takes() {
				t.Fatal("a worker on one node whose dequeue does not claim")
			}
			if !tt.take {
				w.waker.pf.take = nil
			}
			h.run(w)
			for _, id := range ids {
				j := h.wait(id, api.StateSucceeded, 30*time.Second)
				if string(j.Result) != `"xabc"` || !slices.Equal(attempts(j), []int{1, 1, 1}) || j.Attempt != 1 {
					t.Errorf("job %s: result %s, attempt %d, stage attempts %v", id, j.Result, j.Attempt, attempts(j))
				}
			}
			if n := w.claimTrips.Load(); n != tt.trips {
				t.Errorf("%d claims made by handlers, want %d", n, tt.trips)
			}
			if n := len(started); n != 36 {
				t.Errorf("%d stages ran for 12 jobs of 3 stages, want 36", n)
			}
		})
	}
}

// claimRig is a prefetch rig whose dequeue claims, as a worker's on one
// node.
func claimRig(t *testing.T, h *harness, n int, lease time.Duration) *prefetchRig {
	r := newPrefetchRig(t, h, n)
	r.wk.pf.take, r.wk.pf.lease = h.store, lease
	return r
}

// assertGivenBack checks that job id's claim was given back: no lease, no
// lease-index entry, queued, and claimed at once by the next claim.
func assertGivenBack(t *testing.T, h *harness, id string) {
	t.Helper()
	ctx := context.Background()
	if n := h.rdb.Exists(ctx, store.LeaseKey(id)).Val(); n != 0 {
		t.Errorf("job %s: its lease is still there", id)
	}
	if err := h.rdb.ZScore(ctx, store.LeasesKey(id), id).Err(); err != redis.Nil {
		t.Errorf("job %s: its lease-index entry is still there (%v)", id, err)
	}
	if s := h.rdb.HGet(ctx, store.JobKey(id), "state").Val(); s != "queued" {
		t.Errorf("job %s: state %q, want queued", id, s)
	}
	c, err := h.store.Claim(ctx, id, 1, time.Minute)
	if err != nil || c.Outcome != store.ClaimOK {
		t.Errorf("job %s: claim after the give-back: %v %v, want ok", id, c, err)
	}
}

// A task left in the buffer for the hold time goes back to its queue with
// its job's claim given back, so that the next dequeue, here or on another
// worker, claims the job at once. The task handed to asynq keeps its
// claim, for its handler.
func TestPrefetchHoldGivesClaimsBack(t *testing.T) {
	t.Parallel()
	h := newHarness(t, chainPipeline(nil, nil))
	r := claimRig(t, h, 3, time.Minute)
	r.wk.pf.hold = 50 * time.Millisecond
	first := r.dequeue(t)
	redistest.Eventually(t, 10*time.Second, "the 2 buffered tasks back in pending", func() bool {
		pending, _, _ := r.lists(t)
		return slices.Equal(pending, r.ids[1:])
	})
	if n := r.wk.pf.unclaimed.Load(); n != 2 {
		t.Errorf("%d claims given back, want 2", n)
	}
	for _, id := range r.ids[1:] {
		assertGivenBack(t, h, id)
	}
	hd, ok := r.wk.pf.claimed(store.TaskID(first, 1))
	if !ok {
		t.Fatalf("no claim held for the handler of %s", first)
	}
	if c, ok, err := hd.t.Claim(first, 1); err != nil || !ok || c.Outcome != store.ClaimOK || c.Token != 1 {
		t.Errorf("the handler's claim of %s: %v %v %v, want ok with token 1", first, c, ok, err)
	}
	if _, ok := r.wk.pf.claimed(store.TaskID(first, 1)); ok {
		t.Errorf("a claim handed out twice")
	}
}

// runBuffered runs a worker of cfg with one slot whose waker believes in 8,
// on n chain jobs of a pipeline with a gate at stage b: the first dequeue
// takes all n tasks, and n-1 stay in the buffer (for an hour) while the
// first job waits at its gate, as runBuffered returns.
func runBuffered(t *testing.T, h *harness, cfg Config, started <-chan string, n int) (w *Worker, ids []string, stop func()) {
	t.Helper()
	cfg.Concurrency = 1
	w = h.newWorker(cfg)
	w.waker.pf.conc, w.waker.pf.hold = 8, time.Hour
	for range n {
		ids = append(ids, h.submit("chain", `"x"`, api.Options{}))
	}
	stop = h.run(w)
	<-started // a
	<-started // b: at the gate
	redistest.Eventually(t, 10*time.Second, "the tasks buffered", func() bool {
		w.waker.pf.mu.Lock()
		defer w.waker.pf.mu.Unlock()
		return len(w.waker.pf.buf) == n-1
	})
	return w, ids, stop
}

// A worker stopped while it holds prefetched tasks gives their claims back
// with them: the jobs are claimable at once by another worker, not after
// their lease lapses.
func TestWorkerStopGivesClaimsBack(t *testing.T) {
	t.Parallel()
	gate, started := make(chan struct{}), make(chan string, 16)
	h := newHarness(t, chainPipeline(gate, started))
	cfg := h.config()
	cfg.Lease = time.Minute // a lease that would not lapse during the test
	w, ids, stop := runBuffered(t, h, cfg, started, 4)
	stop()
	given := 0
	for _, id := range ids {
		if h.job(id).State == api.StateQueued {
			assertGivenBack(t, h, id)
			given++
		}
	}
	if given != 3 || w.waker.pf.unclaimed.Load() != 3 {
		t.Errorf("%d jobs queued, %d claims given back; want the 3 prefetched", given, w.waker.pf.unclaimed.Load())
	}
}

// A cancel published while a job's claimed task waits in the buffer
// reaches the job: its handler starts from the claim, sees the cancel and
// ends the job canceled without running a stage (the canceler had no run
// to stop).
func TestCancelWhileClaimBuffered(t *testing.T) {
	t.Parallel()
	gate, started := make(chan struct{}), make(chan string, 16)
	h := newHarness(t, chainPipeline(gate, started))
	cfg := h.config()
	cfg.Lease = time.Minute // no renewal reports the cancel meanwhile
	cfg.RenewEvery = 30 * time.Second
	w, ids, _ := runBuffered(t, h, cfg, started, 3)
	pf := w.waker.pf
	pf.mu.Lock()
	last, _ := store.JobOfTask(pf.buf[1].t.TaskID) // the job dequeued last
	pf.mu.Unlock()
	if s := h.rdb.HGet(context.Background(), store.JobKey(last), "state").Val(); s != "running" {
		t.Fatalf("buffered job %s in state %q, want running (claimed)", last, s)
	}
	if c, err := h.store.Cancel(context.Background(), last, ""); err != nil {
		t.Fatalf("cancel: %v %v", c, err)
	}
	redistest.Eventually(t, 10*time.Second, "the cancel kept with the buffered claim", func() bool {
		pf.mu.Lock()
		defer pf.mu.Unlock()
		return len(pf.buf) == 2 && pf.buf[1].t.Canceled()
	})
	close(gate)
	j := h.wait(last, api.StateCanceled, 30*time.Second)
	if !slices.Equal(attempts(j), []int{0, 0, 0}) {
		t.Errorf("canceled job %s: stage attempts %v, want none started", last, attempts(j))
	}
	for _, id := range ids {
		if id != last {
			h.wait(id, api.StateSucceeded, 30*time.Second)
		}
	}
	if n := len(started); n != 4 { // the first two jobs' 6 stages, 2 read above
		t.Errorf("%d more stages started, want 4 (none of the canceled job's)", n)
	}
}
