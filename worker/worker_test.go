package worker

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/internal/store"

	"github.com/hibiken/asynq"

	"github.com/staged-dev/staged/internal/redistest"
	"github.com/staged-dev/staged/tasks"
)

// chainPipeline appends each stage's name to its input; stage b waits for
// gate to close (nil: no wait).
func chainPipeline(gate chan struct{}, started chan<- string) *tasks.Pipeline {
	st := func(name string) tasks.Stage {
		return tasks.Stage{Name: name, Run: stageFunc(func(ctx context.Context, in string, _ tasks.Progress) (any, error) {
			if started != nil {
				started <- name
			}
			if name == "b" && gate != nil {
				start := time.Now()
				select {
				case <-gate:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
				// b runs at least the harness's FlushInterval: its end is
				// written at once.
				<-time.After(50*time.Millisecond - time.Since(start))
			}
			return in + name, nil
		})}
	}
	return &tasks.Pipeline{Name: "chain", Stages: []tasks.Stage{st("a"), st("b"), st("c")}}
}

func TestJobSucceeds(t *testing.T) {
	t.Parallel()
	gate, started := make(chan struct{}), make(chan string, 3)
	h := newHarness(t, chainPipeline(gate, started))
	h.start(h.config())
	ctx := context.Background()
	id := h.submit("chain", `"x"`, api.Options{Retention: time.Hour})
	for _, want := range []string{"a", "b"} {
		if got := <-started; got != want {
			t.Fatalf("stage %s started, want %s", got, want)
		}
	}

	// While it runs: the record shows stage 2 within the FlushInterval
	// (write-behind), and every key has a TTL.
	var j *api.Job
	redistest.Eventually(t, 5*time.Second, "the record to show stage b running", func() bool {
		j = h.job(id)
		return j.State == api.StateRunning
	})
	if j.Stage != (api.StageRef{Index: 2, Name: "b", Total: 3}) ||
		stageStates(j) != "succeeded,running,pending" || j.StartedAt == nil {
		t.Fatalf("running record = %+v", j)
	}
	keys, err := h.rdb.Keys(ctx, "staged:*").Result()
	if err != nil || len(keys) < 4 { // job, events, lease, leases
		t.Fatalf("keys = %v %v", keys, err)
	}
	for _, k := range keys {
		if ttl := h.rdb.PTTL(ctx, k).Val(); ttl <= 0 {
			t.Errorf("key %s has no TTL (%v)", k, ttl)
		}
	}

	close(gate)
	j = h.wait(id, api.StateSucceeded, 5*time.Second)
	if string(j.Result) != `"xabc"` || j.Progress != 1 || j.Attempt != 1 || j.Error != nil || j.FinishedAt == nil {
		t.Fatalf("finished record = %+v", j)
	}
	if got := attempts(j); !slices.Equal(got, []int{1, 1, 1}) || stageStates(j) != "succeeded,succeeded,succeeded" {
		t.Fatalf("stages = %v %s", got, stageStates(j))
	}
	// Write-behind: a (0 ms) is folded into the flush that shows b
	// running; b ran FlushInterval or more, so b→c is written at once; c
	// (0 ms) is folded into the finish. Submit and claim write no event.
	// (A flush may show a running if the machine stalls the stage for a
	// FlushInterval; TestWriteBehind* prove the folding.)
	var states []string
	for _, e := range h.events(id) {
		if s := string(e.State) + ":" + stageStates(e); s != "running:running,pending,pending" || len(states) > 0 {
			states = append(states, s)
		}
	}
	want := []string{"running:succeeded,running,pending", "running:succeeded,succeeded,running", "succeeded:succeeded,succeeded,succeeded"}
	if !slices.Equal(states, want) {
		t.Errorf("record writes %v, want %v", states, want)
	}
	for _, k := range []string{store.JobKey(id), store.EventsKey(id)} {
		if ttl := h.rdb.PTTL(ctx, k).Val(); ttl <= time.Hour-time.Minute || ttl > time.Hour {
			t.Errorf("%s TTL = %v, want the 1h retention", k, ttl)
		}
	}
	if n := h.rdb.Exists(ctx, store.LeaseKey(id)).Val(); n != 0 {
		t.Errorf("lease still exists")
	}
	if _, err := h.rdb.ZScore(ctx, store.LeasesKey(id), id).Result(); err == nil {
		t.Errorf("job still in the lease index")
	}
}

// handBackPipeline: stage a counts its runs; stage b's first run blocks
// (until gate closes, or its context ends if gate is nil), later runs
// return at once; stage c counts its runs.
type handBackPipeline struct {
	runs    [3]atomic.Int32
	gate    chan struct{}
	started chan struct{}
}

func (hp *handBackPipeline) pipeline() *tasks.Pipeline {
	return &tasks.Pipeline{Name: "hb", Stages: []tasks.Stage{
		{Name: "a", Run: stageFunc(func(ctx context.Context, in string, _ tasks.Progress) (any, error) {
			hp.runs[0].Add(1)
			return "a", nil
		})},
		{Name: "b", Run: stageFunc(func(ctx context.Context, in string, _ tasks.Progress) (any, error) {
			if hp.runs[1].Add(1) == 1 {
				close(hp.started)
				if hp.gate == nil {
					<-ctx.Done()
					return nil, ctx.Err()
				}
				<-hp.gate
				return in + "b1", nil
			}
			return in + "b2", nil
		})},
		{Name: "c", Run: stageFunc(func(ctx context.Context, in string, _ tasks.Progress) (any, error) {
			hp.runs[2].Add(1)
			return in + "c", nil
		})},
	}}
}

func TestShutdownHandsBack(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		gated      bool // stage b finishes during the grace period
		grace      time.Duration
		wantStates string // after the hand-back
		wantResult string
		wantTries  []int
	}{
		{"grace expires", false, 300 * time.Millisecond, "succeeded,retrying,pending", `"ab2c"`, []int{1, 2, 1}},
		{"stage ends in grace", true, 10 * time.Second, "succeeded,succeeded,pending", `"ab1c"`, []int{1, 1, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			hp := &handBackPipeline{started: make(chan struct{})}
			if tt.gated {
				hp.gate = make(chan struct{})
			}
			h := newHarness(t, hp.pipeline())
			cfg := h.config()
			cfg.ShutdownGrace = tt.grace
			a := h.newWorker(cfg)
			if tt.gated { // stage b ends once a is shutting down
				a.onDrain = func() { close(hp.gate) }
			}
			stopA := h.run(a)
			id := h.submit("hb", `{}`, api.Options{})
			<-hp.started
			stopA()
			j := h.job(id)
			if j.State != api.StateRetrying || stageStates(j) != tt.wantStates || j.Error != nil {
				t.Fatalf("after hand-back: %s %s %+v", j.State, stageStates(j), j.Error)
			}
			if n := hp.runs[2].Load(); n != 0 {
				t.Fatalf("stage c ran %d times on the stopping worker", n)
			}
			if n := metric(t, a.Gatherer(), "staged_handbacks_total"); n != 1 {
				t.Errorf("staged_handbacks_total = %v, want 1", n)
			}

			h.start(h.config())
			j = h.wait(id, api.StateSucceeded, 5*time.Second)
			if string(j.Result) != tt.wantResult || !slices.Equal(attempts(j), tt.wantTries) || j.Attempt != 2 {
				t.Fatalf("result %s, attempts %v, attempt %d", j.Result, attempts(j), j.Attempt)
			}
			if n := hp.runs[0].Load(); n != 1 {
				t.Fatalf("stage a ran %d times, want 1", n)
			}
		})
	}
}

