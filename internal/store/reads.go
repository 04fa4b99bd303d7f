package store

import (
	"context"
	"runtime"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// readBatchMax caps the record reads one pipelined round trip carries.
const readBatchMax = 128

// readSenders is how many read round trips may be in flight at once. One:
// a read that comes while a round trip is in flight waits for it (a local
// round trip is some tens of µs) and goes with the others that came
// meanwhile. With two senders (as batchSenders for the scripts), about half
// the reads of the poll bench went alone, which cost the API 5% more CPU
// per poll and Redis 40% more (bench-poll.md); the API's CPU, not Redis's
// latency, is what limits its polls.
const readSenders = 1

// reader is the group read of a Store: its sender goroutine sends the
// HMGETs of all the record reads waiting at the same moment (GetOwned,
// GetRaw, Get) as one pipelined round trip. A sender never waits for more
// work (it only yields once to the goroutines already runnable when it has
// a single read), so a read on an idle API goes out at once, alone; under load, one
// write and one read system call (on each side) carry many reads. Each read
// is sent after it was asked for: it sees every write completed before.
type reader struct {
	rdb     redis.UniversalClient
	timeout time.Duration
	reqs    chan *readReq // unbuffered: a request is either taken or still the caller's
	quit    chan struct{}
	done    chan struct{}
	once    sync.Once
}

// readReq is one caller's read of a job hash's record and tenant.
type readReq struct {
	ctx      context.Context
	key      string
	deadline time.Time
	rec      string
	tenant   string
	err      error
	sig      chan struct{} // buffered: the sender never blocks on a caller
}

// readReqs are the requests whose callers took their answer; an abandoned
// one (its caller's context ended first) is left to the collector.
var readReqs = sync.Pool{New: func() any { return &readReq{sig: make(chan struct{}, 1)} }}

// StartReads makes the store's record reads (GetOwned, GetRaw, Get) go
// through the reader, which pipelines the reads waiting at the same moment,
// with up to readSenders round trips in flight. Each read is bounded by
// timeout from its call (or by its context's earlier deadline): the caller
// needs no deadline context of its own. Call it once, before the store is
// shared; Close stops the reader, and ctx being done does too. Reads after
// that go to Redis directly, still bounded by timeout.
func (s *Store) StartReads(ctx context.Context, timeout time.Duration) {
	r := &reader{rdb: s.rdb, timeout: timeout, reqs: make(chan *readReq), quit: make(chan struct{}), done: make(chan struct{})}
	s.reads.Store(r)
	var wg sync.WaitGroup
	for range readSenders {
		wg.Go(func() { r.loop(ctx) })
	}
	go func() { wg.Wait(); close(r.done) }()
}

// stop stops the reader's senders and waits for them.
func (r *reader) stop() {
	r.once.Do(func() { close(r.quit) })
	<-r.done
}

// readRecord returns the "rec" and "tenant" fields of job hash key ("" for
// a missing field or hash), through the reader when one runs.
func (s *Store) readRecord(ctx context.Context, key string) (rec, tenant string, err error) {
	if r := s.reads.Load(); r != nil {
		return r.do(ctx, key)
	}
	return hmgetRecord(ctx, s.rdb, key)
}

func hmgetRecord(ctx context.Context, rdb redis.Cmdable, key string) (rec, tenant string, err error) {
	return recordOf(rdb.HMGet(ctx, key, "rec", "tenant").Result())
}

func recordOf(vals []any, err error) (rec, tenant string, _ error) {
	if err != nil {
		return "", "", err
	}
	rec, _ = vals[0].(string)
	tenant, _ = vals[1].(string)
	return rec, tenant, nil
}

// do runs one read through the reader, or directly once it is stopped. It
// returns as soon as ctx is done, whether or not the read was sent.
func (r *reader) do(ctx context.Context, key string) (rec, tenant string, err error) {
	deadline := time.Now().Add(r.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	q := readReqs.Get().(*readReq)
	q.ctx, q.key, q.deadline = ctx, key, deadline
	select {
	case r.reqs <- q:
	case <-r.done:
		q.ctx = nil
		readReqs.Put(q)
		dctx, cancel := context.WithDeadline(ctx, deadline)
		defer cancel()
		return hmgetRecord(dctx, r.rdb, key)
	case <-ctx.Done():
		q.ctx = nil
		readReqs.Put(q)
		return "", "", ctx.Err()
	}
	select {
	case <-q.sig:
		rec, tenant, err = q.rec, q.tenant, q.err
		*q = readReq{sig: q.sig}
		readReqs.Put(q)
		return rec, tenant, err
	case <-ctx.Done():
		return "", "", ctx.Err()
	}
}

// finish answers q.
func (q *readReq) finish(rec, tenant string, err error) {
	q.rec, q.tenant, q.err = rec, tenant, err
	q.sig <- struct{}{}
}

func (r *reader) loop(ctx context.Context) {
	batch := make([]*readReq, 0, readBatchMax)
	for {
		batch = batch[:0]
		select {
		case q := <-r.reqs:
			batch = append(batch, q)
		case <-r.quit:
			return
		case <-ctx.Done():
			return
		}
		yielded := false
	more:
		for len(batch) < readBatchMax {
			select {
			case q := <-r.reqs:
				batch = append(batch, q)
			default:
				if len(batch) == 1 && !yielded {
					// Alone so far: let the goroutines already runnable
					// (requests being parsed) run first, once, so that
					// those about to read come along. On an idle process
					// it returns at once. The poll bench: fewer lone round
					// trips, more polls per second (bench-poll.md).
					yielded = true
					runtime.Gosched()
					continue
				}
				break more
			}
		}
		r.send(batch)
		clear(batch) // drop references to finished requests
	}
}

// send reads batch in one round trip (a lone read as a plain command),
// bounded by the earliest deadline among its reads. Reads whose caller
// has given up are not sent; those past their deadline fail at once.
func (r *reader) send(batch []*readReq) {
	now := time.Now()
	live := batch[:0:0]
	var deadline time.Time
	for _, q := range batch {
		switch {
		case q.ctx.Err() != nil: // the caller has its error already
		case !now.Before(q.deadline):
			q.finish("", "", context.DeadlineExceeded)
		default:
			if len(live) == 0 || q.deadline.Before(deadline) {
				deadline = q.deadline
			}
			live = append(live, q)
		}
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if len(live) == 1 {
		live[0].finish(hmgetRecord(ctx, r.rdb, live[0].key))
		return
	}
	p := r.rdb.Pipeline()
	cmds := make([]*redis.SliceCmd, len(live))
	for i, q := range live {
		cmds[i] = p.HMGet(ctx, q.key, "rec", "tenant")
	}
	_, _ = p.Exec(ctx) // each command keeps its own error
	for i, q := range live {
		q.finish(recordOf(cmds[i].Result()))
	}
}
