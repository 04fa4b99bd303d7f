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

// runSet holds the jobs running in this worker, for the canceler (which
// finds a job by id) and for shutdown (which waits for them or stops them).
type runSet struct {
	mu      sync.Mutex
	byID    map[string][]*run
	n       int
	idleCh  chan struct{} // closed when n drops to 0
	aborted bool          // shutdown's grace is over: runs added now stop at once
}

func newRunSet() *runSet { return &runSet{byID: map[string][]*run{}, idleCh: make(chan struct{})} }

func (s *runSet) add(r *run) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n == 0 {
		s.idleCh = make(chan struct{})
	}
	s.byID[r.id] = append(s.byID[r.id], r)
	s.n++
	if s.aborted {
		r.stop(errShutdown)
	}
}

func (s *runSet) remove(r *run) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rs := s.byID[r.id]
	for i, x := range rs {
		if x == r {
			rs = append(rs[:i], rs[i+1:]...)
			s.n--
			break
		}
	}
	if len(rs) == 0 {
		delete(s.byID, r.id)
	} else {
		s.byID[r.id] = rs
	}
	if s.n == 0 {
		close(s.idleCh)
	}
}

// stop stops the runs of job id with cause, and reports whether there were any.
func (s *runSet) stop(id string, cause error) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.byID[id] {
		r.stop(cause)
	}
	return len(s.byID[id]) > 0
}

// abortAll stops every run, and those added later, for shutdown; it
// returns how many were running.
func (s *runSet) abortAll() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.aborted = true
	for _, rs := range s.byID {
		for _, r := range rs {
			r.stop(errShutdown)
		}
	}
	return s.n
}

// idle returns a channel closed while no job runs.
func (s *runSet) idle() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n == 0 {
		c := make(chan struct{})
		close(c)
		return c
	}
	return s.idleCh
}

func (s *runSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}
