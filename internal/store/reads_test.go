package store_test

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/staged-dev/staged/internal/redistest"
	"github.com/staged-dev/staged/internal/store"
	"github.com/staged-dev/staged/tasks"
)

// readHook counts the HMGETs that reach Redis, alone or in pipelines, and
// can hold every round trip while its gate is shut.
type readHook struct {
	gate
	lone, piped, maxPiped atomic.Int64
}

func (h *readHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *readHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "hmget" {
			h.lone.Add(1)
		}
		h.hold()
		return next(ctx, cmd)
	}
}
func (h *readHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		n := int64(0)
		for _, c := range cmds {
			if c.Name() == "hmget" {
				n++
			}
		}
		h.piped.Add(n)
		for m := h.maxPiped.Load(); n > m && !h.maxPiped.CompareAndSwap(m, n); m = h.maxPiped.Load() {
		}
		h.hold()
		return next(ctx, cmds)
	}
}

// Concurrent reads share round trips, and each caller gets its own
// record and tenant (or ENOTFOUND) out of the shared pipeline.
func TestReadsShareRoundTrips(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	plain := store.NewStore(srv.Client())
	tenants := []string{"", "acme", "globex"}
	type want struct{ id, tenant string }
	var jobs []want
	for i := range 30 {
		tenant := tenants[i%len(tenants)]
		jobs = append(jobs, want{newJob(t, plain, tenant).ID, tenant})
	}
	jobs = append(jobs, want{"0b6c0b6c-0b6c-4b6c-8b6c-0b6c0b6c0b6c", ""}) // unknown
	rdb := srv.Client()
	h := &readHook{}
	rdb.AddHook(h)
	s := store.NewStore(rdb)
	s.StartReads(ctx, 5*time.Second)
	defer s.Close()
	var reads int64
	deadline := time.Now().Add(20 * time.Second)
	for h.maxPiped.Load() < 2 { // rounds of concurrent reads until some shared a round trip
		if time.Now().After(deadline) {
			t.Fatalf("%d reads, none shared a round trip (%d alone)", reads, h.lone.Load())
		}
		var wg sync.WaitGroup
		for range 4 {
			for _, j := range jobs {
				reads++
				wg.Go(func() {
					rec, tenant, err := s.GetOwned(ctx, j.id)
					if j.id == jobs[len(jobs)-1].id {
						if tasks.ErrorCode(err) != tasks.ENOTFOUND {
							t.Errorf("unknown job: err = %v, want not found", err)
						}
						return
					}
					if err != nil || !containsID(rec, j.id) || tenant != j.tenant {
						t.Errorf("GetOwned(%s) = %.60s, %q, %v; want its record and tenant %q", j.id, rec, tenant, err, j.tenant)
					}
				})
			}
		}
		wg.Wait()
		if t.Failed() {
			return
		}
	}
	if sent := h.lone.Load() + h.piped.Load(); sent != reads {
		t.Errorf("%d HMGETs reached Redis for %d reads, want one each", sent, reads)
	}
	t.Logf("%d reads: %d alone, %d in pipelines of up to %d", reads, h.lone.Load(), h.piped.Load(), h.maxPiped.Load())
}

func containsID(rec []byte, id string) bool {
	return bytes.Contains(rec, []byte(`"id":"`+id+`"`))
}

// A read is bounded by the reader's time-out, also when the client would
// retry for much longer.
func TestReadsBounded(t *testing.T) {
	srv := redistest.Start(t)
	j := newJob(t, store.NewStore(srv.Client()), "")
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: 100,
		MinRetryBackoff: 100 * time.Millisecond, MaxRetryBackoff: 200 * time.Millisecond}) // ≥ 10 s of retries
	defer rdb.Close()
	s := store.NewStore(rdb)
	s.StartReads(context.Background(), 200*time.Millisecond)
	defer s.Close()
	srv.Kill()
	start := time.Now()
	_, _, err := s.GetOwned(context.Background(), j.ID)
	took := time.Since(start)
	if tasks.ErrorCode(err) != tasks.EUNAVAILABLE {
		t.Fatalf("read with Redis down: err = %v, want unavailable", err)
	}
	if took > 2*time.Second {
		t.Fatalf("read with Redis down answered after %v, want about the 200 ms time-out", took)
	}
}

