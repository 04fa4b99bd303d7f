package store_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/internal/redistest"
	"github.com/staged-dev/staged/internal/store"
)

// The claiming dequeue computes a job's lease-index shard in Lua: the same
// shard as LeasesKey, for any id, on Redis and on the embedded server of
// staged dev (miniredis: no bit library).
func TestTakeShardIsLeasesKey(t *testing.T) {
	ids := []string{"", "a", "0b6c0b6c-0b6c-4b6c-8b6c-0b6c0b6c0b6c", "\xff\xfe\x80", "ü-g2", strings.Repeat("long id ", 40)}
	for range 2000 {
		ids = append(ids, uuid.NewString())
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	for _, tt := range bothServers {
		t.Run(tt.name, func(t *testing.T) {
			rdb := redis.NewClient(&redis.Options{Addr: tt.addr(t)})
			defer rdb.Close()
			got, err := store.ShardScript.Run(context.Background(), rdb, nil, args...).StringSlice()
			if err != nil {
				t.Fatal(err)
			}
			for i, id := range ids {
				if got[i] != store.LeasesKey(id) {
					t.Fatalf("id %q: Lua's shard key %s, LeasesKey %s", id, got[i], store.LeasesKey(id))
				}
			}
		})
	}
}

// bothServers start a redis-server and the embedded server of staged dev
// (miniredis), for tests of Lua that must run on both.
var bothServers = []struct {
	name string
	addr func(t *testing.T) string
}{
	{"redis", func(t *testing.T) string { return redistest.Start(t).Addr }},
	{"embedded", func(t *testing.T) string { return miniredis.RunT(t).Addr() }},
}

// The claiming dequeue runs on the embedded server of staged dev too.
func TestTakeEmbedded(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: miniredis.RunT(t).Addr()})
	defer rdb.Close()
	r := &takeRig{t: t, rdb: rdb, s: store.NewStore(rdb), q: "q1"}
	a := newJob(t, r.s, "")
	r.pend(a.ID)
	ts := r.take(16, time.Minute)
	if len(ts) != 1 {
		t.Fatalf("took %d tasks, want 1", len(ts))
	}
	c, ok, err := ts[0].Claim(a.ID, 1)
	if err != nil || !ok || c.Outcome != store.ClaimOK || c.Token != 1 {
		t.Fatalf("claim: %v %v %v, want ok with token 1", c, ok, err)
	}
	if c.TaskMsg != "msg of "+a.ID {
		t.Errorf("the claim's task message %q, want the dequeued one", c.TaskMsg)
	}
	if err := rdb.ZScore(context.Background(), store.LeasesKey(a.ID), a.ID).Err(); err != nil {
		t.Errorf("no lease-index entry: %v", err)
	}
	if n, err := r.s.Unclaim(context.Background(), ts); err != nil || n != 1 {
		t.Errorf("Unclaim = %d, %v; want 1", n, err)
	}
}

