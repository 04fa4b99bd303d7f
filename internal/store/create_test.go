package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/internal/redistest"
	"github.com/staged-dev/staged/internal/store"
	"github.com/staged-dev/staged/tasks"
)

// Create admits the job among its tenant's live jobs and writes the
// record, the listing index and the lease index, each key with a TTL; at
// the tenant's limit it writes nothing and answers ERATELIMITED.
func TestCreateAdmits(t *testing.T) {
	ctx := context.Background()
	r := redistest.Start(t)
	rdb := r.Client()
	s := store.NewStore(rdb)
	s.TenantMaxLive = 1
	first := newJob(t, s, "acme")
	for _, k := range []string{store.JobKey(first.ID), store.TenantJobsKey("acme"), store.LeasesKey(first.ID), store.LiveKey("acme")} {
		if ttl := rdb.PTTL(ctx, k).Val(); ttl <= 0 {
			t.Errorf("%s: TTL %v", k, ttl)
		}
	}
	if live := rdb.ZRange(ctx, store.LiveKey("acme"), 0, -1).Val(); len(live) != 1 || live[0] != first.ID {
		t.Errorf("live set %v, want [%s]", live, first.ID)
	}
	if _, err := rdb.ZScore(ctx, store.LeasesKey(first.ID), first.ID).Result(); err != nil {
		t.Errorf("not in the lease index: %v", err)
	}
	if f, _ := rdb.HGet(ctx, store.JobKey(first.ID), "live").Result(); f != "1" {
		t.Errorf("live field %q, want 1", f)
	}

	second := store.NewJob(testPipeline(), "", time.Now().UTC())
	_, err := s.Create(ctx, second, "acme", json.RawMessage(`{}`), api.Options{})
	if tasks.ErrorCode(err) != tasks.ERATELIMITED {
		t.Fatalf("over the limit: %v, want %s", err, tasks.ERATELIMITED)
	}
	if n := rdb.Exists(ctx, store.JobKey(second.ID)).Val(); n != 0 {
		t.Errorf("a refused job was written")
	}
	if n := rdb.ZCard(ctx, store.TenantJobsKey("acme")).Val(); n != 1 {
		t.Errorf("listing index has %d entries, want 1", n)
	}
	if _, err := rdb.ZScore(ctx, store.LeasesKey(second.ID), second.ID).Result(); err == nil {
		t.Errorf("a refused job is in the lease index")
	}
	// Another tenant is not affected.
	newJob(t, s, "globex")
}

// A job's final write takes it off its tenant's live jobs: in the same
// round trip when the claim saw it counted (SaveArgs.Live), else with a
// round trip of its own; either way the tenant's slot is free again. The
// commands of SaveArgs.Also go in the same round trip.
func TestFinalSaveUncounts(t *testing.T) {
	ctx := context.Background()
	r := redistest.Start(t)
	rdb := r.Client()
	s := store.NewStore(rdb)
	s.TenantMaxLive = 1
	for _, live := range []bool{true, false} {
		j := newJob(t, s, "acme")
		c, err := s.Claim(ctx, j.ID, 1, time.Minute)
		if err != nil || c.Outcome != store.ClaimOK {
			t.Fatalf("claim: %v %v", c, err)
		}
		if !c.Live || c.Tenant != "acme" {
			t.Fatalf("claim: live %v, tenant %q; want true, acme", c.Live, c.Tenant)
		}
		j.State = api.StateSucceeded
		task := "asynq:{q}:t:" + j.ID
		rdb.HSet(ctx, task, "msg", "m")
		args := store.SaveArgs{TTL: time.Minute, Task: &store.TaskEnd{Queue: "q", ID: j.ID, Result: []byte("r")}}
		if live {
			args.Live, args.Tenant = c.Live, c.Tenant
		}
		hdels := cmdCalls(t, rdb, "hdel")
		if _, err := s.Save(ctx, j, c.Token, args); err != nil {
			t.Fatal(err)
		}
		if n := rdb.ZCard(ctx, store.LiveKey("acme")).Val(); n != 0 {
			t.Errorf("live %v: %d live jobs after the final write, want 0", live, n)
		}
		if r := rdb.HGet(ctx, task, "result").Val(); r != "r" {
			t.Errorf("live %v: task result %q, want r", live, r)
		}
		// The finished hash keeps only what is read: not live, nor the
		// lease-index shard (ls), nor ns, in one HDEL.
		for _, f := range []string{"live", "ls", "ns"} {
			if rdb.HExists(ctx, store.JobKey(j.ID), f).Val() {
				t.Errorf("live %v: the field %s stays", live, f)
			}
		}
		if n := cmdCalls(t, rdb, "hdel") - hdels; n != 1 {
			t.Errorf("live %v: the final write ran HDEL %d times, want 1", live, n)
		}
		// Sent again (its reply lost), the write leaves the count alone.
		if _, err := s.Save(ctx, j, c.Token, args); err != nil {
			t.Fatal(err)
		}
		if n := rdb.ZCard(ctx, store.LiveKey("acme")).Val(); n != 0 {
			t.Errorf("live %v: %d live jobs after the write sent again, want 0", live, n)
		}
	}
	// The slot is free: another job is admitted.
	newJob(t, s, "acme")
}

