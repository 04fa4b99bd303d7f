package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/internal/store"

	"github.com/redis/go-redis/v9"

	"github.com/staged-dev/staged/internal/redistest"
	"github.com/staged-dev/staged/tasks"
)

// gate holds the round trips of a test's hook while it is shut: each one
// held says so on entered, then waits for open.
type gate struct {
	mu      sync.Mutex
	shut    chan struct{} // nil: open
	entered chan struct{}
}

func (g *gate) hold() {
	g.mu.Lock()
	c := g.shut
	g.mu.Unlock()
	if c != nil {
		g.entered <- struct{}{}
		<-c
	}
}

func (g *gate) open() {
	g.mu.Lock()
	close(g.shut)
	g.shut = nil
	g.mu.Unlock()
}

// gateHook holds every pipeline while the gate is shut, and records the
// largest number of EVALSHAs one pipeline carried.
type gateHook struct {
	gate
	maxEval atomic.Int64
}

func (h *gateHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *gateHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return next
}
func (h *gateHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		n := int64(0)
		for _, c := range cmds {
			if c.Name() == "evalsha" {
				n++
			}
		}
		for m := h.maxEval.Load(); n > m && !h.maxEval.CompareAndSwap(m, n); m = h.maxEval.Load() {
		}
		h.hold()
		return next(ctx, cmds)
	}
}

// plugged starts a combining store whose senders are all held in the hook
// until the returned release is called, so that the calls made meanwhile
// wait and go out together.
func plugged(t *testing.T, srv *redistest.Server) (s *store.Store, h *gateHook, release func()) {
	rdb := srv.Client()
	h = &gateHook{gate: gate{shut: make(chan struct{}), entered: make(chan struct{}, 16)}}
	rdb.AddHook(h)
	s = store.NewStore(rdb)
	s.StartCombiner(context.Background())
	t.Cleanup(func() { s.Close() })
	var plugs sync.WaitGroup
	for i := range 2 { // one per sender: renewals of jobs that do not exist
		plugs.Go(func() { s.Renew(context.Background(), fmt.Sprintf("plug-%d", i), 1, time.Second) })
		<-h.entered
	}
	return s, h, func() {
		h.open()
		plugs.Wait()
	}
}

func TestCombinerConcurrentSaves(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	s := store.NewStore(srv.Client())
	s.KeepAllEvents = true // to count every write
	s.StartCombiner(ctx)
	defer s.Close()
	var wg sync.WaitGroup
	for range 50 {
		j := newJob(t, s, "")
		wg.Go(func() {
			c, err := s.Claim(ctx, j.ID, 1, time.Second)
			if err != nil || c.Outcome != store.ClaimOK {
				t.Errorf("claim %s: %v %+v", j.ID, err, c)
				return
			}
			for k := range 4 {
				c.Job.Progress = float64(k+1) / 4
				c.Job.State = api.StateRunning
				if k == 3 {
					c.Job.State = api.StateSucceeded
				}
				if _, err := s.Save(ctx, c.Job, c.Token, store.SaveArgs{TTL: time.Minute, Fields: map[string][]byte{fmt.Sprintf("out:%d", k): []byte(`"x"`)}}); err != nil {
					t.Errorf("save %s %d: %v", j.ID, k, err)
					return
				}
			}
			got, err := s.Get(ctx, j.ID, "")
			if err != nil || got.State != api.StateSucceeded || got.Progress != 1 {
				t.Errorf("job %s = %v %+v", j.ID, err, got)
			}
			if evs, _ := s.Events(ctx, j.ID, "", 100); len(evs) != 4 {
				t.Errorf("job %s has %d events, want 4", j.ID, len(evs))
			}
		})
	}
	wg.Wait()
	if n, _ := store.NewStore(srv.Client()).LeaseCount(ctx); n != 0 {
		t.Fatalf("lease index holds %d ids after the terminal saves", n)
	}
}

// inBatch runs each call in its own goroutine while the combiner is plugged,
// lets them all queue up, and unplugs it.
func inBatch(release func(), calls ...func()) {
	var wg sync.WaitGroup
	for _, f := range calls {
		wg.Go(f)
	}
	time.Sleep(100 * time.Millisecond) // all waiting for a sender
	release()
	wg.Wait()
}

