package server

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/internal/redistest"
	"github.com/staged-dev/staged/internal/store"
)

// killAt makes the server's submit kill Redis once, at point.
func (e *env) killAt(point string) {
	var once sync.Once
	e.srv.hook = func(p string) {
		if p == point {
			once.Do(e.redis.Kill)
		}
	}
}

func (e *env) taskExists(id string) bool {
	e.t.Helper()
	insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: e.redis.Addr})
	defer insp.Close()
	j, err := e.store.Get(context.Background(), id, "")
	if err != nil {
		return false
	}
	_, err = insp.GetTaskInfo(store.TaskQueue(j), id)
	return err == nil
}

// An outage at the enqueue, after the record was written, must not leave
// a job that an idempotent repeat reports (200) but that never runs.
func TestSubmitOutageAtEnqueue(t *testing.T) {
	r := redistest.Start(t, redistest.Options{AOF: true})
	e := newEnvOn(t, r)
	// On one node the record and the task are one script; the two-step
	// path under test is a Cluster's.
	e.srv.store.SplitEnqueue = true
	e.killAt("enqueue")
	body := `{"type":"double","input":{"n":5}}`
	key := []string{"Idempotency-Key", "outage-at-enqueue"}
	res, b := e.do("POST", "/v1/jobs", "application/json", strings.NewReader(body), key...)
	assertProblem(t, res, b, http.StatusServiceUnavailable, "could not be queued")
	if res.Header.Get("Retry-After") == "" {
		t.Errorf("503 without Retry-After")
	}
	e.srv.hook = nil
	r.Restart()
	ids, _ := e.rdb.Keys(context.Background(), store.JobKey("*")).Result()
	if len(ids) != 1 {
		t.Fatalf("want the record left behind by the outage (the case under test), found %v", ids)
	}
	id := strings.TrimSuffix(strings.TrimPrefix(ids[0], "staged:job:{"), "}")
	// The orphan is in the lease index, so a reconciler finds it.
	if _, err := e.rdb.ZScore(context.Background(), store.LeasesKey(id), id).Result(); err != nil {
		t.Errorf("the orphaned job is not in the lease index: %v", err)
	}
	// The repeats: 200 only with the job's task enqueued.
	for i := range 2 {
		res, b = e.do("POST", "/v1/jobs", "application/json", strings.NewReader(body), key...)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("repeat %d: %d %s", i, res.StatusCode, b)
		}
		if j := decodeJob(t, b); j.ID != id || j.State != api.StateQueued {
			t.Fatalf("repeat %d returned %s %s, want %s queued", i, j.ID, j.State, id)
		}
		if !e.taskExists(id) {
			t.Fatalf("repeat %d answered 200 for job %s, which has no asynq task: it will never run", i, id)
		}
	}
}

// An outage between taking the Idempotency-Key and writing the record must
// not leave the key naming a job that does not exist for its whole TTL.
func TestSubmitOutageAtCreate(t *testing.T) {
	r := redistest.Start(t, redistest.Options{AOF: true})
	e := newEnvOn(t, r)
	e.killAt("create")
	body := `{"type":"double","input":{"n":6}}`
	key := []string{"Idempotency-Key", "outage-at-create"}
	res, b := e.do("POST", "/v1/jobs", "application/json", strings.NewReader(body), key...)
	assertProblem(t, res, b, http.StatusServiceUnavailable, "unavailable")
	e.srv.hook = nil
	r.Restart()
	if n, _ := e.rdb.Keys(context.Background(), "staged:idem:*").Result(); len(n) != 1 {
		t.Fatalf("want the key left behind by the outage (the case under test), found %v", n)
	}
	// At once, the submit that took the key might still be writing: retry.
	res, b = e.do("POST", "/v1/jobs", "application/json", strings.NewReader(body), key...)
	assertProblem(t, res, b, http.StatusConflict, "still being created")
	if res.Header.Get("Retry-After") == "" {
		t.Errorf("409 without Retry-After")
	}
	// Later it is the failed submit's key no more: the repeat creates the job.
	e.srv.store.Now = func() time.Time { return time.Now().Add(time.Minute) }
	first := e.submit(body, http.StatusAccepted, key...)
	if !e.taskExists(first.ID) {
		t.Errorf("the job created on the reclaimed key has no task")
	}
	again := e.submit(body, http.StatusOK, key...)
	if again.ID != first.ID {
		t.Errorf("the next repeat returned %s, want %s", again.ID, first.ID)
	}
}

