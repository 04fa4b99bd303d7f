package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/internal/store"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/staged-dev/staged/internal/redistest"
	"github.com/staged-dev/staged/tasks"
)

// testInput is the input of the test pipeline "double".
type testInput struct {
	N     int    `json:"n" doc:"a number from 1 to 100" jsonschema:"minimum=1,maximum=100"`
	Label string `json:"label"`
}

// shapedInput is the input of the test pipeline "shaped", whose stage list
// depends on its input.
type shapedInput struct {
	Stages int `json:"stages" jsonschema:"minimum=1"`
}

func testRegistry() *tasks.Registry {
	run := func(ctx context.Context, in json.RawMessage, p tasks.Progress) (any, error) { return in, nil }
	shaped := &tasks.Pipeline{
		Name:   "shaped",
		Stages: []tasks.Stage{{Name: "s1", Run: run}},
		Input:  tasks.InputOf(shapedInput{Stages: 1}, nil),
		Build: func(in json.RawMessage) ([]tasks.Stage, error) {
			var si shapedInput
			if err := json.Unmarshal(in, &si); err != nil {
				return nil, err
			}
			st := make([]tasks.Stage, max(si.Stages, 0))
			for i := range st {
				st[i] = tasks.Stage{Name: fmt.Sprintf("s%d", i+1), Run: run}
			}
			return st, nil
		},
	}
	return tasks.NewRegistry(shaped, &tasks.Pipeline{
		Name:        "double",
		Description: "two stages for tests",
		Stages:      []tasks.Stage{{Name: "first", Run: run, Weight: 2}, {Name: "second", Run: run, Timeout: time.Minute}},
		Input: tasks.InputOf(testInput{N: 1, Label: "x"}, func(in *testInput) error {
			if in.N < 1 || in.N > 100 {
				return tasks.FieldError("input.n", "input.n must be from 1 to 100, not %d", in.N)
			}
			return nil
		}),
		MaxRetries: 2,
	})
}

// commandCounter counts the commands the server's Redis client sends.
type commandCounter struct{ n atomic.Int64 }

