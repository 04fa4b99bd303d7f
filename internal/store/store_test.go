package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/internal/store"

	"github.com/staged-dev/staged/internal/redistest"
	"github.com/staged-dev/staged/tasks"
)

func testPipeline() *tasks.Pipeline {
	run := func(ctx context.Context, in json.RawMessage, p tasks.Progress) (any, error) { return in, nil }
	return &tasks.Pipeline{Name: "t", Stages: []tasks.Stage{{Name: "a", Run: run}, {Name: "b", Run: run}}}
}

func newJob(t testing.TB, s *store.Store, tenant string) *api.Job {
	t.Helper()
	j := store.NewJob(testPipeline(), "", time.Now().UTC())
	if _, err := s.Create(context.Background(), j, tenant, json.RawMessage(`{"x":1}`), api.Options{Retention: time.Minute}); err != nil {
		t.Fatal(err)
	}
	return j
}

func TestCreateGetTenant(t *testing.T) {
	ctx := context.Background()
	s := store.NewStore(redistest.Start(t).Client())
	j := newJob(t, s, "acme")
	tests := []struct {
		name, id, tenant string
		want             string
	}{
		{"own tenant", j.ID, "acme", ""},
		{"any tenant", j.ID, "", ""},
		{"other tenant", j.ID, "evil", tasks.ENOTFOUND},
		{"unknown", "0b6c0b6c-0b6c-4b6c-8b6c-0b6c0b6c0b6c", "", tasks.ENOTFOUND},
		{"malformed", "../etc", "", tasks.ENOTFOUND},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Get(ctx, tt.id, tt.tenant)
			if code := tasks.ErrorCode(err); code != tt.want {
				t.Fatalf("code = %q, want %q (err %v)", code, tt.want, err)
			}
			if err == nil && (got.ID != j.ID || got.State != api.StateQueued) {
				t.Fatalf("got %+v", got)
			}
		})
	}
}

