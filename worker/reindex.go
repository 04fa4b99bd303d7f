package worker

import (
	"context"
	"sync"
	"time"
)

// Lease-index audit (store.ReindexRunning): after a failover or a restart
// of a Redis master, a running job may have lost its lease-index entry
// (the write that made it was not replicated in time), and the reconciler,
// which reads only the index, would never take it over if its worker died.
// Every worker checks each master's identity every reindexCheck (two INFO
// calls per master); the first worker to see a new identity scans the job
// records and puts the running jobs missing from the index back into it.
const (
	// reindexBatch is the SCAN COUNT of one step of the scan.
	reindexBatch = 1000
	// reindexPace is the pause between two steps on one master: at most
	// about 100 steps of reindexBatch keys per second per master.
	reindexPace = 10 * time.Millisecond
	// reindexClaim is how long a started scan keeps others from starting
	// one for the same identity; a scan whose worker died starts again
	// after it.
	reindexClaim = 10 * time.Minute
	// reindexEvery is how long a finished scan's marker lasts: each master
	// identity is scanned again once a day, a safety net for index entries
	// lost any other way.
	reindexEvery = 24 * time.Hour
)

type reindexer struct {
	w     *Worker
	every time.Duration
	throttle
}

func newReindexer(w *Worker) *reindexer {
	return &reindexer{w: w, every: min(max(10*w.cfg.ReconcileEvery, w.cfg.ReconcileEvery), 10*time.Second)}
}

// run checks the masters' identities until quit is closed.
func (x *reindexer) run(wg *sync.WaitGroup, quit <-chan struct{}) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			<-quit
			cancel()
		}()
		t := time.NewTicker(x.every)
		defer t.Stop()
		for {
			x.check(ctx)
			select {
			case <-quit:
				return
			case <-t.C:
			}
		}
	}()
}

// check scans the job records if a master has an identity no worker has
// scanned for (one SET NX per master: the marker of a finished scan lasts
// reindexEvery, that of a scan under way reindexClaim).
func (x *reindexer) check(ctx context.Context) {
	w := x.w
	cctx, cancel := context.WithTimeout(ctx, x.every+writeTimeout)
	ids, err := w.store.NodeIdentities(cctx)
	var claimed []string
	for _, id := range ids {
		if err != nil {
			break
		}
		var ok bool
		if ok, err = w.store.ClaimReindex(cctx, id, reindexClaim, false); ok {
			claimed = append(claimed, id)
		}
	}
	cancel()
	if err != nil {
		if ctx.Err() == nil && x.allow() {
			w.log.Warn("cannot check the Redis masters' identities for a failover; retrying", "err", err)
		}
		return
	}
	if len(claimed) == 0 {
		return
	}
	w.log.Info("a Redis master is new (failover or restart): looking for running jobs missing from the lease index", "masters", claimed)
	start := time.Now()
	st, err := w.store.ReindexRunning(ctx, reindexBatch, reindexPace)
	for _, id := range st.Reindexed {
		w.log.Warn("running job was missing from the lease index (lost in a Redis failover?): the reconciler checks its lease", "job_id", id)
	}
	for _, id := range st.Waiting {
		w.log.Debug("queued job was missing from the lease index: the reconciler checks its task", "job_id", id)
	}
	if err != nil {
		if ctx.Err() == nil {
			w.log.Warn("looking for running jobs missing from the lease index failed; another worker retries", "err", err,
				"scanned", st.Scanned, "retry_in", reindexClaim)
		}
		return
	}
	w.log.Info("looked for running jobs missing from the lease index", "scanned", st.Scanned, "reindexed", len(st.Reindexed),
		"queued", len(st.Waiting),
		"redis_calls", st.Calls, "took", time.Since(start).Round(time.Millisecond))
	for _, id := range claimed {
		if _, err := w.store.ClaimReindex(ctx, id, reindexEvery, true); err != nil && x.allow() {
			w.log.Warn("cannot mark the lease-index scan done; another worker may scan again", "err", err)
		}
	}
}
