package worker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"

	"github.com/staged-dev/staged/internal/catalog"
	"github.com/staged-dev/staged/internal/store"
	"github.com/staged-dev/staged/tasks"
)

// orphanSweeper fails the queued jobs that no worker can run: jobs
// accepted under a definition of their pipeline (a stage list) that no live
// worker has run for OrphanAfter, after a deploy changed the pipeline or
// removed it. Each such job fails with an error that says so, instead of
// waiting for ever or resuming in another stage list; its emptied asynq
// queue is removed, so the dashboard shows only queues in use.
//
// Every worker runs one; failing a job goes through the claim, so two
// sweepers (or a worker that comes back) never both act on one job.
type orphanSweeper struct {
	w     *Worker
	insp  *asynq.Inspector
	every time.Duration
	snap  *catalog.Snapshot
	quit  chan struct{}
	done  chan struct{}
	once  sync.Once
}

func newOrphanSweeper(w *Worker) *orphanSweeper {
	every := min(max(w.cfg.OrphanAfter/4, 100*time.Millisecond), 30*time.Second)
	return &orphanSweeper{w: w, insp: asynq.NewInspectorFromRedisClient(w.rdb), every: every,
		quit: make(chan struct{}), done: make(chan struct{})}
}

func (o *orphanSweeper) start(wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(o.done)
		t := time.NewTicker(o.every)
		defer t.Stop()
		for {
			select {
			case <-o.quit:
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), o.every+writeTimeout)
			if err := o.pass(ctx); err != nil && o.w.writeLog.allow() {
				o.w.log.Warn("looking for jobs no worker can run", "err", err)
			}
			cancel()
		}
	}()
}

func (o *orphanSweeper) shutdown() {
	o.once.Do(func() { close(o.quit) })
	<-o.done
}

// pass looks at every per-definition queue once.
func (o *orphanSweeper) pass(ctx context.Context) error {
	snap, err := catalog.Load(ctx, o.w.rdb, o.snap)
	if err != nil {
		return err
	}
	o.snap = snap
	queues, err := o.insp.Queues()
	if err != nil {
		return err
	}
	now := time.Now()
	for _, q := range queues {
		_, name, d8, ok := catalog.ParseQueueName(q)
		if !ok {
			continue
		}
		var lastSeen time.Time
		var current []string // digests live workers run
		for _, e := range snap.Pipelines[name] {
			if e.Workers > 0 {
				current = append(current, e.Def.Digest[:8])
			}
			if strings.HasPrefix(e.Def.Digest, d8) {
				if e.Workers > 0 {
					lastSeen = now
				} else if e.LastSeen.After(lastSeen) {
					lastSeen = e.LastSeen
				}
			}
		}
		if now.Sub(lastSeen) < o.w.cfg.OrphanAfter {
			continue
		}
		if err := o.sweep(ctx, q, name, d8, lastSeen, current); err != nil {
			return err
		}
	}
	return nil
}

// sweep fails the jobs waiting in queue q and removes it once empty.
func (o *orphanSweeper) sweep(ctx context.Context, q, name, d8 string, lastSeen time.Time, current []string) error {
	since := "it was published"
	if !lastSeen.IsZero() {
		since = lastSeen.UTC().Format(time.RFC3339)
	}
	now := "no worker runs it now"
	if len(current) > 0 {
		now = "workers now run definition " + strings.Join(current, ", ")
	}
	msg := fmt.Sprintf("no worker has run pipeline %q with the definition this job was accepted under (%s) since %s, "+
		"and queued jobs wait for one for %s; %s. Submit the job again to run it with the current definition",
		name, d8, since, o.w.cfg.OrphanAfter, now)
	for _, list := range []func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){
		o.insp.ListPendingTasks, o.insp.ListScheduledTasks, o.insp.ListRetryTasks,
	} {
		tis, err := list(q, asynq.PageSize(100))
		if err != nil {
			if errors.Is(err, asynq.ErrQueueNotFound) {
				return nil
			}
			return err
		}
		for _, ti := range tis {
			if err := o.failTask(ctx, q, ti, msg); err != nil {
				return err
			}
		}
	}
	// Removed only when empty (nothing active either); a later pass retries.
	_ = o.insp.DeleteQueue(q, false)
	return nil
}

// failTask fails the job of one orphaned task and deletes the task.
func (o *orphanSweeper) failTask(ctx context.Context, q string, ti *asynq.TaskInfo, msg string) error {
	pl, err := store.DecodePayload(ti.Payload)
	if err == nil {
		c, err := o.w.store.Claim(ctx, pl.ID, pl.Gen, o.w.cfg.Lease)
		if err != nil {
			return err
		}
		if c.Outcome == store.ClaimOK {
			log := o.w.log.With("job_id", pl.ID)
			r := o.w.newRun(ctx, pl, c, ti.Headers, log)
			if c.CancelRequested {
				err = r.finishCanceled()
			} else {
				log.Warn("failing a job no worker can run", "queue", q)
				err = r.fail(-1, tasks.Permanent(errors.New(msg)))
			}
			r.cancel()
			if err != nil && !errors.Is(err, asynq.SkipRetry) {
				return err
			}
		}
	}
	if err := o.insp.DeleteTask(q, ti.ID); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) && !errors.Is(err, asynq.ErrQueueNotFound) {
		return err
	}
	return nil
}
