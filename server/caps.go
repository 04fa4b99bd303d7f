package server

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/staged-dev/staged/tasks"
)

// Per-key caps on what a client holds open, in each API process.
const (
	// MaxStreamsPerKeyDefault caps the event streams one key (or, on an
	// open API, one client address) holds open at once.
	MaxStreamsPerKeyDefault = 100
	// MaxWaitsPerKeyDefault caps the long polls (?wait) one key holds at
	// once.
	MaxWaitsPerKeyDefault = 100
	// capRetryAfter is the Retry-After of a request past a cap, in seconds.
	capRetryAfter = 5
)

// holdCap counts what each key holds open. The rate limit counts a
// stream or a long poll as one request however long it lasts; without a
// cap, one key could hold thousands and starve every other tenant of the
// process's Redis connections.
type holdCap struct {
	what  string // "event streams", "long polls"
	max   int    // < 0: no cap
	mu    sync.Mutex
	holds map[string]int
}

func newHoldCap(what string, max int) *holdCap {
	return &holdCap{what: what, max: max, holds: map[string]int{}}
}

// holder is who a cap counts: the key's name, or the client's address on
// an open API.
func holder(c echo.Context) string {
	if t := tenantOf(c); t != "" {
		return "key:" + t
	}
	return "ip:" + c.RealIP()
}

// take takes one of c's holds, or returns a 429 error with Retry-After
// when it has them all. release gives it back.
func (h *holdCap) take(c echo.Context) (release func(), err error) {
	if h.max < 0 {
		return func() {}, nil
	}
	k := holder(c)
	h.mu.Lock()
	if h.holds[k] >= h.max {
		h.mu.Unlock()
		c.Response().Header().Set(echo.HeaderRetryAfter, strconv.Itoa(capRetryAfter))
		return nil, tasks.Errorf(tasks.ERATELIMITED, "too many %s open: at most %d per key; close one or retry in %d s", h.what, h.max, capRetryAfter)
	}
	h.holds[k]++
	h.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			h.mu.Lock()
			if h.holds[k]--; h.holds[k] <= 0 {
				delete(h.holds, k)
			}
			h.mu.Unlock()
		})
	}, nil
}

// sharedReads lets the long polls of one job share their reads of its
// record. The hub counts each job's messages (hub.seq); a poll that has
// seen message n joins a read that started when the count was n or more
// (so it saw that change), or starts one. So a change read by a thousand
// polls costs about one HMGET, not a thousand.
type sharedReads struct {
	read    func(ctx context.Context, id string) ([]byte, string, error)
	seq     func(id string) uint64
	timeout time.Duration

	mu    sync.Mutex
	reads map[string]*recordRead
}

type recordRead struct {
	seq   uint64
	done  chan struct{}
	raw   []byte
	owner string
	err   error
}

// get returns job id's record and tenant as read by a read that started
// once the job's message count was at least after. The caller must watch
// the job (so that its count exists).
func (sr *sharedReads) get(ctx context.Context, id string, after uint64) ([]byte, string, error) {
	sr.mu.Lock()
	r := sr.reads[id]
	if r == nil || r.seq < after {
		// The count is taken under sr.mu, before the read: a later
		// message may or may not be seen, and bumps the count past it.
		r = &recordRead{seq: sr.seq(id), done: make(chan struct{})}
		if len(sr.reads) > 4096 {
			for k, o := range sr.reads {
				select {
				case <-o.done:
					delete(sr.reads, k)
				default:
				}
			}
		}
		sr.reads[id] = r
		sr.mu.Unlock()
		// Not the caller's context: the other polls sharing this read must
		// not see it canceled when this one's client goes.
		rctx, cancel := context.WithTimeout(context.Background(), sr.timeout)
		r.raw, r.owner, r.err = sr.read(rctx, id)
		cancel()
		close(r.done)
	} else {
		sr.mu.Unlock()
	}
	select {
	case <-r.done:
		return r.raw, r.owner, r.err
	case <-ctx.Done():
		return nil, "", ctx.Err()
	}
}

// forget drops job id's last read once nobody polls it.
func (sr *sharedReads) forget(id string) {
	sr.mu.Lock()
	if r := sr.reads[id]; r != nil {
		select {
		case <-r.done:
			delete(sr.reads, id)
		default:
		}
	}
	sr.mu.Unlock()
}