// The claiming dequeue finds a job's lease-index shard in the job's hash
// (field ls, written by its create) and, for a job created without it,
// computes it from the id; the claim it answers does not carry ls. On
// Redis and on the embedded server.
func TestTakeShardFromHash(t *testing.T) {
	for _, tt := range bothServers {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			rdb := redis.NewClient(&redis.Options{Addr: tt.addr(t)})
			defer rdb.Close()
			r := &takeRig{t: t, rdb: rdb, s: store.NewStore(rdb), q: "q1"}
			plain, old, moved := newJob(t, r.s, ""), newJob(t, r.s, ""), newJob(t, r.s, "")
			// Create put each in the lease index (its orphan check): out
			// of it, so that only the claim's entry counts.
			for _, j := range []*api.Job{plain, old, moved} {
				if got := r.field(j.ID, "ls"); got != strconv.Itoa(store.LeaseShardOf(j.ID)) {
					t.Fatalf("job %s: ls %q, want its shard %d", j.ID, got, store.LeaseShardOf(j.ID))
				}
				rdb.ZRem(ctx, store.LeasesKey(j.ID), j.ID)
				r.pend(j.ID)
			}
			rdb.HDel(ctx, store.JobKey(old.ID), "ls") // as a version before ls created it
			other := (store.LeaseShardOf(moved.ID) + 1) % store.LeaseShards
			rdb.HSet(ctx, store.JobKey(moved.ID), "ls", other)
			ts := r.take(16, time.Minute)
			if len(ts) != 3 {
				t.Fatalf("took %d tasks, want 3", len(ts))
			}
			for i, want := range []string{store.LeasesKey(plain.ID), store.LeasesKey(old.ID), store.LeasesShardKey(other)} {
				id, _ := store.JobOfTask(ts[i].TaskID)
				if err := rdb.ZScore(ctx, want, id).Err(); err != nil {
					t.Errorf("job %s: no entry in %s: %v", id, want, err)
				}
				c, ok, err := ts[i].Claim(id, 1)
				if err != nil || !ok || c.Outcome != store.ClaimOK {
					t.Fatalf("claim of %s: %v %v %v", id, c, ok, err)
				}
				if s := fmt.Sprint(ts[i]); strings.Contains(s, " ls ") {
					t.Errorf("the claim of %s carries field ls: %s", id, s)
				}
			}
			if err := rdb.ZScore(ctx, store.LeasesKey(moved.ID), moved.ID).Err(); err != redis.Nil {
				t.Errorf("job %s is in its computed shard too (%v)", moved.ID, err)
			}
		})
	}
}

// takeRig is a queue of asynq tasks of store jobs and the claiming dequeue
// on it, as the worker's prefetch sends it.
type takeRig struct {
	t   testing.TB
	rdb *redis.Client
	s   *store.Store
	q   string
}

func newTakeRig(t *testing.T) *takeRig {
	rdb := redistest.Start(t).Client()
	return &takeRig{t: t, rdb: rdb, s: store.NewStore(rdb), q: "q1"}
}

// pend puts task tid at the tail of the queue (dequeued after those before).
func (r *takeRig) pend(tid string) {
	r.t.Helper()
	ctx := context.Background()
	k := "asynq:{" + r.q + "}:"
	if err := r.rdb.LPush(ctx, k+"pending", tid).Err(); err != nil {
		r.t.Fatal(err)
	}
	r.rdb.HSet(ctx, k+"t:"+tid, "msg", "msg of "+tid, "state", "pending")
	r.rdb.Expire(ctx, k+"t:"+tid, time.Hour)
}

// take runs the claiming dequeue for up to k tasks.
func (r *takeRig) take(k int, lease time.Duration) []store.Taken {
	r.t.Helper()
	k0 := "asynq:{" + r.q + "}:"
	dq := []any{"evalsha", "asynq's sha", 4, k0 + "pending", k0 + "paused", k0 + "active", k0 + "lease",
		time.Now().Add(30 * time.Second).Unix(), k0 + "t:"}
	_, eval := r.s.TakeArgs(dq, k, lease)
	v, err := r.rdb.Do(context.Background(), eval...).Result()
	if err != nil {
		r.t.Fatalf("take: %v", err)
	}
	ts, err := store.ParseTaken(v)
	if err != nil {
		r.t.Fatal(err)
	}
	return ts
}

func (r *takeRig) field(id, f string) string {
	r.t.Helper()
	v, err := r.rdb.HGet(context.Background(), store.JobKey(id), f).Result()
	if err != nil && err != redis.Nil {
		r.t.Fatal(err)
	}
	return v
}

