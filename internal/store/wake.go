package store

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// wakeTimeout bounds one round of wake-up PUBLISHes.
const wakeTimeout = time.Second

// Wake tells idle workers that queue q has a new task (PUBLISH q on
// WakeChannel; on a Cluster, SPUBLISH on WakeShardChannel(q), in the slot
// of the queue's asynq keys), so that they dequeue it at once rather than
// at their next poll. It is best effort: a worker that misses it finds the
// task at its next poll, at most its TaskCheckInterval later.
func Wake(ctx context.Context, rdb redis.UniversalClient, q string) {
	if q == "" {
		q = DefaultQueue
	}
	sharded, _ := ShardedPubSub(ctx, rdb)
	publishWake(ctx, rdb, sharded, q)
}

// publishWake sends the wake-up of queue q on c.
func publishWake(ctx context.Context, c redis.Cmdable, sharded bool, q string) {
	if sharded {
		c.SPublish(ctx, WakeShardChannel(q), q)
	} else {
		c.Publish(ctx, WakeChannel, q)
	}
}

// Waker sends the wake-ups of many enqueues coalesced: one goroutine takes
// the first queue waiting, then every other one already waiting, and sends
// one PUBLISH (SPUBLISH on a Cluster) per distinct queue in one pipelined
// round trip (one per master on a Cluster). Idle, each
// enqueue gets its own PUBLISH at once; under load, one PUBLISH stands for
// all the jobs enqueued meanwhile (a woken worker goes on dequeuing until
// the queue is empty). Make one with NewWaker; Close stops it.
type Waker struct {
	rdb  redis.UniversalClient
	qs   chan string
	quit chan struct{}
	done chan struct{}
	once sync.Once
}

// NewWaker starts a Waker on rdb.
func NewWaker(rdb redis.UniversalClient) *Waker {
	w := &Waker{rdb: rdb, qs: make(chan string, 1024), quit: make(chan struct{}), done: make(chan struct{})}
	go w.loop()
	return w
}

// Wake asks for a wake-up of queue q ("" is DefaultQueue). It never blocks:
// with 1024 wake-ups waiting already, this one is dropped (those cover it,
// or the workers' poll does).
func (w *Waker) Wake(q string) {
	if q == "" {
		q = DefaultQueue
	}
	select {
	case w.qs <- q:
	default:
	}
}

// Close stops the Waker; wake-ups not sent yet are dropped.
func (w *Waker) Close() {
	w.once.Do(func() { close(w.quit) })
	<-w.done
}

func (w *Waker) loop() {
	defer close(w.done)
	seen := map[string]bool{}
	for {
		select {
		case <-w.quit:
			return
		case q := <-w.qs:
			clear(seen)
			seen[q] = true
		more:
			for {
				select {
				case q := <-w.qs:
					seen[q] = true
				default:
					break more
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), wakeTimeout)
			sharded, _ := ShardedPubSub(ctx, w.rdb)
			_, _ = w.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				for q := range seen {
					publishWake(ctx, p, sharded, q)
				}
				return nil
			})
			cancel()
		}
	}
}
