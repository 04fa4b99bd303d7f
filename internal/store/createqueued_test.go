package store_test

import (
	"context"
	"encoding/json"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/internal/redistest"
	"github.com/staged-dev/staged/internal/store"
	"github.com/staged-dev/staged/tasks"
)

// On one node, CreateQueued writes the job's first task in its create
// script, and the task is the one store.Enqueue has asynq's client write:
// asynq's Inspector reads the same task (type, payload, queue, retries
// with the spare, timeout, deadline, retention, headers, state), and a
// real asynq server hands its handler the same task with the same
// deadline, retries and queue.
func TestCreateQueuedTaskAsAsynqWrites(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Client()
	s := store.NewStore(rdb)
	c := asynq.NewClientFromRedisClient(rdb)
	insp := asynq.NewInspectorFromRedisClient(rdb)
	opts := []api.Options{
		{},
		{MaxRetries: 3, Timeout: 90*time.Second + 500*time.Millisecond, Retention: 2 * time.Hour, Queue: "other"},
		{MaxRetries: 25, Timeout: 720 * time.Hour},
	}
	type pair struct{ folded, asynq *api.Job }
	var pairs []pair
	queues := map[string]int{}
	for i, o := range opts {
		folded := store.NewJob(testPipeline(), o.Queue, time.Now().UTC())
		_, enqueued, err := s.CreateQueued(ctx, folded, "acme", json.RawMessage(`{}`), o)
		if err != nil || !enqueued {
			t.Fatalf("opts %d: CreateQueued: enqueued %v, %v", i, enqueued, err)
		}
		viaAsynq := store.NewJob(testPipeline(), o.Queue, time.Now().UTC())
		if _, err := s.Create(ctx, viaAsynq, "acme", json.RawMessage(`{}`), o); err != nil {
			t.Fatal(err)
		}
		if err := store.Enqueue(ctx, c, viaAsynq, 1, o.MaxRetries, o.Timeout, o.Retention); err != nil {
			t.Fatal(err)
		}
		pairs = append(pairs, pair{folded, viaAsynq})
		queues[store.TaskQueue(folded)] = 1

		a := taskInfo(t, insp, folded)
		b := taskInfo(t, insp, viaAsynq)
		if a.ID != store.TaskID(folded.ID, 1) {
			t.Errorf("opts %d: task id %q, want %q", i, a.ID, store.TaskID(folded.ID, 1))
		}
		if p, err := store.DecodePayload(a.Payload); err != nil || p.ID != folded.ID || p.Gen != 1 {
			t.Errorf("opts %d: payload %s decodes to %+v, %v", i, a.Payload, p, err)
		}
		if got, want := string(a.Payload), strings.ReplaceAll(string(b.Payload), viaAsynq.ID, folded.ID); got != want {
			t.Errorf("opts %d: payload %s, asynq's %s", i, got, want)
		}
		if a.Type != b.Type || a.Queue != b.Queue || a.MaxRetry != b.MaxRetry || a.Retried != b.Retried ||
			a.Timeout != b.Timeout || !a.Deadline.Equal(b.Deadline) || a.Retention != b.Retention ||
			a.State != b.State || a.LastErr != b.LastErr || !maps.Equal(a.Headers, b.Headers) || a.Group != b.Group {
			t.Errorf("opts %d: the folded enqueue's task differs from asynq's:\n got %+v\nwant %+v", i, a, b)
		}
		if a.State != asynq.TaskStatePending || store.TaskRetries(a.Headers, a.MaxRetry) != max(o.MaxRetries, 0) || a.MaxRetry != max(o.MaxRetries, 0)+1 {
			t.Errorf("opts %d: state %v, retries %d, MaxRetry %d", i, a.State, store.TaskRetries(a.Headers, a.MaxRetry), a.MaxRetry)
		}
	}
	// asynq:queues names every queue, as asynq's client leaves it.
	if got := rdb.SMembers(ctx, "asynq:queues").Val(); len(got) != len(queues) {
		t.Errorf("asynq:queues = %v, want the %d queues %v", got, len(queues), queues)
	}

	// A real asynq server runs both tasks of each pair alike.
	type seen struct {
		typ, payload, queue string
		headers             map[string]string
		maxRetry, retried   int
		deadline            time.Duration // from the start of the handler
	}
	got := make(chan seen, 2*len(pairs))
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{Concurrency: 2, Queues: queues, LogLevel: asynq.FatalLevel})
	mux := asynq.HandlerFunc(func(ctx context.Context, task *asynq.Task) error {
		q, _ := asynq.GetQueueName(ctx)
		mr, _ := asynq.GetMaxRetry(ctx)
		rc, _ := asynq.GetRetryCount(ctx)
		d, _ := ctx.Deadline()
		got <- seen{task.Type(), string(task.Payload()), q, task.Headers(), mr, rc, time.Until(d)}
		return nil
	})
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	byPayload := map[string]seen{}
	timeout := time.After(20 * time.Second)
	for range 2 * len(pairs) {
		select {
		case v := <-got:
			byPayload[v.payload] = v
		case <-timeout:
			t.Fatalf("the asynq server ran %d of the %d tasks", len(byPayload), 2*len(pairs))
		}
	}
	for i, p := range pairs {
		a, ok := byPayload[string(payloadOf(p.folded))]
		b, ok2 := byPayload[string(payloadOf(p.asynq))]
		if !ok || !ok2 {
			t.Fatalf("pair %d: not both run: %v %v", i, ok, ok2)
		}
		if a.typ != b.typ || a.queue != b.queue || !maps.Equal(a.headers, b.headers) || a.maxRetry != b.maxRetry || a.retried != b.retried {
			t.Errorf("pair %d: the asynq server saw\n%+v\nfor the folded task and\n%+v\nfor asynq's", i, a, b)
		}
		// The same deadline (the timeout from its start), to the second.
		if diff := a.deadline - b.deadline; diff > 2*time.Second || diff < -2*time.Second {
			t.Errorf("pair %d: deadline in %v, asynq's task's in %v", i, a.deadline, b.deadline)
		}
	}
}

