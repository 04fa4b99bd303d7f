package worker

import (
	"context"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// waker turns asynq's idle poll into a wait for a push. asynq stays the
// durable carrier: its processor dequeues every task, and every claim stays
// the same fenced claim. The API publishes the queue's name on
// store.WakeChannel after each enqueue (store.Wake); the canceler's
// subscription hands it to wakeUp.
//
// The waker is a go-redis hook on the asynq server's client. When a dequeue
// has found every queue of the worker empty, the hook waits for a wake-up
// for at most TaskCheckInterval before it returns the empty answer, and on a
// wake-up dequeues again at once, from the queue named. So an idle worker
// picks a job up one round trip after the publish, and polls about once per
// TaskCheckInterval (a few Redis commands a second) when nothing comes. A
// wake-up that arrives while no dequeue is waiting is kept (one at a time)
// for the next. Should a push be lost (the subscription reconnecting, a
// retry moved to its queue by asynq's forwarder), the job waits at most one
// TaskCheckInterval.
//
// A busy worker skips the queues it knows to be empty. asynq's dequeue
// tries the worker's queues one after the other (one per pipeline
// definition), a round trip each, so a worker draining one queue while its
// others are empty would spend a round trip per empty queue per job. A
// dequeue that found queue Q empty marks Q empty for TaskCheckInterval: the
// hook answers the next dequeues of Q itself (empty, no round trip), until
// a wake-up names Q or the interval has passed. A task whose push is lost
// thus waits at most TaskCheckInterval, busy worker or idle, as above.
type waker struct {
	queues  map[string]*atomic.Int64 // a queue's "empty until", ns since t0; 0: not known empty
	t0      time.Time
	wait    time.Duration
	wake    chan string // buffered 1: the queue of the latest unconsumed push
	quit    chan struct{}
	empties atomic.Int32 // consecutive empty dequeues
	skipped atomic.Int64 // dequeues answered without a round trip (tests)
	pf      *prefetcher  // nil: one task per dequeue (see prefetch.go)
	pushes  atomic.Int64 // wake-ups received for its queues (tests)
}

func newWaker(queues map[string]int, wait time.Duration) *waker {
	wk := &waker{queues: map[string]*atomic.Int64{}, t0: time.Now(), wait: wait, wake: make(chan string, 1), quit: make(chan struct{})}
	for q := range queues {
		wk.queues[q] = new(atomic.Int64)
	}
	return wk
}

// since is the monotonic time since t0, never 0.
func (wk *waker) since() int64 { return int64(time.Since(wk.t0)) + 1 }

// knownEmpty reports whether a dequeue found q empty less than wait ago,
// with no wake-up for q since.
func (wk *waker) knownEmpty(q string) bool {
	e := wk.queues[q]
	return e != nil && e.Load() > wk.since()
}

// found records what a dequeue of q found: a task, or none.
func (wk *waker) found(q string, task bool) {
	e := wk.queues[q]
	if e == nil {
		return
	}
	if task {
		e.Store(0)
	} else {
		e.Store(wk.since() + int64(wk.wait))
	}
}

// wakeUp is a push for queue q; pushes for other workers' queues are ignored.
func (wk *waker) wakeUp(q string) {
	e := wk.queues[q]
	if e == nil {
		return
	}
	e.Store(0) // dequeue q for real again
	wk.pushes.Add(1)
	select {
	case wk.wake <- q:
	default: // one is pending already
	}
}

// stop releases a waiting dequeue for good (asynq is shutting down).
func (wk *waker) stop() {
	select {
	case <-wk.quit:
	default:
		close(wk.quit)
	}
}

// DialHook implements redis.Hook.
func (wk *waker) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessPipelineHook implements redis.Hook.
func (wk *waker) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// ProcessHook implements redis.Hook: it lets every command through, and
// makes an empty dequeue wait for a wake-up (see waker).
func (wk *waker) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		q, ok := dequeueQueue(cmd)
		if !ok {
			return next(ctx, cmd)
		}
		// A prefetched task answers any queue's dequeue: asynq takes the
		// queue from the task message.
		if c, ok := cmd.(*redis.Cmd); ok {
			if b, ok := wk.pf.pop(); ok {
				c.SetVal(b.t.Msg)
				wk.pf.started()
				wk.empties.Store(0)
				wk.pf.refill(next, cmd.Args(), q, b.q)
				return nil
			}
		}
		var err error
		if wk.knownEmpty(q) {
			err = redis.Nil
			cmd.SetErr(err)
			wk.skipped.Add(1)
		} else {
			err = wk.dequeue(ctx, next, cmd, q)
		}
		if err != redis.Nil {
			wk.empties.Store(0)
			return err
		}
		// asynq's Dequeue tries each queue in turn: wait once all were empty.
		if int(wk.empties.Add(1)) < len(wk.queues) {
			return err
		}
		wk.empties.Store(0)
		t := time.NewTimer(wk.wait)
		defer t.Stop()
		var to string
		select {
		case to = <-wk.wake:
		case <-t.C:
			return err
		case <-wk.quit:
			return err
		case <-ctx.Done():
			return err
		}
		if to == "" {
			to = q
		}
		again := redis.NewCmd(ctx, retarget(cmd.Args(), q, to)...)
		err = wk.dequeue(ctx, next, again, to)
		c, ok := cmd.(*redis.Cmd)
		if !ok {
			return err
		}
		c.SetVal(again.Val())
		c.SetErr(again.Err())
		return err
	}
}

// dequeue sends asynq's dequeue cmd of queue q, or prefetches in its place
// (prefetch.go; always when the prefetch claims), and records what it
// found.
func (wk *waker) dequeue(ctx context.Context, next redis.ProcessHook, cmd redis.Cmder, q string) error {
	var err error
	if c, ok := cmd.(*redis.Cmd); ok && (wk.pf.want() > 1 || wk.pf.takes()) {
		err = wk.pf.fetch(ctx, next, c, q, wk.pf.want()) // at least 1 however busy changed
	} else {
		err = next(ctx, cmd)
	}
	if err == nil || err == redis.Nil {
		wk.found(q, err == nil)
	}
	if err == nil {
		wk.pf.started()
		wk.pf.refill(next, cmd.Args(), q, q)
	}
	return err
}

// dequeueQueue reports whether cmd is asynq's dequeue script, and of which
// queue: EVALSHA/EVAL with the four keys asynq:{Q}:pending, :paused,
// :active and :lease, then the lease deadline and the task key prefix.
func dequeueQueue(cmd redis.Cmder) (string, bool) {
	a := cmd.Args()
	if len(a) != 9 {
		return "", false
	}
	if name, _ := a[0].(string); name != "evalsha" && name != "eval" {
		return "", false
	}
	pending, _ := a[3].(string)
	paused, _ := a[4].(string)
	if !strings.HasPrefix(pending, "asynq:{") || !strings.HasSuffix(pending, "}:pending") || !strings.HasSuffix(paused, "}:paused") {
		return "", false
	}
	return pending[len("asynq:{") : len(pending)-len("}:pending")], true
}

// retarget returns the dequeue args of queue from made for queue to (the
// same script on the other queue's keys); to "" or to == from keeps them.
func retarget(args []any, from, to string) []any {
	if to == "" || to == from {
		return args
	}
	out := make([]any, len(args))
	copy(out, args)
	old, repl := "{"+from+"}", "{"+to+"}"
	for i := 3; i < len(out); i++ {
		if s, ok := out[i].(string); ok {
			out[i] = strings.Replace(s, old, repl, 1)
		}
	}
	return out
}
