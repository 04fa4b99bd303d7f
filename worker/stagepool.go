package worker

import (
	"sync"
	"sync/atomic"
)

// stagePool runs the stages of all runs, and the attempts themselves
// (Worker.handle), on goroutines that outlive them: a goroutine whose
// stage has returned waits for the next stage to run,
// so a stage starts on a stack already grown by earlier ones instead of on
// a new goroutine's small stack, whose growth (copying it, frame by frame)
// cost the drain bench about a tenth of the worker's CPU. At most max
// goroutines wait; the others end. A stage that never returns keeps its
// goroutine, as it did its own.
type stagePool struct {
	mu      sync.Mutex
	idle    []chan func() // the waiting goroutines' (buffered 1), the latest last
	max     int
	stopped bool
	// spawned counts the goroutines started (tests).
	spawned atomic.Int64
}

func newStagePool(max int) *stagePool { return &stagePool{max: max} }

// run runs f on a waiting goroutine, or on a new one if none is waiting.
// f must recover its own panics.
func (p *stagePool) run(f func()) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		ch := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		ch <- f
		return
	}
	p.mu.Unlock()
	p.spawned.Add(1)
	go p.loop(f)
}

func (p *stagePool) loop(f func()) {
	var ch chan func()
	for f != nil {
		f()
		p.mu.Lock()
		if p.stopped || len(p.idle) >= p.max {
			p.mu.Unlock()
			return
		}
		if ch == nil {
			ch = make(chan func(), 1)
		}
		p.idle = append(p.idle, ch)
		p.mu.Unlock()
		f = <-ch
	}
}

// stop ends the waiting goroutines, and the others once their stage
// returns; run still works after it, on a new goroutine per stage.
func (p *stagePool) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = true
	for _, ch := range p.idle {
		ch <- nil
	}
	p.idle = nil
}

// waiting returns how many goroutines wait for a stage (tests).
func (p *stagePool) waiting() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}
