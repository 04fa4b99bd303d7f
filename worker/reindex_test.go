package worker

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/internal/redistest"
	"github.com/staged-dev/staged/internal/store"
	"github.com/staged-dev/staged/tasks"
)

// A running job whose lease-index entry was lost (a failover or a restart
// of Redis lost the write that made it) and whose worker died is found after
// the restart and run again, instead of staying running for ever.
func TestLostLeaseIndexEntry(t *testing.T) {
	t.Parallel()
	hp := &handBackPipeline{gate: make(chan struct{}), started: make(chan struct{})}
	srv := redistest.Start(t, redistest.Options{AOF: true}) // a restart keeps what was written
	if srv.Embedded {
		t.Skip("needs a redis-server to restart")
	}
	rdb := srv.Client()
	h := &harness{t: t, srv: srv, rdb: rdb, store: store.NewStore(rdb), client: asynq.NewClientFromRedisClient(rdb),
		reg: tasks.NewRegistry(hp.pipeline())}
	h.log = slog.New(slog.NewTextHandler(newTestWriter(t), &slog.HandlerOptions{Level: slog.LevelDebug}))
	h.store.KeepAllEvents = true

	var cut atomic.Bool // worker a dies: no renewals, no new tasks
	a := h.newWorker(h.config())
	a.renew = func(ctx context.Context, id string, token int64, lease time.Duration) (bool, error) {
		if cut.Load() {
			return false, &tasks.Error{Code: tasks.EUNAVAILABLE, Message: "test: dead"}
		}
		return a.store.Renew(ctx, id, token, lease)
	}
	h.run(a)
	t.Cleanup(func() { close(hp.gate) })
	id := h.submit("hb", `{}`, api.Options{})
	<-hp.started
	// The start of stage b reaches Redis with a flush (write-behind): wait
	// for it, so that the restart below finds the job running.
	h.wait(id, api.StateRunning, 10*time.Second)
	cut.Store(true)
	a.srv.Stop()

	// The entry is gone, as if the failover lost the claim's write, and
	// Redis comes back as a new server (a new run_id).
	ctx := context.Background()
	if err := rdb.ZRem(ctx, store.LeasesKey(id), id).Err(); err != nil {
		t.Fatal(err)
	}
	srv.Restart()
	if n, _ := h.store.LeaseCount(ctx); n != 0 {
		t.Fatalf("lease index holds %d entries after the restart, want 0", n)
	}
	if j := h.job(id); j.State != api.StateRunning {
		t.Fatalf("state = %s, want running", j.State)
	}

	h.start(h.config())
	j := h.wait(id, api.StateSucceeded, 30*time.Second)
	if string(j.Result) != `"ab2c"` {
		t.Fatalf("result %s, attempts %v", j.Result, attempts(j))
	}
}

