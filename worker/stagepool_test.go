package worker

import (
	"runtime"
	"testing"
	"time"

	"github.com/staged-dev/staged/internal/redistest"
)

// Stages run one after the other share one goroutine; at most max wait;
// a stage that ends its goroutine (runtime.Goexit) takes only that one;
// stop ends the waiting ones.
func TestStagePool(t *testing.T) {
	t.Parallel()
	p := newStagePool(2)
	waitIdle := func(n int) {
		t.Helper()
		redistest.Eventually(t, 10*time.Second, "idle goroutines", func() bool { return p.waiting() == n })
	}
	for range 10 {
		done := make(chan struct{})
		p.run(func() { close(done) })
		<-done
		waitIdle(1)
	}
	if n := p.spawned.Load(); n != 1 {
		t.Fatalf("%d goroutines for 10 stages one after the other, want 1", n)
	}
	// Four at once: four goroutines, two of which stay.
	release := make(chan struct{})
	started := make(chan struct{}, 4)
	for range 4 {
		p.run(func() { started <- struct{}{}; <-release })
	}
	for range 4 {
		<-started
	}
	close(release)
	waitIdle(2)
	if n := p.spawned.Load(); n != 4 {
		t.Fatalf("%d goroutines started, want 4", n)
	}
	exited := make(chan struct{})
	p.run(func() { defer close(exited); runtime.Goexit() })
	<-exited
	waitIdle(1)
	done := make(chan struct{})
	p.run(func() { close(done) })
	<-done
	waitIdle(1)
	p.stop()
	waitIdle(0)
	// After stop, a stage still runs, on a goroutine of its own.
	done = make(chan struct{})
	p.run(func() { close(done) })
	<-done
	if n := p.spawned.Load(); n != 5 {
		t.Fatalf("%d goroutines started, want 5", n)
	}
}
