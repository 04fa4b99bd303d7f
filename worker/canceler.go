package worker

import (
	"context"
	"strings"
	"sync"

	"github.com/staged-dev/staged/internal/store"

	"github.com/redis/go-redis/v9"
)

// canceler holds the worker's one subscription to store.CancelChannel, on
// which the API publishes the id of each running job it cancels, and stops
// that job's stage if it runs here. The same subscription carries
// store.WakeChannel, the pushes for the waker (wake.go). go-redis resubscribes by itself after a
// lost connection; a cancel published meanwhile still reaches the job
// through its next lease renewal or record write, which report the durable
// cancel flag.
//
// On a Redis Cluster it subscribes instead (store.ShardSub, SSUBSCRIBE) to
// the shard channels it needs: the wake-up channel of each of its queues
// (store.WakeShardChannel, in the queue's slot) and, while a job runs here,
// that job's cancel channel (store.CancelShardChannel, in the job's slot).
// A job's subscription starts after its claim, so a cancel published
// between the claim and the subscription's confirmation would be missed:
// on each confirmation the canceler reads the job's cancel flag once.
type canceler struct {
	w  *Worker
	ps *redis.PubSub

	shards *store.ShardSub // on a Cluster, instead of ps
	mu     sync.Mutex
	jobs   map[string]int // runs here per job id, on a Cluster
}

func (c *canceler) start(wg *sync.WaitGroup) {
	if cc, ok := c.w.rdb.(*redis.ClusterClient); ok {
		c.startShards(wg, cc)
		return
	}
	c.ps = c.w.rdb.Subscribe(context.Background(), store.CancelChannel, store.WakeChannel)
	ch := c.ps.Channel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for msg := range ch {
			c.handle(msg)
		}
	}()
}

func (c *canceler) startShards(wg *sync.WaitGroup, cc *redis.ClusterClient) {
	c.jobs = map[string]int{}
	c.shards = store.NewShardSub(cc, c.w.log.With("component", "canceler"), store.CancelChannel, store.WakeChannel)
	for q := range c.w.waker.queues {
		c.shards.SSubscribe(store.WakeShardChannel(q))
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for m := range c.shards.C() {
			switch m := m.(type) {
			case *redis.Message:
				c.handle(m)
			case *redis.Subscription:
				if m.Kind == "ssubscribe" && strings.HasPrefix(m.Channel, cancelShardPrefix) {
					wg.Add(1)
					go func() {
						defer wg.Done()
						c.checkFlag(store.ShardKey(m.Channel))
					}()
				}
			}
		}
	}()
}

// The shard channels' names without the key.
var (
	cancelShardPrefix = strings.TrimSuffix(store.CancelShardChannel(""), "{}")
	wakeShardPrefix   = strings.TrimSuffix(store.WakeShardChannel(""), "{}")
)

// handle acts on one message: a wake-up or a cancel.
func (c *canceler) handle(msg *redis.Message) {
	switch ch := msg.Channel; {
	case ch == store.WakeChannel:
		c.w.waker.wakeUp(msg.Payload)
	case ch == store.CancelChannel:
		c.stop(msg.Payload)
	case strings.HasPrefix(ch, wakeShardPrefix):
		c.w.waker.wakeUp(store.ShardKey(ch))
	case strings.HasPrefix(ch, cancelShardPrefix):
		c.stop(store.ShardKey(ch))
	}
}

func (c *canceler) stop(id string) {
	if c.w.runs.stop(id, errCanceled) {
		c.w.log.Info("cancel requested: stopping the job's stage", "job_id", id)
	} else if c.w.waker.pf.cancel(id) {
		// Claimed by a dequeue, its run not started (prefetch.go).
		c.w.log.Info("cancel requested: the job's run will not start its stages", "job_id", id)
	}
}

// checkFlag stops job id if it runs here and its cancel flag is set.
func (c *canceler) checkFlag(id string) {
	c.mu.Lock()
	running := c.jobs[id] > 0
	c.mu.Unlock()
	if !running {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	if canceled, err := c.w.store.CancelFlag(ctx, id); err == nil && canceled {
		c.stop(id)
	}
}

// watch listens for cancels of job id, which starts running here; on a
// single server or Sentinel the subscription already carries them.
func (c *canceler) watch(id string) {
	if c.shards == nil {
		return
	}
	c.mu.Lock()
	c.jobs[id]++
	first := c.jobs[id] == 1
	c.mu.Unlock()
	if first {
		c.shards.SSubscribe(store.CancelShardChannel(id))
	}
}

// unwatch is the end of a watch.
func (c *canceler) unwatch(id string) {
	if c.shards == nil {
		return
	}
	c.mu.Lock()
	c.jobs[id]--
	last := c.jobs[id] <= 0
	if last {
		delete(c.jobs, id)
	}
	c.mu.Unlock()
	if last {
		c.shards.SUnsubscribe(store.CancelShardChannel(id))
	}
}

// shutdown unsubscribes; the goroutine ends when the channel closes.
func (c *canceler) shutdown() {
	if c.ps != nil {
		c.ps.Close()
	}
	if c.shards != nil {
		c.shards.Close()
	}
}
