package worker

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/staged-dev/staged/internal/store"
)

// Prefetch: asynq's processor dequeues one task per round trip, one after
// the other (it holds a concurrency slot while it waits for the answer), so
// a busy worker cannot take more tasks a second than one over the round
// trip time, however many slots are free. The waker's hook (wake.go)
// therefore answers a dequeue that reaches Redis with prefetchScript, which
// does what asynq's dequeue script does for one task for up to k tasks of
// the queue (k: 1 + the free slots, at most prefetchMax); it hands the
// first to asynq and keeps the others in a buffer, from which it answers
// the next dequeues without a round trip.
//
// The buffered tasks are active in Redis, on asynq's lease set with the
// deadline asynq asked for on the dequeue that fetched them, but no handler
// holds them yet. So they are kept briefly: a task still buffered after
// prefetchHold is handed back to the head of its queue's pending list (as
// asynq's requeue does), and so are all of them when the worker stops
// (handBack, after asynq's processor has stopped). After a kill -9 they are
// what the killed worker's running tasks are: active with a lease nobody
// extends, which asynq's recoverer retries (see the spare retry in
// store.Enqueue), and whose jobs no worker has claimed.
//
// Read-ahead: a busy worker's slots free up one after the other, and each
// dequeue that finds the buffer empty holds asynq's serial processor for a
// round trip, during which no task starts. So while slots free up fast, the
// buffer is topped up in the background before it runs dry: when a dequeue
// leaves fewer tasks buffered than slots are expected to free up during two
// round trips (the rate of handler returns, times the round trip of the
// last fetches: slots free up in bursts, as the record writes that end jobs
// go out in batches), one refill at a time tops it up to four round trips'
// worth (at most 2 × prefetchMax a refill). Slots that
// free up slowly (long stages) or not at all expect nothing, and no task
// waits in the buffer for them.
//
// Claims (one node): the dequeue also claims the jobs of the tasks it
// takes (store.TakeArgs), so a handler starts with its job's claim made,
// without a round trip of its own (claimed, Worker.attempt). A buffered
// task handed back gives its claim back first (store.Unclaim: lease,
// lease-index entry, state), so the next dequeue of it claims the job at
// once; a cancel published while a claimed task waits for its handler is
// kept with the claim (cancel). A claimed task that no handler takes
// (after a kill -9, or one asynq skips because its deadline passed) is a
// running job whose lease nobody renews: the reconciler takes it over once
// the lease lapses, as it does a killed worker's running jobs.

// prefetchMax caps the tasks one dequeue takes.
const prefetchMax = 16

// prefetchHold is how long a task may wait in the buffer.
const prefetchHold = 250 * time.Millisecond

// prefetchScript takes up to ARGV[3] tasks, as asynq's dequeueCmd does one
// (store.PrefetchLua).
// KEYS: asynq:{q}:pending, :paused, :active, :lease. ARGV: lease deadline
// (unix s), task key prefix, count.
// Returns nil (none) or {id, msg, id, msg, ...}.
var prefetchScript = redis.NewScript(store.PrefetchLua)

// handBackScript puts buffered tasks back at the head of their pending
// list, in order (ARGV[2] is dequeued first again), as asynq's requeueCmd
// does for one; a task no longer active (nothing but a recoverer could
// have moved it) is left alone.
// KEYS: asynq:{q}:pending, :active, :lease. ARGV: task key prefix, id...
// Returns how many went back.
var handBackScript = redis.NewScript(`
local n = 0
for i = #ARGV, 2, -1 do
  if redis.call("LREM", KEYS[2], 0, ARGV[i]) == 1 then
    redis.call("ZREM", KEYS[3], ARGV[i])
    redis.call("RPUSH", KEYS[1], ARGV[i])
    redis.call("HSET", ARGV[1] .. ARGV[i], "state", "pending")
    n = n + 1
  end
end
return n`)

// buffered is a prefetched task of queue q (t's TaskID and Msg), with its
// job's claim when the dequeue claims.
type buffered struct {
	q  string
	t  store.Taken
	at time.Time
}