func (h *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}
func (h *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// env is one test's Redis, server and HTTP endpoint.
type env struct {
	t        *testing.T
	redis    *redistest.Server
	rdb      *redis.Client // the test's own client (not counted)
	store    *store.Store
	srv      *Server
	url      string
	commands *commandCounter
	logs     *syncBuffer
}

func newEnv(t *testing.T, configure ...func(*Config)) *env {
	t.Helper()
	return newEnvOn(t, redistest.Start(t), configure...)
}

// newEnvOn is newEnv on the Redis r.
func newEnvOn(t *testing.T, r *redistest.Server, configure ...func(*Config)) *env {
	t.Helper()
	e := &env{t: t, redis: r, rdb: r.Client(), commands: &commandCounter{}, logs: &syncBuffer{}}
	e.store = store.NewStore(e.rdb)
	srvRDB := redis.NewClient(&redis.Options{Addr: r.Addr})
	srvRDB.AddHook(e.commands)
	t.Cleanup(func() { srvRDB.Close() })
	cfg := Config{
		Redis:        srvRDB,
		RedisConnOpt: asynq.RedisClientOpt{Addr: r.Addr},
		Registry:     testRegistry(),
		// The catalogue is read once below; the tests that count Redis
		// commands must not see a periodic reread.
		CatalogRefresh: time.Minute,
		Logger:         slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, f := range configure {
		f(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.catalog.Get(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	t.Cleanup(func() { srv.Close() }) // runs first: ends streams so hs.Close does not wait
	e.srv, e.url = srv, hs.URL
	// The tests read every write a job made; production keeps only a
	// finished job's final event (TestEventsFinishedFinalOnly).
	e.store.KeepAllEvents, srv.store.KeepAllEvents = true, true
	return e
}

// do sends a request and returns the response with its body read.
func (e *env) do(method, path, contentType string, body io.Reader, header ...string) (*http.Response, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return res, b
}

// submit posts a job and returns its record, failing unless the status is want.
func (e *env) submit(body string, want int, header ...string) *api.Job {
	e.t.Helper()
	res, b := e.do("POST", "/v1/jobs", "application/json", strings.NewReader(body), header...)
	if res.StatusCode != want {
		e.t.Fatalf("submit %s: status %d, want %d: %s", body, res.StatusCode, want, b)
	}
	return decodeJob(e.t, b)
}

func decodeJob(t *testing.T, b []byte) *api.Job {
	t.Helper()
	j, err := api.DecodeJob(b)
	if err != nil {
		t.Fatalf("decoding record %s: %v", b, err)
	}
	return j
}

// worker plays a worker for job id through the store: it claims it.
type worker struct {
	e     *env
	job   *api.Job
	token int64
}

func (e *env) claim(id string) *worker {
	e.t.Helper()
	c, err := e.store.Claim(context.Background(), id, 1, time.Minute)
	if err != nil || c.Outcome != store.ClaimOK {
		e.t.Fatalf("claim %s: %v %+v", id, err, c)
	}
	return &worker{e: e, job: c.Job, token: c.Token}
}

// save writes the job in state st, with a result when it succeeded.
func (w *worker) save(st api.State) string {
	w.e.t.Helper()
	now := time.Now().UTC()
	j := w.job
	j.State = st
	ttl := time.Duration(0)
	switch st {
	case api.StateRunning:
		j.StartedAt, j.Attempt = &now, 1
		j.Stage = api.StageRef{Index: 1, Name: j.Stages[0].Name, Total: len(j.Stages)}
		j.Stages[0].State, j.Stages[0].StartedAt, j.Stages[0].Attempts = api.StateRunning, &now, 1
		j.Partial = json.RawMessage(`{"step":1}`)
	case api.StateSucceeded:
		for i := range j.Stages {
			j.Stages[i].State, j.Stages[i].FinishedAt = api.StateSucceeded, &now
		}
		j.FinishedAt, j.Progress = &now, 1
		j.Result = json.RawMessage(`{"answer":42}`)
		ttl = time.Hour
	}
	res, err := w.e.store.Save(context.Background(), j, w.token, store.SaveArgs{TTL: ttl})
	if err != nil {
		w.e.t.Fatalf("save %s: %v", st, err)
	}
	return res.EventID
}

// finish runs job id to success, as a worker would.
func (e *env) finish(id string) {
	e.t.Helper()
	w := e.claim(id)
	w.save(api.StateRunning)
	w.save(api.StateSucceeded)
}

// finishWatched waits, without failing the test (it runs in its own
// goroutine), until the hub watches a job that exists, and finishes it.
func (e *env) finishWatched() error {
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	for ; time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		e.srv.hub.mu.Lock()
		var id string
		for k := range e.srv.hub.watchers {
			id = k
		}
		e.srv.hub.mu.Unlock()
		if id == "" {
			continue
		}
		c, err := e.store.Claim(ctx, id, 1, time.Minute)
		if err != nil {
			return err
		}
		if c.Outcome != store.ClaimOK {
			continue // the submit has not created it yet
		}
		now := time.Now().UTC()
		c.Job.State, c.Job.StartedAt, c.Job.FinishedAt = api.StateSucceeded, &now, &now
		c.Job.Result = json.RawMessage(`{"answer":42}`)
		_, err = e.store.Save(ctx, c.Job, c.Token, store.SaveArgs{TTL: time.Hour})
		return err
	}
	return fmt.Errorf("no watched job to finish")
}

func (e *env) dbsize() int64 {
	e.t.Helper()
	n, err := e.rdb.DBSize(context.Background()).Result()
	if err != nil {
		e.t.Fatal(err)
	}
	// Not the catalogue keys New wrote for the test's pipelines.
	cat, err := e.rdb.Keys(context.Background(), "staged:catalog:*").Result()
	if err != nil {
		e.t.Fatal(err)
	}
	return n - int64(len(cat))
}

// assertProblem checks an RFC 9457 problem response.
func assertProblem(t *testing.T, res *http.Response, b []byte, status int, detail string) problem {
	t.Helper()
	if res.StatusCode != status {
		t.Fatalf("status %d, want %d: %s", res.StatusCode, status, b)
	}
	if ct := res.Header.Get("Content-Type"); ct != contentTypeProblem {
		t.Fatalf("Content-Type %q, want %q (body %s)", ct, contentTypeProblem, b)
	}
	var p problem
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatalf("problem body %s: %v", b, err)
	}
	if p.Status != status || p.Title != http.StatusText(status) || !strings.HasPrefix(p.Type, problemTypeBase) {
		t.Fatalf("problem %+v for status %d", p, status)
	}
	if !strings.Contains(p.Detail, detail) {
		t.Fatalf("detail %q does not contain %q", p.Detail, detail)
	}
	return p
}
