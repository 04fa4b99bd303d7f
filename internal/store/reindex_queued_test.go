package store_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/internal/redistest"
	"github.com/staged-dev/staged/internal/store"
)

// The new master's scan gives a lease-index entry to the queued and
// retrying jobs whose task of their generation cannot run them (ended,
// archived, missing, or taken by a worker: active), and to no job whose
// task waits on its queue (pending, scheduled, retry): those are run by
// it, and a backlog of them costs the scan one read each, not an entry.
// With every queued job indexed (the scan as it was), the pending ones
// are in Waiting and the test fails.
func TestReindexQueuedByTask(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Client()
	s := store.NewStore(rdb)
	c := asynq.NewClientFromRedisClient(rdb)
	insp := asynq.NewInspectorFromRedisClient(rdb)

	queued := func(queue string) *api.Job {
		t.Helper()
		j := store.NewJob(testPipeline(), queue, time.Now().UTC())
		if _, enqueued, err := s.CreateQueued(ctx, j, "acme", json.RawMessage(`{}`), api.Options{Queue: queue}); err != nil || !enqueued {
			t.Fatalf("CreateQueued: enqueued %v, %v", enqueued, err)
		}
		return j
	}
	pending := []*api.Job{queued(""), queued("other")}

	archived := queued("")
	if err := insp.ArchiveTask(store.TaskQueue(archived), store.TaskID(archived.ID, 1)); err != nil {
		t.Fatal(err)
	}
	completed := queued("other")
	moveTask(t, rdb, store.TaskQueue(completed), store.TaskID(completed.ID, 1), "completed")
	active := queued("")
	moveTask(t, rdb, store.TaskQueue(active), store.TaskID(active.ID, 1), "active")
	deleted := queued("")
	if err := insp.DeleteTask(store.TaskQueue(deleted), store.TaskID(deleted.ID, 1)); err != nil {
		t.Fatal(err)
	}
	// Retrying, its next generation's task scheduled; and one whose
	// record says generation 2 while only generation 1's task exists.
	retrying := queued("")
	rdb.HSet(ctx, store.JobKey(retrying.ID), "state", "retrying", "gen", "2")
	if _, err := c.Enqueue(asynq.NewTask("t", []byte(`{}`)), asynq.TaskID(store.TaskID(retrying.ID, 2)),
		asynq.Queue(store.TaskQueue(retrying)), asynq.ProcessIn(time.Hour)); err != nil {
		t.Fatal(err)
	}
	staleGen := queued("")
	rdb.HSet(ctx, store.JobKey(staleGen.ID), "state", "retrying", "gen", "2")
	// Created without its task (a Cluster's create, before its enqueue):
	// it has its orphan entry already, and keeps it.
	plain := store.NewJob(testPipeline(), "", time.Now().UTC())
	if _, err := s.Create(ctx, plain, "acme", json.RawMessage(`{}`), api.Options{}); err != nil {
		t.Fatal(err)
	}

	before := time.Now()
	st, err := s.ReindexRunning(ctx, 3, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{archived.ID, completed.ID, active.ID, deleted.ID, staleGen.ID}
	slices.Sort(want)
	slices.Sort(st.Waiting)
	if st.Scanned != 9 || !slices.Equal(st.Waiting, want) || len(st.Reindexed) != 0 {
		t.Fatalf("scanned %d, waiting %v, reindexed %v; want 9, %v, none", st.Scanned, st.Waiting, st.Reindexed, want)
	}
	for _, id := range want {
		d, err := rdb.ZScore(ctx, store.LeasesKey(id), id).Result()
		if least := before.Add(store.OrphanAfterDefault).UnixMilli(); err != nil || d < float64(least) {
			t.Errorf("queued job %s not in the lease index with a new job's deadline (≥ %d): %v, %v", id, least, d, err)
		}
	}
	for _, j := range append(pending, retrying) {
		if err := rdb.ZScore(ctx, store.LeasesKey(j.ID), j.ID).Err(); err == nil {
			t.Errorf("job %s, whose task waits on its queue, was indexed", j.ID)
		}
	}
}

// moveTask moves a pending task to state as asynq's server does: to the
// active list when it dequeues it, to the completed set when its handler
// returned nil (kept for the task's retention).
func moveTask(t *testing.T, rdb *redis.Client, queue, id, state string) {
	t.Helper()
	ctx := context.Background()
	key := "asynq:{" + queue + "}:t:" + id
	_, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.LRem(ctx, "asynq:{"+queue+"}:pending", 0, id)
		switch state {
		case "active":
			p.LPush(ctx, "asynq:{"+queue+"}:active", id)
		case "completed":
			p.ZAdd(ctx, "asynq:{"+queue+"}:completed", redis.Z{Score: float64(time.Now().Add(time.Hour).Unix()), Member: id})
			p.HSet(ctx, key, "completed_at", time.Now().Unix())
		}
		p.HSet(ctx, key, "state", state)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