// held is the claim of a task handed to asynq whose handler has not taken
// it yet.
type held struct {
	t  store.Taken
	at time.Time // when the dequeue claimed it
}

// prefetcher is the waker's buffer of prefetched tasks.
type prefetcher struct {
	rdb   redis.UniversalClient // for hand-backs
	conc  int                   // asynq's concurrency; < 2: no prefetch
	max   int
	hold  time.Duration
	onErr func(err error, q string, ids []any)
	// onUnclaimErr reports claims that could not be given back.
	onUnclaimErr func(err error, bs []buffered)

	// take, when set, makes the dequeue claim the jobs of the tasks it
	// takes, with leases of length lease (one node only).
	take  *store.Store
	lease time.Duration

	// busy counts the tasks handed to asynq whose handler has not returned
	// (an estimate of the slots taken: a task whose handler asynq skips, its
	// deadline passed before it started, stays counted, which only makes
	// later prefetches smaller).
	busy atomic.Int64

	// For the read-ahead: the moving averages of the round trip of a fetch
	// and of the time between two handler returns, and the last return
	// (ns since monoStart, 0: none yet).
	rtt     atomic.Int64
	gap     atomic.Int64
	lastEnd atomic.Int64

	mu        sync.Mutex
	buf       []buffered
	held      map[string]held // by task id
	timer     *time.Timer
	stopped   atomic.Bool
	refilling bool           // a refill is under way (guarded by mu)
	refills   sync.WaitGroup // the refill under way, for stop

	fetched    atomic.Int64 // tasks taken by prefetchScript (tests)
	handedBack atomic.Int64 // tasks put back to pending (tests)
	unclaimed  atomic.Int64 // claims given back (tests)
	refilled   atomic.Int64 // tasks taken by refills (tests)
}

// want is how many tasks a dequeue that reaches Redis takes.
func (p *prefetcher) want() int {
	if p == nil || p.conc < 2 || p.stopped.Load() {
		return 1
	}
	free := p.conc - 1 - int(p.busy.Load())
	return 1 + max(0, min(free, p.max-1))
}

// pop hands out the oldest buffered task, if any.
func (p *prefetcher) pop() (buffered, bool) {
	if p == nil {
		return buffered{}, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.buf) == 0 {
		return buffered{}, false
	}
	b := p.buf[0]
	p.buf[0] = buffered{}
	p.buf = p.buf[1:]
	p.hold1(b.t, b.at)
	return b, true
}

// takes reports whether the dequeue claims.
func (p *prefetcher) takes() bool { return p != nil && p.take != nil }

// heldMax bounds the claims held for handlers: past it, those held longer
// than a minute go (tasks asynq dropped without a handler; their jobs'
// leases lapse and the reconciler takes them over).
const heldMax = 1024

// hold1 keeps t's claim for its task's handler (guarded by mu).
func (p *prefetcher) hold1(t store.Taken, at time.Time) {
	if p.take == nil {
		return
	}
	if p.held == nil {
		p.held = map[string]held{}
	}
	if len(p.held) >= heldMax {
		for id, h := range p.held {
			if time.Since(h.at) > time.Minute {
				delete(p.held, id)
			}
		}
	}
	p.held[t.TaskID] = held{t, at}
}

