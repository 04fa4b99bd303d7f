package worker

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/internal/store"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/staged-dev/staged/internal/redistest"
	"github.com/staged-dev/staged/tasks"
)

// harness is one test's Redis, store and asynq client, and the workers it
// runs in-process.
type harness struct {
	t      *testing.T
	srv    *redistest.Server
	rdb    *redis.Client
	store  *store.Store
	client *asynq.Client
	reg    *tasks.Registry
	log    *slog.Logger
	// finalOnly leaves the stores as in production: a finished job keeps
	// only its final event. By default the tests keep whole streams, to
	// count a job's writes.
	finalOnly bool
}

func newHarness(t *testing.T, ps ...*tasks.Pipeline) *harness {
	t.Helper()
	srv := redistest.Start(t)
	rdb := srv.Client()
	h := &harness{t: t, srv: srv, rdb: rdb, store: store.NewStore(rdb), client: asynq.NewClientFromRedisClient(rdb),
		reg: tasks.NewRegistry(ps...)}
	h.log = slog.New(slog.NewTextHandler(newTestWriter(t), &slog.HandlerOptions{Level: slog.LevelDebug}))
	h.store.KeepAllEvents = true
	return h
}

// with returns h for use in subtest t.
func (h *harness) with(t *testing.T) *harness {
	c := *h
	c.t = t
	return &c
}

// config is a worker configuration with short periods, for tests.
func (h *harness) config() Config {
	return Config{
		RedisConnOpt:   asynq.RedisClientOpt{Addr: h.srv.Addr},
		Redis:          h.rdb,
		Registry:       h.reg,
		Concurrency:    4,
		Lease:          time.Second,
		ReconcileEvery: 100 * time.Millisecond,
		ShutdownGrace:  2 * time.Second,
		FlushInterval:  50 * time.Millisecond,
		RetryBase:      50 * time.Millisecond,
		RetryMax:       200 * time.Millisecond,
		Logger:         h.log,
	}
}

// newWorker returns a worker on cfg, not started.
func (h *harness) newWorker(cfg Config) *Worker {
	h.t.Helper()
	w, err := New(cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	w.store.KeepAllEvents = !h.finalOnly
	return w
}

// run starts w and returns a function that stops it (once) and waits for
// Run to return; the test's cleanup calls it too.
func (h *harness) run(w *Worker) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					h.t.Errorf("Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				h.t.Errorf("Run did not return 30s after its context ended")
			}
		})
	}
	h.t.Cleanup(stop)
	return stop
}

// start runs a worker on cfg until the test ends.
func (h *harness) start(cfg Config) *Worker {
	w := h.newWorker(cfg)
	h.run(w)
	return w
}

// submit creates and enqueues a job the way the API does.
func (h *harness) submit(typ, input string, opts api.Options) string {
	h.t.Helper()
	ctx := context.Background()
	p := h.reg.Get(typ)
	j := store.NewJob(p, opts.Queue, time.Now().UTC())
	if _, err := h.store.Create(ctx, j, "", json.RawMessage(input), opts); err != nil {
		h.t.Fatal(err)
	}
	if err := store.Enqueue(ctx, h.client, j, 1, maxRetries(opts, p), jobTimeout(opts, p), opts.Retention); err != nil {
		h.t.Fatal(err)
	}
	return j.ID
}

func (h *harness) job(id string) *api.Job {
	h.t.Helper()
	j, err := h.store.Get(context.Background(), id, "")
	if err != nil {
		h.t.Fatal(err)
	}
	return j
}

// wait waits until job id is in state s and returns its record.
func (h *harness) wait(id string, s api.State, limit time.Duration) *api.Job {
	h.t.Helper()
	var j *api.Job
	redistest.Eventually(h.t, limit, "job "+id+" "+string(s), func() bool {
		j = h.job(id)
		return j.State == s
	})
	return j
}

// events returns every record job id was written with, oldest first.
func (h *harness) events(id string) []*api.Job {
	h.t.Helper()
	evs, err := h.store.Events(context.Background(), id, "", 10000)
	if err != nil {
		h.t.Fatal(err)
	}
	js := make([]*api.Job, len(evs))
	for i, e := range evs {
		if js[i], err = api.DecodeJob(e.Data); err != nil {
			h.t.Fatal(err)
		}
	}
	return js
}

// taskState is the asynq state of the task with the given id.
func (h *harness) taskState(taskID string) asynq.TaskState {
	h.t.Helper()
	insp := asynq.NewInspectorFromRedisClient(h.rdb)
	j := h.job(jobIDsIn(taskID)[0])
	info, err := insp.GetTaskInfo(store.TaskQueue(j), taskID)
	if err != nil {
		return 0
	}
	return info.State
}

func attempts(j *api.Job) []int {
	var n []int
	for _, s := range j.Stages {
		n = append(n, s.Attempts)
	}
	return n
}

func stageStates(j *api.Job) string {
	var s []string
	for _, st := range j.Stages {
		s = append(s, string(st.State))
	}
	return strings.Join(s, ",")
}

// testWriter sends log output to t.Log until the test ends.
type testWriter struct {
	mu   *sync.Mutex
	t    *testing.T
	done *bool
}

func newTestWriter(t *testing.T) testWriter {
	w := testWriter{mu: &sync.Mutex{}, t: t, done: new(bool)}
	t.Cleanup(func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		*w.done = true
	})
	return w
}

func (w testWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !*w.done {
		w.t.Log(strings.TrimSpace(string(b)))
	}
	return len(b), nil
}

// stageFunc adapts a function of a string input to a StageFunc.
func stageFunc(f func(ctx context.Context, in string, p tasks.Progress) (any, error)) tasks.StageFunc {
	return func(ctx context.Context, in json.RawMessage, p tasks.Progress) (any, error) {
		var s string
		if err := json.Unmarshal(in, &s); err != nil {
			s = string(in)
		}
		return f(ctx, s, p)
	}
}