func TestTakeoverFencesOldWorker(t *testing.T) {
	t.Parallel()
	hp := &handBackPipeline{gate: make(chan struct{}), started: make(chan struct{})}
	h := newHarness(t, hp.pipeline())
	var cut atomic.Bool // worker a is cut off from Redis for renewals
	a := h.newWorker(h.config())
	a.renew = func(ctx context.Context, id string, token int64, lease time.Duration) (bool, error) {
		if cut.Load() {
			return false, &tasks.Error{Code: tasks.EUNAVAILABLE, Message: "test: cut off"}
		}
		return a.store.Renew(ctx, id, token, lease)
	}
	h.run(a)
	id := h.submit("hb", `{}`, api.Options{})
	<-hp.started
	cut.Store(true)
	a.srv.Stop() // a takes no new tasks: generation 2 goes to b

	b := h.start(h.config())
	j := h.wait(id, api.StateSucceeded, 10*time.Second)
	if string(j.Result) != `"ab2c"` || !slices.Equal(attempts(j), []int{1, 2, 1}) || j.Attempt != 2 {
		t.Fatalf("result %s, attempts %v, attempt %d", j.Result, attempts(j), j.Attempt)
	}
	writes := len(h.events(id))
	// Either worker's reconciler may have taken the job over, once.
	if n := metric(t, a.Gatherer(), "staged_takeovers_total") + metric(t, b.Gatherer(), "staged_takeovers_total"); n != 1 {
		t.Errorf("staged_takeovers_total = %v in all, want 1", n)
	}

	// The old owner's stage now finishes; its write is fenced out.
	close(hp.gate)
	redistest.Eventually(t, 5*time.Second, "worker a's run to end", func() bool { return a.runs.len() == 0 })
	if got := h.job(id); string(got.Result) != `"ab2c"` || got.State != api.StateSucceeded {
		t.Fatalf("record overwritten by the fenced worker: %+v", got)
	}
	if n := len(h.events(id)); n != writes {
		t.Fatalf("fenced worker wrote %d records", n-writes)
	}
	if n := hp.runs[0].Load(); n != 1 {
		t.Fatalf("stage a ran %d times, want 1", n)
	}
	if n := metric(t, a.Gatherer(), "staged_fenced_total"); n != 1 {
		t.Errorf("worker a: staged_fenced_total = %v, want 1", n)
	}
	waitMetric(t, b.Gatherer(), 1, "staged_jobs_finished_total", "type", "hb", "state", "succeeded")
}