func TestClaimSaveFencing(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	s := store.NewStore(srv.Client())
	s.KeepAllEvents = true // to read every write back
	j := newJob(t, s, "")

	c, err := s.Claim(ctx, j.ID, 1, time.Second)
	if err != nil || c.Outcome != store.ClaimOK {
		t.Fatalf("claim: %v %+v", err, c)
	}
	if string(c.Input) != `{"x":1}` || c.Options.Retention != time.Minute {
		t.Fatalf("claim input/opts = %s %+v", c.Input, c.Options)
	}
	if c2, _ := s.Claim(ctx, j.ID, 1, time.Second); c2.Outcome != store.ClaimBusy {
		t.Fatalf("second claim = %s, want busy", c2.Outcome)
	}
	if c2, _ := s.Claim(ctx, j.ID, 2, time.Second); c2.Outcome != store.ClaimSuperseded {
		t.Fatalf("claim of gen 2 = %s, want superseded", c2.Outcome)
	}
	c.Job.State = api.StateRunning
	if _, err := s.Save(ctx, c.Job, c.Token, store.SaveArgs{Fields: map[string][]byte{"out:0": []byte(`"a"`)}}); err != nil {
		t.Fatal(err)
	}
	// A live lease blocks a takeover; the owner can hand back voluntarily.
	if h, _ := s.Handoff(ctx, j.ID, 0); h.Outcome != store.HandoffAlive {
		t.Fatalf("takeover of live lease = %s", h.Outcome)
	}
	srv.Client().Del(ctx, store.LeaseKey(j.ID)) // as if the lease lapsed
	h, err := s.Handoff(ctx, j.ID, 0)
	if err != nil || h.Outcome != store.HandoffOK || h.Gen != 2 || h.Token != c.Token+1 {
		t.Fatalf("takeover = %v %+v", err, h)
	}
	// The old owner is fenced out of every write.
	if _, err := s.Save(ctx, c.Job, c.Token, store.SaveArgs{}); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("stale save err = %v, want ErrFenced", err)
	}
	if _, err := s.Renew(ctx, j.ID, c.Token, time.Second); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("stale renew err = %v, want ErrFenced", err)
	}
	// A second takeover pass only re-enqueues.
	if h2, _ := s.Handoff(ctx, j.ID, 0); h2.Outcome != store.HandoffEnqueue || h2.Gen != 2 {
		t.Fatalf("second pass = %+v", h2)
	}
	c3, err := s.Claim(ctx, j.ID, 2, time.Second)
	if err != nil || c3.Outcome != store.ClaimOK || string(c3.Outputs[0]) != `"a"` {
		t.Fatalf("claim gen 2 = %v %+v", err, c3)
	}
	c3.Job.State = api.StateSucceeded
	// As after a Redis restart: the pipelined terminal save loads its script.
	srv.Client().ScriptFlush(ctx)
	if _, err := s.Save(ctx, c3.Job, c3.Token, store.SaveArgs{TTL: 2 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if n, _ := store.NewStore(srv.Client()).LeaseCount(ctx); n != 0 {
		t.Fatalf("lease index holds %d ids after the terminal save", n)
	}
	for _, k := range []string{store.JobKey(j.ID), store.EventsKey(j.ID)} {
		if ttl := srv.Client().PTTL(ctx, k).Val(); ttl <= 0 || ttl > 2*time.Second {
			t.Fatalf("%s ttl = %v", k, ttl)
		}
	}
	evs, err := s.Events(ctx, j.ID, "", 100)
	if err != nil || len(evs) != 2 {
		t.Fatalf("events = %d %v", len(evs), err)
	}
	rest, _ := s.Events(ctx, j.ID, evs[0].ID, 100)
	if len(rest) != 1 || rest[0].ID != evs[1].ID {
		t.Fatalf("events after first = %+v", rest)
	}
}

func TestCancel(t *testing.T) {
	ctx := context.Background()
	s := store.NewStore(redistest.Start(t).Client())
	queued := newJob(t, s, "a")
	if _, err := s.Cancel(ctx, queued.ID, "b"); tasks.ErrorCode(err) != tasks.ENOTFOUND {
		t.Fatalf("other tenant cancel: %v", err)
	}
	c, err := s.Cancel(ctx, queued.ID, "a")
	if err != nil || !c.Idle || c.Job.State != api.StateCanceled {
		t.Fatalf("cancel queued = %v %+v", err, c)
	}
	if cl, _ := s.Claim(ctx, queued.ID, 1, time.Second); cl.Outcome != store.ClaimDone {
		t.Fatalf("claim after cancel = %s", cl.Outcome)
	}
	if _, err := s.Cancel(ctx, queued.ID, "a"); tasks.ErrorCode(err) != tasks.ECONFLICT {
		t.Fatalf("cancel finished: %v", err)
	}
	running := newJob(t, s, "a")
	cl, _ := s.Claim(ctx, running.ID, 1, time.Second)
	cl.Job.State = api.StateRunning
	s.Save(ctx, cl.Job, cl.Token, store.SaveArgs{})
	c, err = s.Cancel(ctx, running.ID, "")
	if err != nil || c.Idle || !c.Job.CancelRequested {
		t.Fatalf("cancel running = %v %+v", err, c)
	}
	if cancel, err := s.Renew(ctx, running.ID, cl.Token, time.Second); err != nil || !cancel {
		t.Fatalf("renew after cancel = %v %v", cancel, err)
	}
}

// A live job's stream keeps as many whole records as fit in EventsBytes
// (2 at least), trimmed exactly.
func TestEventsByteCap(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	if srv.Embedded {
		t.Skip("needs redis-server")
	}
	s := store.NewStore(srv.Client())
	s.EventsBytes = 8 << 10
	j := newJob(t, s, "")
	c, err := s.Claim(ctx, j.ID, 1, time.Minute)
	if err != nil || c.Outcome != store.ClaimOK {
		t.Fatalf("claim: %v %+v", err, c)
	}
	c.Job.State = api.StateRunning
	var last string
	for i := range 50 {
		c.Job.Progress = float64(i) / 50
		res, err := s.Save(ctx, c.Job, c.Token, store.SaveArgs{})
		if err != nil {
			t.Fatal(err)
		}
		last = res.EventID
	}
	rec, _ := srv.Client().HStrLen(ctx, store.JobKey(j.ID), "rec").Result()
	n := srv.Client().XLen(ctx, store.EventsKey(j.ID)).Val()
	if want := max(2, (8<<10)/rec); n != want {
		t.Fatalf("stream holds %d entries of %d bytes, want %d", n, rec, want)
	}
	evs, err := s.Events(ctx, j.ID, "", 100)
	if err != nil || len(evs) != int(n) || evs[len(evs)-1].ID != last {
		t.Fatalf("events = %d %v", len(evs), err)
	}
}

// A claim takes the lease with the next token and enters the lease index
// with its deadline, in its own script (one node): a claim that finds the
// job busy, done or superseded leaves the index as it is.
func TestClaimIndexesLease(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Client()
	s := store.NewStore(rdb)
	j := newJob(t, s, "")
	before := time.Now().Truncate(time.Millisecond)
	c, err := s.Claim(ctx, j.ID, 1, time.Minute)
	if err != nil || c.Outcome != store.ClaimOK || c.Token != 1 {
		t.Fatalf("claim: %v %+v", err, c)
	}
	if got := rdb.Get(ctx, store.LeaseKey(j.ID)).Val(); got != "1" {
		t.Fatalf("lease holds %q, want token 1", got)
	}
	if h := rdb.HMGet(ctx, store.JobKey(j.ID), "state", "token").Val(); h[0] != "running" || h[1] != "1" {
		t.Fatalf("state, token = %v", h)
	}
	score, err := rdb.ZScore(ctx, store.LeasesKey(j.ID), j.ID).Result()
	if d := time.UnixMilli(int64(score)).Sub(before); err != nil || d < time.Minute || d > time.Minute+10*time.Second {
		t.Fatalf("lease index deadline %v after the claim (%v), want the lease's minute", d, err)
	}
	if ttl := rdb.PTTL(ctx, store.LeasesKey(j.ID)).Val(); ttl <= 0 {
		t.Fatalf("lease index TTL %v", ttl)
	}
	// The owner's entry, as its renewals keep it, is not the busy claim's.
	rdb.ZAdd(ctx, store.LeasesKey(j.ID), redis.Z{Score: 42, Member: j.ID})
	for _, gen := range []int64{1, 2} {
		if c2, err := s.Claim(ctx, j.ID, gen, time.Hour); err != nil || c2.Outcome == store.ClaimOK {
			t.Fatalf("claim of gen %d = %v %+v", gen, err, c2)
		}
		if score := rdb.ZScore(ctx, store.LeasesKey(j.ID), j.ID).Val(); score != 42 {
			t.Fatalf("a failed claim of gen %d moved the owner's deadline to %v", gen, score)
		}
	}
	// After a takeover, the next generation's claim has the next token.
	rdb.Del(ctx, store.LeaseKey(j.ID))
	if h, err := s.Handoff(ctx, j.ID, 0); err != nil || h.Token != 2 {
		t.Fatalf("takeover = %v %+v", err, h)
	}
	if c3, err := s.Claim(ctx, j.ID, 2, time.Minute); err != nil || c3.Outcome != store.ClaimOK || c3.Token != 3 || c3.Job == nil {
		t.Fatalf("claim of gen 2 = %v %+v", err, c3)
	}
}