// The scan finds exactly the running jobs without an entry, on every
// master of a Cluster, and gives the queued ones without an entry whose
// task is missing a new job's (OrphanAfter from now); those whose task is
// pending get none.
func TestReindexRunningCluster(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 3)
	rdb := c.Client(t)
	st := store.NewStore(rdb)
	ctx := context.Background()
	reg := tasks.NewRegistry(chainPipeline(nil, nil))
	client := asynq.NewClientFromRedisClient(rdb)
	var lost, waiting, pending []string
	for i := range 60 {
		j := store.NewJob(reg.Get("chain"), "", time.Now().UTC())
		if _, err := st.Create(ctx, j, "", []byte(`"x"`), api.Options{}); err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 { // running, entry lost
			rdb.HSet(ctx, store.JobKey(j.ID), "state", "running")
			rdb.ZRem(ctx, store.LeasesKey(j.ID), j.ID)
			lost = append(lost, j.ID)
		}
		if i%3 == 1 { // queued, entry lost
			rdb.ZRem(ctx, store.LeasesKey(j.ID), j.ID)
			if i%2 == 0 { // its task pending: it needs no entry
				if err := store.Enqueue(ctx, client, j, 1, 0, time.Minute, 0); err != nil {
					t.Fatal(err)
				}
				pending = append(pending, j.ID)
			} else { // its task missing
				waiting = append(waiting, j.ID)
			}
		}
	}
	before := time.Now()
	ids, err := st.NodeIdentities(ctx)
	if err != nil || len(ids) != 3 {
		t.Fatalf("identities %v, %v; want 3", ids, err)
	}
	stats, err := st.ReindexRunning(ctx, 7, 0)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Scanned != 60 || len(stats.Reindexed) != len(lost) || len(stats.Waiting) != len(waiting) {
		t.Fatalf("scanned %d, reindexed %d, waiting %d; want 60, %d, %d",
			stats.Scanned, len(stats.Reindexed), len(stats.Waiting), len(lost), len(waiting))
	}
	for _, id := range lost {
		if d, err := rdb.ZScore(ctx, store.LeasesKey(id), id).Result(); err != nil || d > float64(time.Now().UnixMilli()) {
			t.Errorf("job %s not back in the lease index with a lapsed deadline: %v, %v", id, d, err)
		}
	}
	for _, id := range waiting {
		d, err := rdb.ZScore(ctx, store.LeasesKey(id), id).Result()
		if least := before.Add(store.OrphanAfterDefault).UnixMilli(); err != nil || d < float64(least) {
			t.Errorf("queued job %s not in the lease index with a new job's deadline (≥ %d): %v, %v", id, least, d, err)
		}
	}
	for _, id := range pending {
		if err := rdb.ZScore(ctx, store.LeasesKey(id), id).Err(); err == nil {
			t.Errorf("queued job %s, whose task is pending, was indexed", id)
		}
	}
}

// TestReindexCost measures the scan of store.ReindexRunning over 200,000
// job records and as many other keys (docs/SCALING.md): run it with
// STAGED_REINDEX_COST=1.
func TestReindexCost(t *testing.T) {
	if os.Getenv("STAGED_REINDEX_COST") == "" {
		t.Skip()
	}
	srv := redistest.Start(t)
	rdb := srv.Client()
	st := store.NewStore(rdb)
	ctx := context.Background()
	const jobs = 200000
	for i := 0; i < jobs; i += 1000 {
		p := rdb.Pipeline()
		for k := i; k < i+1000; k++ {
			id := fmt.Sprintf("%08d-0000-0000-0000-000000000000", k)
			state := "succeeded"
			if k%100 == 0 {
				state = "running"
				p.ZAdd(ctx, store.LeasesKey(id), redis.Z{Score: 1e15, Member: id})
			}
			p.HSet(ctx, store.JobKey(id), "state", state, "rec", strings.Repeat("x", 100))
			p.Set(ctx, "asynq:{default}:t:"+id, "x", 0)
		}
		if _, err := p.Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, pace := range []time.Duration{0, 10 * time.Millisecond} {
		rdb.ConfigResetStat(ctx)
		start := time.Now()
		s, err := st.ReindexRunning(ctx, 1000, pace)
		took := time.Since(start)
		if err != nil {
			t.Fatal(err)
		}
		info := rdb.Info(ctx, "commandstats").Val()
		var usec int
		for _, l := range strings.Split(info, "\n") {
			if i := strings.Index(l, "usec="); i > 0 {
				var u int
				fmt.Sscanf(l[i+5:], "%d", &u)
				usec += u
			}
		}
		t.Logf("pace %v: keys %d, scanned %d jobs, reindexed %d, %d calls in %v; Redis CPU in commands %d ms (%.0f%% of the scan's time)",
			pace, rdb.DBSize(ctx).Val(), s.Scanned, len(s.Reindexed), s.Calls, took.Round(time.Millisecond), usec/1000, float64(usec)/1000/float64(took.Milliseconds())*100)
	}
}
