package worker

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/internal/redistest"
	"github.com/staged-dev/staged/internal/store"
	"github.com/staged-dev/staged/tasks"
)

// On a 3-master Cluster the worker's pushes come over shard channels: an
// idle worker whose next poll is an hour away picks a job up from the
// wake-up on its queue's channel, and a running job whose next lease
// renewal is 15 s away is canceled within seconds through its own cancel
// channel. No PUBLISH crosses the Cluster bus meanwhile: every notice is
// SPUBLISHed on the master of its slot.
func TestClusterShardedPushes(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 3)
	rdb := c.Client(t)
	ctx := context.Background()
	var runs atomic.Int32
	started := make(chan struct{}, 10)
	h := &harness{t: t, rdb: nil, store: store.NewStore(rdb), client: asynq.NewClientFromRedisClient(rdb),
		reg: tasks.NewRegistry(chainPipeline(nil, nil), blockPipeline(&runs, started))}
	h.log = slog.New(slog.NewTextHandler(newTestWriter(t), &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg := Config{Redis: rdb, Registry: h.reg, Concurrency: 4, Lease: time.Minute, ReconcileEvery: 100 * time.Millisecond,
		ShutdownGrace: 2 * time.Second, FlushInterval: 50 * time.Millisecond, TaskCheckInterval: time.Hour, Logger: h.log}
	w := h.start(cfg)
	// The worker has a queue per pipeline definition.
	for q := range w.waker.queues {
		redistest.Eventually(t, 30*time.Second, "the worker to subscribe to "+store.WakeShardChannel(q), func() bool {
			return shardSubscribers(t, c, store.WakeShardChannel(q)) == 1
		})
		// The worker has found the queue empty: its next poll is an hour away.
		redistest.Eventually(t, 30*time.Second, "the worker's first empty dequeue of "+q, func() bool {
			return w.waker.knownEmpty(q)
		})
	}
	bus := busPublishes(t, c)

	// (c) The wake-up alone gets the job picked up.
	id := h.submit("chain", `"x"`, api.Options{})
	j := h.waitC(id, api.StateQueued, time.Second)
	store.Wake(ctx, rdb, store.TaskQueue(j)) // as the API does
	j = h.waitC(id, api.StateSucceeded, 20*time.Second)
	if string(j.Result) != `"xabc"` {
		t.Fatalf("result %s", j.Result)
	}
	if w.waker.pushes.Load() == 0 {
		t.Fatalf("the waker got no push")
	}

	// (b) A cancel reaches the running job through its shard channel.
	id = h.submit("block", `{}`, api.Options{})
	store.Wake(ctx, rdb, store.TaskQueue(h.waitC(id, api.StateQueued, time.Second)))
	<-started
	// Its running stage is written (within FlushInterval): the next write
	// comes when the stage ends, which it does not by itself.
	redistest.Eventually(t, 10*time.Second, "job "+id+" to show its stage running", func() bool {
		j, err := h.store.Get(ctx, id, "")
		return err == nil && len(j.Stages) == 1 && j.Stages[0].State == api.StateRunning
	})
	cancelCh := store.CancelShardChannel(id)
	redistest.Eventually(t, 30*time.Second, "the worker to subscribe to "+cancelCh, func() bool {
		return shardSubscribers(t, c, cancelCh) == 1
	})
	asked := time.Now()
	if res, err := h.store.Cancel(ctx, id, ""); err != nil || res.Idle {
		t.Fatalf("cancel = %+v, %v; want a running job asked to stop", res, err)
	}
	h.waitC(id, api.StateCanceled, 10*time.Second)
	if took := time.Since(asked); took >= w.cfg.RenewEvery {
		t.Errorf("canceled %v after the request: not sooner than a lease renewal (%v)", took, w.cfg.RenewEvery)
	}
	redistest.Eventually(t, 30*time.Second, "the worker to unsubscribe from "+cancelCh, func() bool {
		return shardSubscribers(t, c, cancelCh) == 0
	})

	// (d) Nothing went over the Cluster bus; the plain channels are unused.
	if after := busPublishes(t, c); after != bus {
		t.Errorf("PUBLISH messages over the Cluster bus went from %d to %d", bus, after)
	}
	for _, n := range c.Nodes {
		res, err := n.Client().PubSubNumSub(ctx, store.EventsChannel, store.CancelChannel, store.WakeChannel).Result()
		if err != nil {
			t.Fatal(err)
		}
		for ch, k := range res {
			if k != 0 {
				t.Errorf("%s has %d subscribers on %s", ch, k, n.Addr)
			}
		}
	}
	var spub int64
	for _, n := range c.Nodes {
		spub += redistest.CommandCalls(t, n.Client(), "spublish")
	}
	if spub == 0 {
		t.Errorf("no SPUBLISH on any master")
	}
}

// waitC is wait for a harness without a plain client.
func (h *harness) waitC(id string, s api.State, limit time.Duration) *api.Job {
	h.t.Helper()
	var j *api.Job
	redistest.Eventually(h.t, limit, "job "+id+" "+string(s), func() bool {
		var err error
		j, err = h.store.Get(context.Background(), id, "")
		return err == nil && j.State == s
	})
	return j
}

// shardSubscribers counts the subscribers of shard channel ch over every
// node (only the master of its slot has any).
func shardSubscribers(t *testing.T, c *redistest.Cluster, ch string) int64 {
	t.Helper()
	var total int64
	for _, n := range c.Nodes {
		res, err := n.Client().PubSubShardNumSub(context.Background(), ch).Result()
		if err != nil {
			t.Fatal(err)
		}
		total += res[ch]
	}
	return total
}

// busPublishes sums the PUBLISH messages the nodes received over the
// Cluster bus (CLUSTER INFO cluster_stats_messages_publish_received).
func busPublishes(t *testing.T, c *redistest.Cluster) int64 {
	t.Helper()
	var total int64
	for _, n := range c.Nodes {
		info, err := n.Client().ClusterInfo(context.Background()).Result()
		if err != nil {
			t.Fatal(err)
		}
		total += infoInt(info, "cluster_stats_messages_publish_received")
	}
	return total
}

func infoInt(info, field string) int64 {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}