func TestCombinerFencedInBatch(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	plain := store.NewStore(srv.Client())
	var claims []*store.Claim
	for range 6 {
		j := newJob(t, plain, "")
		c, err := plain.Claim(ctx, j.ID, 1, time.Minute)
		if err != nil || c.Outcome != store.ClaimOK {
			t.Fatalf("claim: %v %+v", err, c)
		}
		claims = append(claims, c)
	}
	// Job 0 is handed back: its old token is fenced.
	if h, err := plain.Handoff(ctx, claims[0].Job.ID, claims[0].Token); err != nil || h.Outcome != store.HandoffOK {
		t.Fatalf("handoff: %v %+v", err, h)
	}
	s, h, release := plugged(t, srv)
	errs := make([]error, len(claims))
	var calls []func()
	for i, c := range claims {
		calls = append(calls, func() {
			c.Job.State = api.StateRunning
			if i%2 == 0 {
				c.Job.State = api.StateSucceeded // with the ZREM of the lease index
			}
			_, errs[i] = s.Save(ctx, c.Job, c.Token, store.SaveArgs{TTL: time.Minute})
		})
	}
	inBatch(release, calls...)
	if h.maxEval.Load() < 2 {
		t.Fatalf("largest pipeline carried %d scripts; want a batch", h.maxEval.Load())
	}
	for i, err := range errs {
		if i == 0 && !errors.Is(err, store.ErrFenced) {
			t.Fatalf("fenced save: err = %v, want ErrFenced", err)
		}
		if i != 0 && err != nil {
			t.Fatalf("save %d: %v", i, err)
		}
	}
	if got, _ := plain.Get(ctx, claims[0].Job.ID, ""); got.State == api.StateSucceeded {
		t.Fatalf("the fenced save was written")
	}
	if got, _ := plain.Get(ctx, claims[1].Job.ID, ""); got.State != api.StateRunning {
		t.Fatalf("job 1 state = %s", got.State)
	}
}

func TestCombinerNoScriptInBatch(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	plain := store.NewStore(srv.Client())
	var saved []*store.Claim
	var toClaim []string
	for i := range 6 {
		j := newJob(t, plain, "")
		if i%2 == 1 {
			toClaim = append(toClaim, j.ID)
			continue
		}
		c, err := plain.Claim(ctx, j.ID, 1, time.Minute)
		if err != nil || c.Outcome != store.ClaimOK {
			t.Fatalf("claim: %v %+v", err, c)
		}
		saved = append(saved, c)
	}
	s, h, release := plugged(t, srv)
	// As after a Redis restart: no script is loaded.
	if err := srv.Client().ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	var calls []func()
	for i, c := range saved {
		calls = append(calls, func() {
			c.Job.State = api.StateRunning
			if i == 0 {
				c.Job.State = api.StateSucceeded
			}
			if _, err := s.Save(ctx, c.Job, c.Token, store.SaveArgs{TTL: time.Minute}); err != nil {
				t.Errorf("save %d: %v", i, err)
			}
		})
	}
	for _, id := range toClaim {
		calls = append(calls, func() {
			if c, err := s.Claim(ctx, id, 1, time.Minute); err != nil || c.Outcome != store.ClaimOK {
				t.Errorf("claim %s: %v %+v", id, err, c)
			}
		})
	}
	inBatch(release, calls...)
	if h.maxEval.Load() < 2 {
		t.Fatalf("largest pipeline carried %d scripts; want a batch", h.maxEval.Load())
	}
	for i, c := range saved {
		want := api.StateRunning
		if i == 0 {
			want = api.StateSucceeded
		}
		if got, _ := plain.Get(ctx, c.Job.ID, ""); got.State != want {
			t.Errorf("job %d state = %s, want %s", i, got.State, want)
		}
	}
	// The claims' lease index entries went out with them; the terminal
	// save's ZREM too.
	for _, id := range toClaim {
		if err := srv.Client().ZScore(ctx, store.LeasesKey(id), id).Err(); err != nil {
			t.Errorf("claimed %s not in the lease index: %v", id, err)
		}
	}
	if err := srv.Client().ZScore(ctx, store.LeasesKey(saved[0].Job.ID), saved[0].Job.ID).Err(); !errors.Is(err, redis.Nil) {
		t.Errorf("finished job still in the lease index: %v", err)
	}
}