// The live set's lapsed entries (jobs whose finish was never recorded)
// count only until the tenant reaches its limit: they are dropped then, and
// the submit is judged on the others, on one node and on the Admit path
// of a Cluster alike.
func TestAdmitDropsLapsedAtLimit(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Client()
	for _, split := range []bool{false, true} {
		rdb.FlushAll(ctx)
		s := store.NewStore(rdb)
		s.TenantMaxLive = 2
		live := store.LiveKey("acme")
		lapsed := time.Now().Add(-time.Hour).UnixMilli()
		rdb.ZAdd(ctx, live, redis.Z{Score: float64(lapsed), Member: "gone-1"})
		rdb.PExpire(ctx, live, time.Hour)
		admit := func() *api.Job {
			t.Helper()
			j := store.NewJob(testPipeline(), "", time.Now().UTC())
			var err error
			if split {
				err = s.Admit(ctx, "acme", j.ID)
			} else {
				_, err = s.Create(ctx, j, "acme", json.RawMessage(`{}`), api.Options{})
			}
			if err != nil {
				t.Fatalf("split %v: %v", split, err)
			}
			return j
		}
		// Below the limit the lapsed entry is left alone: it cannot
		// change the answer.
		a := admit()
		if n := rdb.ZCard(ctx, live).Val(); n != 2 {
			t.Fatalf("split %v: %d entries, want the lapsed one and %s", split, n, a.ID)
		}
		// At the limit it goes, and the job is admitted.
		b := admit()
		got := rdb.ZRange(ctx, live, 0, -1).Val()
		if slices.Contains(got, "gone-1") || len(got) != 2 {
			t.Fatalf("split %v: live set %v, want %s and %s", split, got, a.ID, b.ID)
		}
		// At the limit with nothing lapsed: refused, with the count.
		j := store.NewJob(testPipeline(), "", time.Now().UTC())
		_, err := s.Create(ctx, j, "acme", json.RawMessage(`{}`), api.Options{})
		if tasks.ErrorCode(err) != tasks.ERATELIMITED || !strings.Contains(err.Error(), "has 2 live jobs") {
			t.Fatalf("split %v: over the limit: %v", split, err)
		}
		if ttl := rdb.PTTL(ctx, live).Val(); ttl <= time.Hour {
			t.Fatalf("split %v: live set TTL %v, want the live TTL", split, ttl)
		}
	}
}

// A job that CreateQueued enqueued in its own script has no orphan entry
// in the lease index (its task cannot be missing; the claim indexes it);
// one whose enqueue is left to the caller has one.
func TestCreateQueuedOrphanEntry(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Client()
	s := store.NewStore(rdb)
	for _, split := range []bool{false, true} {
		s.SplitEnqueue = split
		j := store.NewJob(testPipeline(), "", time.Now().UTC())
		_, enqueued, err := s.CreateQueued(ctx, j, "acme", json.RawMessage(`{}`), api.Options{})
		if err != nil || enqueued == split {
			t.Fatalf("split %v: enqueued %v, %v", split, enqueued, err)
		}
		_, err = rdb.ZScore(ctx, store.LeasesKey(j.ID), j.ID).Result()
		if indexed := err == nil; indexed != split {
			t.Errorf("split %v: in the lease index: %v (%v)", split, indexed, err)
		}
		c, err := s.Claim(ctx, j.ID, 1, time.Minute)
		if err != nil || c.Outcome != store.ClaimOK {
			t.Fatalf("split %v: claim %v %+v", split, err, c)
		}
		if err := rdb.ZScore(ctx, store.LeasesKey(j.ID), j.ID).Err(); err != nil {
			t.Errorf("split %v: not in the lease index after its claim: %v", split, err)
		}
	}
}