// The claiming dequeue claims each task's job as Claim does (token, state,
// lease with its TTL, lease-index entry with its deadline), and answers
// each outcome as Claim would: ok, busy, superseded, done, missing; a
// generation N > 1 comes from the task id.
func TestTakeClaims(t *testing.T) {
	ctx := context.Background()
	r := newTakeRig(t)
	fresh, busy, gen2, superseded, done := newJob(t, r.s, ""), newJob(t, r.s, ""), newJob(t, r.s, ""), newJob(t, r.s, ""), newJob(t, r.s, "")
	if c, err := r.s.Claim(ctx, busy.ID, 1, time.Minute); err != nil || c.Outcome != store.ClaimOK {
		t.Fatalf("claim of busy: %v %v", c, err)
	}
	r.rdb.HSet(ctx, store.JobKey(gen2.ID), "gen", 2)
	r.rdb.HSet(ctx, store.JobKey(superseded.ID), "gen", 3)
	r.rdb.HSet(ctx, store.JobKey(done.ID), "state", "succeeded")
	missing := uuid.NewString()
	tids := []string{fresh.ID, busy.ID, store.TaskID(gen2.ID, 2), store.TaskID(superseded.ID, 2), done.ID, missing}
	for _, tid := range tids {
		r.pend(tid)
	}
	before := time.Now()
	ts := r.take(16, 5*time.Second)
	if len(ts) != len(tids) {
		t.Fatalf("took %d tasks, want %d", len(ts), len(tids))
	}
	want := []store.ClaimOutcome{store.ClaimOK, store.ClaimBusy, store.ClaimOK, store.ClaimSuperseded, store.ClaimDone, store.ClaimMissing}
	for i, tk := range ts {
		if tk.TaskID != tids[i] || tk.Msg != "msg of "+tids[i] {
			t.Fatalf("task %d: %s %q, want %s in queue order", i, tk.TaskID, tk.Msg, tids[i])
		}
		id, gen := store.JobOfTask(tk.TaskID)
		c, ok, err := tk.Claim(id, gen)
		if err != nil || !ok || c.Outcome != want[i] {
			t.Fatalf("task %s: claim %v ok=%v %v; want %s", tk.TaskID, c, ok, err, want[i])
		}
		if c.Outcome != store.ClaimOK {
			continue
		}
		if c.Token != 1 || c.Job == nil || c.Job.ID != id || string(c.Input) != `{"x":1}` || c.Options.Retention != time.Minute {
			t.Errorf("task %s: token %d, job %v, input %s, opts %+v", tk.TaskID, c.Token, c.Job, c.Input, c.Options)
		}
		if s := r.field(id, "state"); s != "running" {
			t.Errorf("job %s: state %q, want running", id, s)
		}
		if tok, _ := r.rdb.Get(ctx, store.LeaseKey(id)).Result(); tok != "1" {
			t.Errorf("job %s: lease holds %q, want token 1", id, tok)
		}
		if ttl := r.rdb.PTTL(ctx, store.LeaseKey(id)).Val(); ttl <= 0 || ttl > 5*time.Second {
			t.Errorf("job %s: lease TTL %v, want (0, 5s]", id, ttl)
		}
		score, err := r.rdb.ZScore(ctx, store.LeasesKey(id), id).Result()
		if err != nil || score < float64(before.Add(5*time.Second).UnixMilli()) || score > float64(time.Now().Add(5*time.Second).UnixMilli()) {
			t.Errorf("job %s: lease-index deadline %v (%v), want now + 5s", id, score, err)
		}
		if ttl := r.rdb.PTTL(ctx, store.LeasesKey(id)).Val(); ttl <= 0 {
			t.Errorf("job %s: lease index without a TTL (%v)", id, ttl)
		}
	}
	// Another job's task id than the payload's: no claim for the handler.
	if _, ok, _ := ts[0].Claim(busy.ID, 1); ok {
		t.Errorf("a claim for job %s from the task of %s", busy.ID, fresh.ID)
	}
}