// A read whose time is up before a sender takes it is not sent.
func TestReadsPastDeadlineNotSent(t *testing.T) {
	srv := redistest.Start(t)
	j := newJob(t, store.NewStore(srv.Client()), "")
	rdb := srv.Client()
	h := &readHook{}
	rdb.AddHook(h)
	s := store.NewStore(rdb)
	s.StartReads(context.Background(), time.Nanosecond)
	defer s.Close()
	_, _, err := s.GetOwned(context.Background(), j.ID)
	if tasks.ErrorCode(err) != tasks.EUNAVAILABLE || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want unavailable (deadline exceeded)", err)
	}
	if n := h.lone.Load() + h.piped.Load(); n != 0 {
		t.Fatalf("%d HMGETs sent for a read past its deadline", n)
	}
}

// A caller whose context ends while its read waits gets its error at once,
// and the reader goes on serving the others; after Close, reads go to
// Redis directly.
func TestReadsCallerGivesUp(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	j := newJob(t, store.NewStore(srv.Client()), "acme")
	rdb := srv.Client()
	h := &readHook{gate: gate{shut: make(chan struct{}), entered: make(chan struct{}, store.ReadSenders+2)}}
	rdb.AddHook(h)
	s := store.NewStore(rdb)
	s.StartReads(ctx, 5*time.Second)
	var plugs sync.WaitGroup
	for range store.ReadSenders { // one per sender, held in the hook
		plugs.Go(func() {
			if _, _, err := s.GetOwned(ctx, j.ID); err != nil {
				t.Errorf("held read: %v", err)
			}
		})
		<-h.entered
	}
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, _, err := s.GetOwned(cctx, j.ID)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read of a caller that gave up: err = %v, want its context's error", err)
	}
	h.open()
	plugs.Wait()
	if _, tenant, err := s.GetOwned(ctx, j.ID); err != nil || tenant != "acme" {
		t.Fatalf("read after the held ones: %q, %v", tenant, err)
	}
	s.Close()
	before := h.lone.Load()
	if _, tenant, err := s.GetOwned(ctx, j.ID); err != nil || tenant != "acme" {
		t.Fatalf("read after Close: %q, %v", tenant, err)
	}
	if h.lone.Load() != before+1 {
		t.Fatalf("read after Close did not go to Redis")
	}
}

// A sender that has a single read lets the goroutines already runnable go
// first, so that a read they are about to ask for goes in the same round
// trip: on one P, two reads started together share it (without the yield,
// the sender takes the first before the second has run, and sends it
// alone).
func TestReadsYieldForCompany(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	plain := store.NewStore(srv.Client())
	a, b := newJob(t, plain, ""), newJob(t, plain, "")
	rdb := srv.Client()
	h := &readHook{}
	rdb.AddHook(h)
	s := store.NewStore(rdb)
	s.StartReads(ctx, 5*time.Second)
	defer s.Close()
	if _, _, err := s.GetOwned(ctx, a.ID); err != nil { // the connection made
		t.Fatal(err)
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	for try := 0; h.maxPiped.Load() < 2; try++ {
		if try == 20 {
			t.Fatalf("20 pairs of reads started together, none shared a round trip (%d alone)", h.lone.Load())
		}
		var wg sync.WaitGroup
		for _, id := range []string{a.ID, b.ID} {
			wg.Go(func() {
				if _, _, err := s.GetOwned(ctx, id); err != nil {
					t.Errorf("read %s: %v", id, err)
				}
			})
		}
		wg.Wait()
	}
}
