package worker

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/staged-dev/staged/internal/redistest"
)

// The keeper renews every RenewEvery until shutdown, which waits for a
// renewal under way; the worker's wait group counts it until then.
func TestLeaseKeeperRenews(t *testing.T) {
	t.Parallel()
	var n atomic.Int64
	block := make(chan struct{})
	blocked := make(chan struct{}, 1)
	w := &Worker{cfg: Config{RenewEvery: 5 * time.Millisecond, Lease: time.Second}, log: slog.Default()}
	w.renew = func(ctx context.Context, id string, token int64, lease time.Duration) (bool, error) {
		if n.Add(1) == 3 {
			blocked <- struct{}{}
			<-block
		}
		return false, nil
	}
	r := &run{w: w, log: w.log, id: "job"}
	k := newLeaseKeeper(r)
	var wg sync.WaitGroup
	k.start(&wg)
	<-blocked // the third renewal is under way
	stopped := make(chan struct{})
	go func() { k.shutdown(); close(stopped) }()
	redistest.Eventually(t, 10*time.Second, "shutdown to mark the keeper stopped", func() bool {
		k.mu.Lock()
		defer k.mu.Unlock()
		return k.stopped
	})
	select {
	case <-stopped:
		t.Fatal("shutdown returned while a renewal was under way")
	default:
	}
	close(block)
	<-stopped
	wg.Wait()
	if got := n.Load(); got != 3 {
		t.Errorf("%d renewals, want 3 (none after shutdown)", got)
	}
	k.shutdown() // again: nothing
}