// A claim given back (a buffered task handed back to its queue) leaves
// the job as before it: no lease, no lease-index entry, its state; so
// the next claim succeeds at once, with the next token. Only the claims
// the dequeue made are given back, and a claim given back cannot be used.
func TestUnclaim(t *testing.T) {
	ctx := context.Background()
	r := newTakeRig(t)
	a, b := newJob(t, r.s, ""), newJob(t, r.s, "")
	if c, err := r.s.Claim(ctx, b.ID, 1, time.Minute); err != nil || c.Outcome != store.ClaimOK {
		t.Fatalf("claim of b: %v %v", c, err)
	}
	r.pend(a.ID)
	r.pend(b.ID)
	ts := r.take(2, time.Minute)
	n, err := r.s.Unclaim(ctx, ts)
	if err != nil || n != 1 {
		t.Fatalf("Unclaim = %d, %v; want 1 (a's; b's claim was another's)", n, err)
	}
	if s := r.field(a.ID, "state"); s != "queued" {
		t.Errorf("a: state %q after the claim was given back, want queued", s)
	}
	if n := r.rdb.Exists(ctx, store.LeaseKey(a.ID)).Val(); n != 0 {
		t.Errorf("a: lease still there")
	}
	if err := r.rdb.ZScore(ctx, store.LeasesKey(a.ID), a.ID).Err(); err != redis.Nil {
		t.Errorf("a: lease-index entry still there (%v)", err)
	}
	if tok, _ := r.rdb.Get(ctx, store.LeaseKey(b.ID)).Result(); tok != "1" || r.field(b.ID, "state") != "running" {
		t.Errorf("b: lease %q, state %q; the other owner's claim was touched", tok, r.field(b.ID, "state"))
	}
	c, err := r.s.Claim(ctx, a.ID, 1, time.Minute)
	if err != nil || c.Outcome != store.ClaimOK || c.Token != 2 {
		t.Fatalf("claim of a after the give-back: %v %v, want ok with token 2", c, err)
	}
	// The given-back token 1 is fenced.
	j := *c.Job
	j.State = api.StateRunning
	if _, err := r.s.Save(ctx, &j, 1, store.SaveArgs{TTL: time.Minute}); !errors.Is(err, store.ErrFenced) {
		t.Errorf("a write with the given-back token: %v, want ErrFenced", err)
	}
	// A give-back after the new claim leaves that claim alone.
	if n, err := r.s.Unclaim(ctx, ts[:1]); err != nil || n != 0 {
		t.Errorf("a second give-back = %d, %v; want 0", n, err)
	}
	if tok, _ := r.rdb.Get(ctx, store.LeaseKey(a.ID)).Result(); tok != "2" || r.field(a.ID, "state") != "running" {
		t.Errorf("a: lease %q, state %q after a stale give-back; want 2, running", tok, r.field(a.ID, "state"))
	}
}

// A dequeue's claim whose lease lapses (its task was never handed to a
// handler: the worker was killed) is taken over as any lapsed claim: the
// lease index shows it lapsed, Handoff moves the job on, and the token of
// the dequeue's claim is fenced.
func TestTakenClaimTakeover(t *testing.T) {
	ctx := context.Background()
	r := newTakeRig(t)
	a := newJob(t, r.s, "")
	r.pend(a.ID)
	ts := r.take(1, 20*time.Millisecond)
	c, ok, err := ts[0].Claim(a.ID, 1)
	if err != nil || !ok || c.Outcome != store.ClaimOK {
		t.Fatalf("claim: %v %v %v", c, ok, err)
	}
	redistest.Eventually(t, 10*time.Second, "the lease lapsed and indexed as lapsed", func() bool {
		ids, err := r.s.LapsedLeases(ctx, 10)
		return err == nil && len(ids) == 1 && ids[0] == a.ID && r.rdb.Exists(ctx, store.LeaseKey(a.ID)).Val() == 0
	})
	h, err := r.s.Handoff(ctx, a.ID, 0)
	if err != nil || h.Outcome != store.HandoffOK || h.Gen != 2 {
		t.Fatalf("takeover: %+v %v, want a hand-off to generation 2", h, err)
	}
	j := *c.Job
	j.State = api.StateRunning
	if _, err := r.s.Save(ctx, &j, c.Token, store.SaveArgs{TTL: time.Minute}); !errors.Is(err, store.ErrFenced) {
		t.Errorf("a write with the dequeue's token after the takeover: %v, want ErrFenced", err)
	}
}
