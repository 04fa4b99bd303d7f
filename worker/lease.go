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
type leaseKeeper struct {
	r        *run
	throttle throttle
	stopOnce sync.Once
	quit     chan struct{}
	done     chan struct{}
}

func newLeaseKeeper(r *run) *leaseKeeper {
	return &leaseKeeper{r: r, quit: make(chan struct{}), done: make(chan struct{})}
}

func (k *leaseKeeper) start(wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(k.done)
		t := time.NewTicker(k.r.w.cfg.RenewEvery)
		defer t.Stop()
		for {
			select {
			case <-k.quit:
				return
			case <-t.C:
				if !k.renew() {
					return
				}
			}
		}
	}()
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
	k.stopOnce.Do(func() { close(k.quit) })
	<-k.done
}
