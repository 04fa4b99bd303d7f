package store

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// batchMax caps the scripts one combined pipeline carries.
const batchMax = 128

// batchSenders is how many combined pipelines may be in flight at once: while
// one waits for Redis's reply, the next batch is gathered and sent. With one,
// a write that arrives just after a send waits a whole extra round trip (the
// drain bench was 5% slower than without a combiner; with two, 10% faster).
const batchSenders = 2

// combiner is the group commit of a Store: its sender goroutines send the
// scripts of all waiting Save, Claim and Renew calls as one pipelined round
// trip. A sender never waits for more work: it takes the first request, then
// whatever else is already waiting, and sends at once.
type combiner struct {
	rdb redis.UniversalClient
	// reqs holds the requests not yet taken by a sender. A caller waits
	// once, for its result: with a rendezvous, it was woken when a sender
	// took its request only to wait again (in the drain bench, half the
	// scheduler latency of the worker's handlers).
	reqs chan *batchReq
	quit chan struct{}
	done chan struct{}
	once sync.Once
}

// batchReq is one script call (and its extra commands) of one caller.
type batchReq struct {
	ctx    context.Context
	script *redis.Script
	keys   []string
	args   []any
	argv   []any                 // instead of keys and args: the whole EVALSHA command (evalArgs)
	extra  func(redis.Pipeliner) // may be nil
	res    chan batchRes         // buffered: the combiner never blocks on a caller
}

// evalSha adds r's script call to p.
func (r *batchReq) evalSha(ctx context.Context, p redis.Pipeliner) *redis.Cmd {
	if r.argv == nil {
		return r.script.EvalSha(ctx, p, r.keys, r.args...)
	}
	cmd := redis.NewCmd(ctx, r.argv...)
	cmd.SetFirstKeyPos(3) // as go-redis's EvalSha does
	_ = p.Process(ctx, cmd)
	return cmd
}

type batchRes struct {
	cmd *redis.Cmd
	err error
}

// StartCombiner makes the store send the scripts of Save, Claim and Renew
// through the combiner, which pipelines all the calls waiting at the same
// moment (group commit), with up to batchSenders round trips in flight. Each
// call keeps its own result and errors. Call it once, before the store is
// shared; Close stops the combiner, and ctx being done does too. Calls after
// that go to Redis directly.
func (s *Store) StartCombiner(ctx context.Context) {
	c := &combiner{rdb: s.rdb, reqs: make(chan *batchReq, batchSenders*batchMax), quit: make(chan struct{}), done: make(chan struct{})}
	s.comb.Store(c)
	var wg sync.WaitGroup
	for range batchSenders {
		wg.Go(func() { c.loop(ctx) })
	}
	go func() { wg.Wait(); close(c.done) }()
}

// Close stops the store's combiner and reader, if it has them. It does
// not close the Redis client.
func (s *Store) Close() error {
	if c := s.comb.Load(); c != nil {
		c.once.Do(func() { close(c.quit) })
		<-c.done
	}
	if r := s.reads.Load(); r != nil {
		r.stop()
	}
	return nil
}

// do runs one request through the combiner, or directly once it is stopped.
// It returns as soon as ctx is done, whether or not the script was sent.
func (c *combiner) do(ctx context.Context, s *Store, req batchReq) (*redis.Cmd, error) {
	r := getBatchReq()
	ch := r.res // the pooled channel, empty
	*r = req
	r.ctx, r.res = ctx, ch
	select {
	case c.reqs <- r:
	case <-c.done:
		defer putBatchReq(r) // never taken
		return s.evalDirect(ctx, r)
	case <-ctx.Done():
		putBatchReq(r) // never taken
		return nil, ctx.Err()
	}
	select {
	case res := <-r.res:
		putBatchReq(r) // answered: the sender is done with it
		return res.cmd, res.err
	case <-c.done:
		// The senders have stopped: they answered every request they
		// took, and no one takes the ones still queued.
		select {
		case res := <-r.res:
			putBatchReq(r)
			return res.cmd, res.err
		default:
			defer putBatchReq(r)
			return s.evalDirect(ctx, r)
		}
	case <-ctx.Done():
		// A sender may hold r still: it is left to the garbage collector.
		return nil, ctx.Err()
	}
}

// batchReqs recycles the requests, with their channels, of the calls that
// got their answer: a request and its channel are three allocations.
var batchReqs = sync.Pool{New: func() any { return &batchReq{res: make(chan batchRes, 1)} }}

func getBatchReq() *batchReq { return batchReqs.Get().(*batchReq) }

// putBatchReq recycles r, which no sender holds and whose channel is empty.
func putBatchReq(r *batchReq) {
	*r = batchReq{res: r.res}
	batchReqs.Put(r)
}

func (c *combiner) loop(ctx context.Context) {
	batch := make([]*batchReq, 0, batchMax)
	for {
		batch = batch[:0]
		select {
		case r := <-c.reqs:
			batch = append(batch, r)
		case <-c.quit:
			return
		case <-ctx.Done():
			return
		}
	more:
		for len(batch) < batchMax {
			select {
			case r := <-c.reqs:
				batch = append(batch, r)
			default:
				break more
			}
		}
		c.send(batch)
		clear(batch) // drop references to finished requests
	}
}

// send runs batch as one pipeline. Requests whose script Redis does not
// have (NOSCRIPT, after a restart or SCRIPT FLUSH) are sent once more, with
// their extra commands, after loading the script.
func (c *combiner) send(batch []*batchReq) {
	live := batch[:0:0]
	for _, r := range batch {
		if r.ctx.Err() == nil { // a caller that has given up already got its error
			live = append(live, r)
		}
	}
	// The callers' contexts decide whether they still wait; the pipeline's
	// own context ends with the last of their deadlines, so that go-redis
	// does not go on retrying (redialling) for a caller that has already
	// answered, e.g. a submit answered 503 whose create would otherwise
	// reach a Redis that came back after the answer.
	ctx := context.Background()
	var last time.Time
	for _, r := range live {
		d, ok := r.ctx.Deadline()
		if !ok {
			last = time.Time{}
			break
		}
		if d.After(last) {
			last = d
		}
	}
	if !last.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, last)
		defer cancel()
	}
	for try := 0; len(live) > 0; try++ {
		p := c.rdb.Pipeline()
		bounds := make([]int, len(live)+1)
		scripts := make([]*redis.Cmd, len(live))
		for i, r := range live {
			bounds[i] = p.Len()
			scripts[i] = r.evalSha(ctx, p)
			if r.extra != nil {
				r.extra(p)
			}
		}
		bounds[len(live)] = p.Len()
		cmds, _ := p.Exec(ctx)
		var again []*batchReq
		loaded := map[*redis.Script]error{}
		for i, r := range live {
			// (HasErrorPrefix allocates, also for no error at all.)
			if err := scripts[i].Err(); try == 0 && err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
				err, ok := loaded[r.script]
				if !ok {
					err = r.script.Load(ctx, c.rdb).Err()
					loaded[r.script] = err
				}
				if err == nil {
					again = append(again, r)
				} else {
					r.res <- batchRes{err: err}
				}
				continue
			}
			// The first error among this request's own commands, as Exec
			// would return it for a pipeline of this request alone.
			var err error
			for _, cmd := range cmds[bounds[i]:bounds[i+1]] {
				if err = cmd.Err(); err != nil {
					break
				}
			}
			r.res <- batchRes{cmd: scripts[i], err: err}
		}
		live = again
	}
}
