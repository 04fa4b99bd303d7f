package worker

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/staged-dev/staged/internal/store"
)

// leaseKeeper renews the lease of one running job every RenewEvery, so the
// reconcilers leave it alone. When the job has been taken over (ErrFenced)
// it stops the job; a renewal that reports a cancel stops it too. While
// Redis is unreachable it keeps trying: the lease may lapse meanwhile, and
// then the worker that takes the job over fences this one out.
//
// The renewals run on a timer (time.AfterFunc), not on a goroutine of
// their own: most jobs end before their first renewal, and a goroutine
// with a ticker per job cost the drain bench about a twentieth of the
// worker's CPU.
type leaseKeeper struct {
	r        *run
	throttle throttle
	wg       *sync.WaitGroup // the worker's, done at shutdown
	renewing sync.Mutex      // held by a renewal under way

	mu      sync.Mutex // guards the fields below
	timer   *time.Timer
	stopped bool
}

func newLeaseKeeper(r *run) *leaseKeeper {
	return &leaseKeeper{r: r}
}

func (k *leaseKeeper) start(wg *sync.WaitGroup) {
	wg.Add(1)
	k.wg = wg
	k.mu.Lock()
	defer k.mu.Unlock()
	// The first renewal is RenewEvery after the claim, which the dequeue
	// may have made a little before the run started (prefetch.go).
	first := k.r.w.cfg.RenewEvery
	if !k.r.claimedAt.IsZero() {
		first = max(first-time.Since(k.r.claimedAt), 0)
	}
	k.timer = time.AfterFunc(first, k.tick)
}

// tick renews the lease and sets the timer for the next renewal,
// RenewEvery after this one began (at once if it took longer), unless the
// keeper has stopped or the job was fenced.
func (k *leaseKeeper) tick() {
	k.renewing.Lock()
	defer k.renewing.Unlock()
	k.mu.Lock()
	stopped := k.stopped
	k.mu.Unlock()
	if stopped {
		return
	}
	t := time.Now()
	again := k.renew()
	k.mu.Lock()
	defer k.mu.Unlock()
	if again && !k.stopped {
		k.timer.Reset(max(k.r.w.cfg.RenewEvery-time.Since(t), 0))
	}
}

// renew renews the lease once and reports whether to go on renewing.
func (k *leaseKeeper) renew() bool {
	r, w := k.r, k.r.w
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.RenewEvery)
	defer cancel()
	canceled, err := w.renew(ctx, r.id, r.token, w.cfg.Lease)
	switch {
	case errors.Is(err, store.ErrFenced):
		r.log.Warn("fenced, another worker took over: stopping the job")
		r.stop(errFenced)
		return false
	case err != nil:
		if k.throttle.allow() {
			r.log.Warn("cannot renew the job's lease; retrying", "err", err)
		}
	case canceled:
		r.stop(errCanceled)
	}
	return true
}

// shutdown stops the renewals and waits for one under way. Safe to call
// more than once.
func (k *leaseKeeper) shutdown() {
	k.mu.Lock()
	if k.stopped {
		k.mu.Unlock()
		return
	}
	k.stopped = true
	if k.timer != nil {
		k.timer.Stop()
	}
	k.mu.Unlock()
	k.renewing.Lock() // a renewal under way ends
	k.renewing.Unlock()
	if k.wg != nil {
		k.wg.Done()
	}
}
