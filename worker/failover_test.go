package worker

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/internal/redistest"
	"github.com/staged-dev/staged/internal/store"
	"github.com/staged-dev/staged/tasks"
)

// A Sentinel failover can lose a finished job's writes (its claim, its
// final write) but keep asynq's end of its task: the worker's store client
// and asynq's client follow the failover at different moments, so a task
// that the new master still had pending was dequeued there, its claim
// read the old master (the job done) and asynq completed the task on the
// new master. The job is then queued, accepted with WAIT, with neither a
// lease-index entry (the API's create enqueues the task instead) nor a
// task that can run it. After the new master's scan it runs again, within
// about OrphanAfter, instead of staying queued for ever.
func TestJobQueuedWithItsTaskEnded(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.Options{AOF: true}) // a restart keeps what was written
	if srv.Embedded {
		t.Skip("needs a redis-server to restart")
	}
	rdb := srv.Client()
	h := &harness{t: t, srv: srv, rdb: rdb, store: store.NewStore(rdb), client: asynq.NewClientFromRedisClient(rdb),
		reg: tasks.NewRegistry(chainPipeline(nil, nil))}
	h.log = slog.New(slog.NewTextHandler(newTestWriter(t), &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx := context.Background()

	// Submitted as the API does: the create writes the job's first task.
	j := store.NewJob(h.reg.Get("chain"), "", time.Now().UTC())
	if _, enqueued, err := h.store.CreateQueued(ctx, j, "", json.RawMessage(`"x"`), api.Options{}); err != nil || !enqueued {
		t.Fatalf("CreateQueued: enqueued %v, %v", enqueued, err)
	}
	id := j.ID
	before, err := rdb.Dump(ctx, store.JobKey(id)).Result()
	if err != nil {
		t.Fatal(err)
	}
	ttl := rdb.PTTL(ctx, store.JobKey(id)).Val()

	stop := h.run(h.newWorker(h.config()))
	h.wait(id, api.StateSucceeded, 30*time.Second)
	stop()

	// The new master: the job's hash as before its claim, no lease-index
	// entry, and its task completed.
	if err := rdb.RestoreReplace(ctx, store.JobKey(id), ttl, before).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.ZRem(ctx, store.LeasesKey(id), id).Err(); err != nil {
		t.Fatal(err)
	}
	if s := h.taskState(store.TaskID(id, 1)); s != asynq.TaskStateCompleted {
		t.Fatalf("task state %v, want completed", s)
	}
	srv.Restart() // a new master identity
	if j := h.job(id); j.State != api.StateQueued {
		t.Fatalf("state = %s, want queued", j.State)
	}

	w := h.newWorker(h.config())
	w.store.OrphanAfter = 200 * time.Millisecond
	h.run(w)
	j = h.wait(id, api.StateSucceeded, 30*time.Second)
	if string(j.Result) != `"xabc"` {
		t.Fatalf("result %s, attempts %v", j.Result, attempts(j))
	}
}