// claimed returns (and forgets) the claim made for task tid by the dequeue
// that took it, if any.
func (p *prefetcher) claimed(tid string) (held, bool) {
	if p == nil || p.take == nil {
		return held{}, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	h, ok := p.held[tid]
	if ok {
		delete(p.held, tid)
	}
	return h, ok
}

// cancel marks the claims of job id that wait for a handler (buffered, or
// handed to asynq) as canceled: the canceler found no run of the job to
// stop, and the handler will start from the claim. It reports whether
// there was one.
func (p *prefetcher) cancel(id string) bool {
	if p == nil || p.take == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	found := false
	for i := range p.buf {
		if j, _ := store.JobOfTask(p.buf[i].t.TaskID); j == id {
			p.buf[i].t.Cancel()
			found = true
		}
	}
	for tid, h := range p.held {
		if j, _ := store.JobOfTask(tid); j == id {
			h.t.Cancel()
			p.held[tid] = h
			found = true
		}
	}
	return found
}

// ahead is how many slots are expected to free up during one fetch's
// round trip: 0 when slots free up less often than that, or when none has
// for longer.
func (p *prefetcher) ahead() int {
	if p == nil || p.conc < 2 || p.stopped.Load() {
		return 0
	}
	last, rtt := p.lastEnd.Load(), p.rtt.Load()
	if last == 0 || rtt == 0 {
		return 0
	}
	gap := max(p.gap.Load(), p.since()-last, 1)
	return int(min(rtt/gap, int64(p.max), int64(p.conc)))
}

// since is the monotonic time since monoStart, never 0.
func (p *prefetcher) since() int64 { return int64(time.Since(monoStart)) + 1 }

var monoStart = time.Now()

// refill tops the buffer up in the background from queue q when it holds
// fewer tasks than ahead (see Read-ahead above); args are the arguments of
// a dequeue of queue from, and next sends a command to Redis.
func (p *prefetcher) refill(next redis.ProcessHook, args []any, from, q string) {
	n := p.ahead()
	if n == 0 {
		return
	}
	p.mu.Lock()
	if p.refilling || p.stopped.Load() || len(p.buf) >= 2*n {
		p.mu.Unlock()
		return
	}
	k := min(4*n-len(p.buf), 2*p.max)
	p.refilling = true
	p.refills.Add(1)
	p.mu.Unlock()
	args = retarget(args, from, q)
	go func() {
		defer p.refills.Done()
		ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
		ts, err := p.run(ctx, next, args, k)
		cancel()
		if err == nil {
			p.refilled.Add(int64(len(ts)))
			p.keep(q, ts)
		}
		// An error or an empty queue is the next dequeue's to find.
		p.mu.Lock()
		p.refilling = false
		p.mu.Unlock()
	}()
}

// keep buffers tasks of queue q.
func (p *prefetcher) keep(q string, ts []store.Taken) {
	now := time.Now()
	bs := make([]buffered, 0, len(ts))
	for _, t := range ts {
		bs = append(bs, buffered{q: q, t: t, at: now})
	}
	p.mu.Lock()
	if p.stopped.Load() { // too late to buffer: back they go
		p.mu.Unlock()
		p.handBack(context.Background(), bs)
		return
	}
	p.buf = append(p.buf, bs...)
	if p.timer == nil && len(p.buf) > 0 {
		p.timer = time.AfterFunc(p.hold, p.expire)
	}
	p.mu.Unlock()
}

// expire hands back the tasks buffered for prefetchHold or longer.
func (p *prefetcher) expire() {
	p.mu.Lock()
	p.timer = nil
	cut := time.Now().Add(-p.hold)
	n := 0
	for n < len(p.buf) && !p.buf[n].at.After(cut) {
		n++
	}
	old := append([]buffered(nil), p.buf[:n]...)
	p.buf = append(p.buf[:0], p.buf[n:]...)
	if len(p.buf) > 0 && !p.stopped.Load() {
		p.timer = time.AfterFunc(p.buf[0].at.Add(p.hold).Sub(time.Now()), p.expire)
	}
	p.mu.Unlock()
	p.handBack(context.Background(), old)
}

// stop hands every buffered task back; no task is buffered after it. Call
// it once asynq's processor has stopped dequeuing.
func (p *prefetcher) stop(ctx context.Context) {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.stopped.Store(true)
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
	all := p.buf
	p.buf = nil
	p.mu.Unlock()
	p.handBack(ctx, all)
	p.refills.Wait() // a refill under way hands its tasks back itself (keep)
}

// handBack puts tasks back to pending, one script per queue, after it
// gave back the claims of their jobs.
func (p *prefetcher) handBack(ctx context.Context, bs []buffered) {
	if p.take != nil && len(bs) > 0 {
		ts := make([]store.Taken, len(bs))
		for i, b := range bs {
			ts[i] = b.t
		}
		n, err := p.take.Unclaim(ctx, ts)
		if err != nil && p.onUnclaimErr != nil {
			p.onUnclaimErr(err, bs)
		}
		p.unclaimed.Add(n)
	}
	var order []string
	byQ := map[string][]any{}
	for _, b := range bs {
		if _, ok := byQ[b.q]; !ok {
			order = append(order, b.q)
			byQ[b.q] = []any{"asynq:{" + b.q + "}:t:"}
		}
		byQ[b.q] = append(byQ[b.q], b.t.TaskID)
	}
	for _, q := range order {
		k := "asynq:{" + q + "}:"
		n, err := handBackScript.Run(ctx, p.rdb, []string{k + "pending", k + "active", k + "lease"}, byQ[q]...).Int64()
		if err != nil {
			if p.onErr != nil {
				p.onErr(err, q, byQ[q][1:])
			}
			continue
		}
		p.handedBack.Add(n)
	}
}

// fetch runs prefetchScript for k tasks in place of asynq's dequeue cmd
// (args of queue q) and answers cmd with the first task; the others are
// buffered.
func (p *prefetcher) fetch(ctx context.Context, next redis.ProcessHook, cmd *redis.Cmd, q string, k int) error {
	ts, err := p.run(ctx, next, cmd.Args(), k)
	if err != nil {
		cmd.SetErr(err)
		return err
	}
	p.fetched.Add(int64(len(ts)))
	if p.take != nil {
		p.mu.Lock()
		p.hold1(ts[0], time.Now())
		p.mu.Unlock()
	}
	p.keep(q, ts[1:])
	cmd.SetVal(ts[0].Msg)
	return nil
}

// run sends prefetchScript for k tasks with the keys and arguments of
// asynq's dequeue args, or the claiming dequeue in its place (take), and
// returns the tasks it took (redis.Nil: none).
func (p *prefetcher) run(ctx context.Context, next redis.ProcessHook, a []any, k int) ([]store.Taken, error) {
	send := func(args []any) *redis.Cmd {
		c := redis.NewCmd(ctx, args...)
		if err := next(ctx, c); err != nil { // (the client sets it in Process, above the hooks)
			c.SetErr(err)
		}
		return c
	}
	var sha, src []any
	if p.take != nil {
		sha, src = p.take.TakeArgs(a, k, p.lease)
	} else {
		tail := []any{4, a[3], a[4], a[5], a[6], a[7], a[8], k}
		sha = append([]any{"evalsha", prefetchScript.Hash()}, tail...)
		src = append([]any{"eval", store.PrefetchLua}, tail...)
	}
	t := time.Now()
	c := send(sha)
	if err := c.Err(); err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
		c = send(src)
	}
	var ts []store.Taken
	err := c.Err()
	if err == nil {
		if p.take != nil {
			ts, err = store.ParseTaken(c.Val())
		} else {
			var res []string
			res, err = c.StringSlice()
			for i := 0; i+1 < len(res); i += 2 {
				ts = append(ts, store.Taken{TaskID: res[i], Msg: res[i+1]})
			}
		}
	}
	if err == nil && len(ts) == 0 {
		err = redis.Nil
	}
	if err == nil || err == redis.Nil {
		ewma(&p.rtt, int64(time.Since(t)))
	}
	return ts, err
}

// ewma moves the average a one eighth of the way to v.
func ewma(a *atomic.Int64, v int64) {
	old := a.Load()
	if old == 0 {
		a.Store(v)
		return
	}
	a.Store(old + (v-old)/8)
}

// started counts a task handed to asynq; finished, its handler's return.
func (p *prefetcher) started() {
	if p != nil {
		p.busy.Add(1)
	}
}

func (p *prefetcher) finished() {
	if p != nil {
		p.busy.Add(-1)
		now := p.since()
		if last := p.lastEnd.Swap(now); last != 0 {
			ewma(&p.gap, now-last)
		}
	}
}