func TestTakeoverLimit(t *testing.T) {
	t.Parallel()
	var runs atomic.Int32
	h := newHarness(t, &tasks.Pipeline{Name: "crash", Stages: []tasks.Stage{
		{Name: "kill", Run: stageFunc(func(ctx context.Context, in string, _ tasks.Progress) (any, error) {
			runs.Add(1)
			<-ctx.Done()
			return nil, ctx.Err()
		})},
	}})
	cfg := h.config()
	cfg.ShutdownGrace = 100 * time.Millisecond
	w := h.newWorker(cfg)
	// Every run loses its lease, as if the stage killed its worker.
	w.renew = func(context.Context, string, int64, time.Duration) (bool, error) {
		return false, &tasks.Error{Code: tasks.EUNAVAILABLE, Message: "test: cut off"}
	}
	h.run(w)
	id := h.submit("crash", `{}`, api.Options{}) // max_retries 0: at most 2 takeovers
	j := h.wait(id, api.StateFailed, 15*time.Second)
	if j.Error == nil || j.Error.Stage != "kill" || !strings.Contains(j.Error.Message, "interrupted 3 times") {
		t.Fatalf("error = %+v", j.Error)
	}
	if n := runs.Load(); n != 3 {
		t.Fatalf("stage ran %d times, want 3", n)
	}
	// Three lapsed leases taken over; the third ends the job failed.
	g := w.Gatherer()
	if n := metric(t, g, "staged_takeovers_total"); n != 3 {
		t.Errorf("staged_takeovers_total = %v, want 3", n)
	}
	waitMetric(t, g, 1, "staged_jobs_finished_total", "type", "crash", "state", "failed")
}

func TestRedisRestart(t *testing.T) {
	t.Parallel()
	h := newHarness(t, chainPipeline(nil, nil))
	h.start(h.config())
	h.wait(h.submit("chain", `"x"`, api.Options{}), api.StateSucceeded, 5*time.Second)
	h.srv.Restart() // an empty Redis comes back on the same port
	id := h.submit("chain", `"y"`, api.Options{})
	if j := h.wait(id, api.StateSucceeded, 10*time.Second); string(j.Result) != `"yabc"` {
		t.Fatalf("result = %s", j.Result)
	}
}

func TestConfig(t *testing.T) {
	reg := tasks.NewRegistry(chainPipeline(nil, nil))
	opt := asynq.RedisClientOpt{Addr: "127.0.0.1:1"}
	tests := []struct {
		name string
		cfg  Config
		want string // in the error; "" for none
	}{
		{"defaults", Config{RedisConnOpt: opt, Registry: reg}, ""},
		{"no redis", Config{Registry: reg}, "RedisConnOpt"},
		{"no registry", Config{RedisConnOpt: opt}, "Registry"},
		{"empty registry", Config{RedisConnOpt: opt, Registry: &tasks.Registry{}}, "Registry"},
		{"negative lease", Config{RedisConnOpt: opt, Registry: reg, Lease: -time.Second}, "Lease"},
		{"renew too slow", Config{RedisConnOpt: opt, Registry: reg, Lease: time.Second, RenewEvery: time.Second}, "RenewEvery"},
		{"retry max", Config{RedisConnOpt: opt, Registry: reg, RetryBase: time.Minute, RetryMax: time.Second}, "RetryMax"},
		{"bad queue", Config{RedisConnOpt: opt, Registry: reg, Queues: map[string]int{"q": 0}}, "Queues"},
		{"negative payload", Config{RedisConnOpt: opt, Registry: reg, MaxPayload: -1}, "MaxPayload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := New(tt.cfg)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				c := w.cfg
				if c.Lease != LeaseDefault || c.RenewEvery != LeaseDefault/4 || c.Concurrency != ConcurrencyDefault ||
					c.TaskCheckInterval != TaskCheckIntervalDefault || c.MaxPayload != MaxPayloadDefault || c.Queues["default"] != 1 {
					t.Fatalf("defaults = %+v", c)
				}
				w.rdb.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one naming %s", err, tt.want)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	w := &Worker{cfg: Config{RetryBase: time.Second, RetryMax: 5 * time.Second}, log: slog.Default()}
	var got []time.Duration
	for n := range 5 {
		got = append(got, w.backoff(n))
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	if !slices.Equal(got, want) {
		t.Fatalf("backoff = %v, want %v", got, want)
	}
	if !isInfra(infraError{errors.New("x")}) || isInfra(errors.New("x")) {
		t.Fatal("isInfra")
	}
	for d, want := range map[time.Duration]string{time.Hour: "1h", 2 * time.Minute: "2m", 90 * time.Second: "1m30s", 200 * time.Millisecond: "200ms"} {
		if got := fmtDuration(d); got != want {
			t.Errorf("fmtDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