func taskInfo(t *testing.T, insp *asynq.Inspector, j *api.Job) *asynq.TaskInfo {
	t.Helper()
	info, err := insp.GetTaskInfo(store.TaskQueue(j), store.TaskID(j.ID, 1))
	if err != nil {
		t.Fatalf("task of job %s: %v", j.ID, err)
	}
	return info
}

func payloadOf(j *api.Job) []byte {
	b, _ := json.Marshal(store.Payload{ID: j.ID, Gen: 1})
	return b
}

// A refused submit (the tenant at its limit) enqueues no task either: the
// record and the task are written together or not at all.
func TestCreateQueuedRefusedWritesNoTask(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Client()
	s := store.NewStore(rdb)
	s.TenantMaxLive = 1
	insp := asynq.NewInspectorFromRedisClient(rdb)
	first := store.NewJob(testPipeline(), "", time.Now().UTC())
	if _, enqueued, err := s.CreateQueued(ctx, first, "acme", json.RawMessage(`{}`), api.Options{}); err != nil || !enqueued {
		t.Fatalf("first: enqueued %v, %v", enqueued, err)
	}
	second := store.NewJob(testPipeline(), "", time.Now().UTC())
	_, enqueued, err := s.CreateQueued(ctx, second, "acme", json.RawMessage(`{}`), api.Options{})
	if tasks.ErrorCode(err) != tasks.ERATELIMITED || enqueued {
		t.Fatalf("over the limit: enqueued %v, %v; want %s", enqueued, err, tasks.ERATELIMITED)
	}
	if _, err := insp.GetTaskInfo(store.TaskQueue(second), store.TaskID(second.ID, 1)); err == nil {
		t.Errorf("a refused job's task was enqueued")
	}
	if n := rdb.LLen(ctx, "asynq:{"+store.TaskQueue(first)+"}:pending").Val(); n != 1 {
		t.Errorf("%d tasks pending, want the first job's only", n)
	}
}

// On a Cluster, the job's keys and asynq's are in different slots:
// CreateQueued writes the record only, says so, and the task is asynq's
// own enqueue.
func TestCreateQueuedCluster(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.StartCluster(t, 3).Client(t)
	s := store.NewStore(rdb)
	s.TenantMaxLive = 10
	j := store.NewJob(testPipeline(), "", time.Now().UTC())
	if _, enqueued, err := s.CreateQueued(ctx, j, "acme", json.RawMessage(`{}`), api.Options{}); err != nil || enqueued {
		t.Fatalf("CreateQueued on a Cluster: enqueued %v, %v; want false, nil", enqueued, err)
	}
	if n := rdb.Exists(ctx, store.JobKey(j.ID)).Val(); n != 1 {
		t.Fatalf("the record was not written")
	}
	c := asynq.NewClientFromRedisClient(rdb)
	if err := store.Enqueue(ctx, c, j, 1, 0, time.Minute, 0); err != nil {
		t.Fatal(err)
	}
	insp := asynq.NewInspectorFromRedisClient(rdb)
	if _, err := insp.GetTaskInfo(store.TaskQueue(j), store.TaskID(j.ID, 1)); err != nil {
		t.Errorf("task: %v", err)
	}
}