func TestCombinerCallerCancel(t *testing.T) {
	srv := redistest.Start(t)
	plain := store.NewStore(srv.Client())
	j := newJob(t, plain, "")
	c, err := plain.Claim(context.Background(), j.ID, 1, time.Minute)
	if err != nil || c.Outcome != store.ClaimOK {
		t.Fatalf("claim: %v %+v", err, c)
	}
	s, _, release := plugged(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	_, err = s.Save(ctx, c.Job, c.Token, store.SaveArgs{})
	if took := time.Since(t0); took > time.Second || !errors.Is(err, context.DeadlineExceeded) || tasks.ErrorCode(err) != tasks.EUNAVAILABLE {
		t.Fatalf("save with a stuck combiner: %v after %v", err, took)
	}
	release()
	if evs, _ := plain.Events(context.Background(), j.ID, "", 10); len(evs) != 0 {
		t.Fatalf("the abandoned save was written: %d events", len(evs))
	}
	// After Close, writes go to Redis directly.
	s.Close()
	if _, err := s.Save(context.Background(), c.Job, c.Token, store.SaveArgs{}); err != nil {
		t.Fatalf("save after Close: %v", err)
	}
}

// A write queued while both senders are busy goes out when one is free
// again, and so it does if the combiner stops first: its caller then sends
// it directly.
func TestCombinerQueuedAtClose(t *testing.T) {
	srv := redistest.Start(t)
	plain := store.NewStore(srv.Client())
	for i := range 20 { // the senders may take the write or stop first: both, most likely
		j := newJob(t, plain, "")
		c, err := plain.Claim(context.Background(), j.ID, 1, time.Minute)
		if err != nil || c.Outcome != store.ClaimOK {
			t.Fatalf("claim: %v %+v", err, c)
		}
		s, _, release := plugged(t, srv)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		saved := make(chan error, 1)
		go func() {
			_, err := s.Save(ctx, c.Job, c.Token, store.SaveArgs{})
			saved <- err
		}()
		redistest.Eventually(t, 10*time.Second, "the write queued", func() bool { return store.QueuedWrites(s) == 1 })
		closed := make(chan struct{})
		go func() { s.Close(); close(closed) }()
		release()
		<-closed
		if err := <-saved; err != nil {
			t.Fatalf("round %d: save queued at Close: %v", i, err)
		}
		cancel()
		if evs, _ := plain.Events(context.Background(), j.ID, "", 10); len(evs) != 1 {
			t.Fatalf("round %d: %d events after the save, want 1", i, len(evs))
		}
	}
}

// A write whose caller gave up (its deadline passed while Redis was down)
// is not retried into a Redis that comes back afterwards: the combiner's
// pipeline ends with its callers' deadlines, not with the client's retries.
func TestCombinerStopsRetryingAtDeadline(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{AOF: true})
	plain := store.NewStore(srv.Client())
	j := newJob(t, plain, "")
	c, err := plain.Claim(context.Background(), j.ID, 1, time.Minute)
	if err != nil || c.Outcome != store.ClaimOK {
		t.Fatalf("claim: %v %+v", err, c)
	}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: 100,
		MinRetryBackoff: 100 * time.Millisecond, MaxRetryBackoff: 200 * time.Millisecond}) // ≥ 10 s of retries
	defer rdb.Close()
	s := store.NewStore(rdb)
	s.StartCombiner(context.Background())
	srv.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := s.Save(ctx, c.Job, c.Token, store.SaveArgs{}); tasks.ErrorCode(err) != tasks.EUNAVAILABLE {
		t.Fatalf("save with Redis down: %v, want unavailable", err)
	}
	srv.Restart()
	s.Close() // waits for the senders: a save still being retried is written by now
	if evs, err := plain.Events(context.Background(), j.ID, "", 10); err != nil || len(evs) != 0 {
		t.Fatalf("the save answered 'unavailable' was written after Redis came back: %d events (%v)", len(evs), err)
	}
}
