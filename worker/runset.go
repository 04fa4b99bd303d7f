package worker

import "sync"

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