// A create refreshes the TTL of its tenant's live set when it creates the
// set, and at the tenant's upkeep (once a minute per Store), which also
// drops the listing index's entries past IndexHorizon; the creates between
// do neither. Every key keeps a TTL.
func TestCreateUpkeep(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Client()
	s := store.NewStore(rdb)
	s.TenantMaxLive = 10
	now := time.Now().UTC()
	s.Now = func() time.Time { return now }
	create := func() {
		t.Helper()
		j := store.NewJob(testPipeline(), "", now)
		if _, _, err := s.CreateQueued(ctx, j, "acme", json.RawMessage(`{}`), api.Options{}); err != nil {
			t.Fatal(err)
		}
	}
	live, index := store.LiveKey("acme"), store.TenantJobsKey("acme")
	old := fmt.Sprintf("%013d:old", now.Add(-store.IndexHorizon-time.Hour).UnixMilli())
	create() // the first: upkeep due
	if ttl := rdb.PTTL(ctx, live).Val(); ttl <= store.LiveTTLDefault {
		t.Fatalf("live set TTL %v, want the live TTL and the upkeep's minute", ttl)
	}
	rdb.ZAdd(ctx, index, redis.Z{Member: old})
	rdb.PExpire(ctx, live, time.Hour)
	now = now.Add(30 * time.Second)
	create() // not due: neither trims nor refreshes
	if ttl := rdb.PTTL(ctx, live).Val(); ttl > time.Hour {
		t.Fatalf("live set TTL %v refreshed before the upkeep was due", ttl)
	}
	if rdb.ZScore(ctx, index, old).Err() != nil {
		t.Fatalf("index trimmed before the upkeep was due")
	}
	// A live set that is gone (its last job finished) gets its TTL back
	// at once from the create that makes it again.
	rdb.Del(ctx, live)
	create()
	if ttl := rdb.PTTL(ctx, live).Val(); ttl <= store.LiveTTLDefault {
		t.Fatalf("new live set TTL %v", ttl)
	}
	rdb.PExpire(ctx, live, time.Hour)
	now = now.Add(31 * time.Second)
	create() // due
	if ttl := rdb.PTTL(ctx, live).Val(); ttl <= store.LiveTTLDefault {
		t.Fatalf("live set TTL %v after the upkeep, want it refreshed", ttl)
	}
	if err := rdb.ZScore(ctx, index, old).Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("the entry past the horizon is still indexed after the upkeep (%v)", err)
	}
	assertIndexTTLs(t, rdb)
}

// A rerun of a finished job is not admitted among its tenant's live jobs:
// its claim does not take it for a counted one (the final write dropped
// the field live).
func TestRerunIsNotLive(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Client()
	s := store.NewStore(rdb)
	s.TenantMaxLive = 1
	j := newJob(t, s, "acme")
	c, err := s.Claim(ctx, j.ID, 1, time.Minute)
	if err != nil || c.Outcome != store.ClaimOK || !c.Live {
		t.Fatalf("claim: %v %v", c, err)
	}
	j.State = api.StateFailed
	if _, err := s.Save(ctx, j, c.Token, store.SaveArgs{TTL: time.Minute, Live: true, Tenant: "acme"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Rerun(ctx, j.ID, ""); err != nil {
		t.Fatal(err)
	}
	c, err = s.Claim(ctx, j.ID, 2, time.Minute)
	if err != nil || c.Outcome != store.ClaimOK {
		t.Fatalf("claim of the rerun: %v %v", c, err)
	}
	if c.Live {
		t.Error("the rerun's claim takes it for a job counted among its tenant's live jobs")
	}
}