// With Redis down, a request that needs it answers 503 within one Redis
// time-out, whether or not the rate limiter (which needs Redis too) is on.
func TestRedisDownAnswersOnce(t *testing.T) {
	for _, rate := range []float64{0, 100} {
		t.Run(fmt.Sprintf("rate limit %v", rate), func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.RateLimit = rate })
			j := e.submit(`{"type":"double"}`, http.StatusAccepted)
			e.redis.Kill()
			for _, r := range []struct{ method, path, body string }{
				{"GET", "/v1/jobs/" + j.ID, ""},
				{"GET", "/v1/jobs/" + j.ID + "/events", ""},
				{"POST", "/v1/jobs", `{"type":"double"}`},
			} {
				ct := ""
				if r.body != "" {
					ct = "application/json"
				}
				start := time.Now()
				res, b := e.do(r.method, r.path, ct, strings.NewReader(r.body))
				took := time.Since(start)
				assertProblem(t, res, b, http.StatusServiceUnavailable, "unavailable")
				if res.Header.Get("Retry-After") == "" {
					t.Errorf("%s %s: 503 without Retry-After", r.method, r.path)
				}
				// One Redis time-out (RedisTimeoutDefault, 2 s) at most, and
				// some slack for a busy machine; two were 3.5 s or more.
				if took > RedisTimeoutDefault+time.Second/2 {
					t.Errorf("%s %s: 503 after %v, want one Redis time-out (%v)", r.method, r.path, took, RedisTimeoutDefault)
				}
				t.Logf("%s %s: 503 after %v", r.method, r.path, took.Round(time.Millisecond))
			}
			if rate > 0 {
				if res, b := e.do("GET", "/v1/pipelines", "", nil); res.StatusCode != http.StatusOK {
					t.Errorf("pipelines (no Redis needed) with Redis down: %d %s", res.StatusCode, b)
				}
			}
		})
	}
}

// A submit folds the enqueue into the create script only when asynq's
// Redis is the store's: the same address and database, or both following
// the Sentinel primary; a test env (one Redis for both) folds.
func TestSameRedis(t *testing.T) {
	one := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6400", DB: 2})
	defer one.Close()
	failover := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: "m", SentinelAddrs: []string{"127.0.0.1:26379"}})
	defer failover.Close()
	cluster := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:6400"}})
	defer cluster.Close()
	tests := []struct {
		name string
		rdb  redis.UniversalClient
		opt  asynq.RedisConnOpt
		want bool
	}{
		{"same node", one, asynq.RedisClientOpt{Addr: "127.0.0.1:6400", DB: 2}, true},
		{"other node", one, asynq.RedisClientOpt{Addr: "127.0.0.1:1", DB: 2}, false},
		{"other db", one, asynq.RedisClientOpt{Addr: "127.0.0.1:6400"}, false},
		{"sentinel", failover, asynq.RedisFailoverClientOpt{MasterName: "m", SentinelAddrs: []string{"127.0.0.1:26379"}}, true},
		{"sentinel and a node", failover, asynq.RedisClientOpt{Addr: "127.0.0.1:6400"}, false},
		{"cluster", cluster, asynq.RedisClusterClientOpt{Addrs: []string{"127.0.0.1:6400"}}, false},
	}
	for _, tt := range tests {
		if got := sameRedis(tt.rdb, tt.opt); got != tt.want {
			t.Errorf("%s: sameRedis = %v, want %v", tt.name, got, tt.want)
		}
	}
	if e := newEnv(t); e.srv.store.SplitEnqueue {
		t.Errorf("a server whose store and asynq share one Redis does not fold the enqueue")
	}
}
