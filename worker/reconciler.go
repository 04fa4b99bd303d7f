package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/hibiken/asynq"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/internal/store"

	"github.com/staged-dev/staged/tasks"
)

// takeoverBatch is how many lapsed leases one reconcile pass handles.
const takeoverBatch = 100

// reconciler takes over the jobs of workers that stopped renewing their
// leases (killed, or cut off from Redis): every ReconcileEvery it hands each
// job whose lease lapsed to a new task generation, which fences the old
// owner out, and enqueues that generation so a worker resumes the job from
// its last completed stage. Every worker runs one; the hand-off script makes
// sure only one of them takes a given job over.
//
// A job taken over more than max_retries+2 times (say, a stage that kills
// its worker each time) ends failed instead.
type reconciler struct {
	w        *Worker
	insp     *asynq.Inspector // on the store's client
	throttle throttle
	reindex  *reindexer // finds running jobs whose index entry was lost
	quit     chan struct{}
	done     chan struct{}
	once     sync.Once
}

func (rc *reconciler) start(wg *sync.WaitGroup) {
	rc.reindex = newReindexer(rc.w)
	rc.reindex.run(wg, rc.quit)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(rc.done)
		t := time.NewTicker(rc.w.cfg.ReconcileEvery)
		defer t.Stop()
		for {
			select {
			case <-rc.quit:
				return
			case <-t.C:
				rc.pass()
			}
		}
	}()
}

// shutdown stops the reconciler after the pass under way (a lease-index
// scan under way is canceled; the worker's WaitGroup waits for it).
func (rc *reconciler) shutdown() {
	rc.once.Do(func() { close(rc.quit) })
	<-rc.done
}

func (rc *reconciler) pass() {
	ctx, cancel := context.WithTimeout(context.Background(), rc.w.cfg.ReconcileEvery+writeTimeout)
	defer cancel()
	ids, err := rc.w.store.LapsedLeases(ctx, takeoverBatch)
	if err != nil {
		if rc.throttle.allow() {
			rc.w.log.Warn("cannot look for lapsed leases; retrying", "err", err)
		}
		return
	}
	for _, id := range ids {
		select {
		case <-rc.quit:
			return
		default:
		}
		if err := rc.takeover(ctx, id); err != nil && rc.throttle.allow() {
			rc.w.log.Warn("takeover failed; retrying on the next pass", "job_id", id, "err", err)
		}
	}
}

// takeover handles one job whose lease lapsed, as docs/ARCHITECTURE.md says.
func (rc *reconciler) takeover(ctx context.Context, id string) error {
	w := rc.w
	log := w.log.With("job_id", id)
	info, err := w.readInfo(ctx, id)
	if err != nil {
		return err
	}
	h, err := w.store.Handoff(ctx, id, 0)
	if err != nil {
		return err
	}
	switch h.Outcome {
	case store.HandoffAlive:
		return nil
	case store.HandoffEnqueue: // a hand-off is under way, the job waits for an asynq retry, or it is queued
		j, err := w.store.Get(ctx, id, "")
		if err != nil {
			return err
		}
		p := w.cfg.Registry.Get(j.Type)
		if err := rc.enqueue(ctx, j, h.Gen, info, p, log); err != nil {
			return err
		}
		store.Wake(ctx, w.rdb, store.TaskQueue(j))
		return w.store.UntrackLapsed(ctx, id)
	case store.HandoffOK:
	default: // done, missing
		return w.store.UntrackLapsed(ctx, id)
	}

	j, p := h.Job, w.cfg.Registry.Get(h.Job.Type)
	w.metrics.takeovers.Inc()
	n := info.takeovers + 1
	fields := map[string][]byte{fieldTakeovers: []byte(strconv.Itoa(n))}
	stage := runningStage(j)
	if limit := maxRetries(info.opts, p) + 2; n > limit && !h.CancelRequested {
		now := w.now()
		j.State, j.FinishedAt, j.NextAttemptAt, j.CancelRequested = api.StateFailed, &now, nil, false
		j.Error = &api.JobError{Stage: stage, Message: fmt.Sprintf(
			"stage %s was interrupted %d times: its worker stopped renewing the job's lease each time (killed, out of memory, or cut off from Redis); giving up",
			stage, n)}
		setRunning(j, api.StateFailed, now)
		log.Error("job failed: taken over too many times", "stage", stage, "takeovers", n)
		_, err := w.store.Save(ctx, j, h.Token, store.SaveArgs{TTL: store.RetentionOr(info.opts.Retention), Fields: fields})
		if err == nil {
			w.metrics.forType(j.Type).jobFinished(j)
		}
		if err != nil && !errors.Is(err, store.ErrFenced) {
			return err
		}
		return nil
	}
	log.Warn("taking over a job whose worker stopped renewing its lease", "stage", stage, "gen", h.Gen, "takeover", n)
	why := &api.JobError{Stage: stage, Message: "the worker running stage " + stage +
		" stopped renewing the job's lease (killed, or cut off from Redis); the stage runs again on another worker"}
	w.handOn(ctx, h, j, info.opts, p, info.retriesLeft(p), why, fields, log)
	return nil
}

// enqueue makes sure that generation gen of job j's task is on its queue
// and can still run the job (which is neither running nor finished). A task
// of that generation that asynq completed or archived cannot: a Redis
// failover lost the job's writes of that attempt (its claim, its final
// write) but not asynq's end of the task, as when the worker's store
// client still read the old master (the claim found the job done there)
// while asynq's client already wrote to the new one. That task is deleted
// and enqueued again; its claim decides, as ever, whether it runs the job.
func (rc *reconciler) enqueue(ctx context.Context, j *api.Job, gen int64, info jobInfo, p *tasks.Pipeline, log *slog.Logger) error {
	q, tid := store.TaskQueue(j), store.TaskID(j.ID, gen)
	ti, err := rc.insp.GetTaskInfo(q, tid)
	switch {
	case errors.Is(err, asynq.ErrTaskNotFound), errors.Is(err, asynq.ErrQueueNotFound):
	case err != nil:
		return err
	case ti.State == asynq.TaskStateCompleted || ti.State == asynq.TaskStateArchived:
		log.Warn("the job's task has ended but the job has not (a Redis failover lost the job's writes?): enqueuing it again",
			"gen", gen, "task_state", ti.State.String(), "job_state", string(j.State))
		if err := rc.insp.DeleteTask(q, tid); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
			return err
		}
	default: // pending, active, scheduled, retry: it runs the job
		return nil
	}
	w := rc.w
	return store.Enqueue(ctx, w.client, j, gen, info.retriesLeft(p), jobTimeout(info.opts, p), info.opts.Retention)
}

// handOn finishes a hand-off (a takeover, or a hand-back by the job's
// owner): the job j, now owned through h.Token, is saved retrying — or
// canceled, if a cancel came meanwhile — and task generation h.Gen is
// enqueued with the retries the job has left. If the enqueue fails, the
// job's lapsed lease stays indexed and the next reconcile pass enqueues it.
func (w *Worker) handOn(ctx context.Context, h *store.Handoff, j *api.Job, opts api.Options, p *tasks.Pipeline,
	retriesLeft int, why *api.JobError, fields map[string][]byte, log *slog.Logger) {
	now := w.now()
	if h.CancelRequested {
		j.MarkCanceled(now)
		if _, err := w.store.Save(ctx, j, h.Token, store.SaveArgs{TTL: store.RetentionOr(opts.Retention), Fields: fields}); err != nil {
			log.Warn("cannot save the canceled job", "err", err)
			return
		}
		w.metrics.forType(j.Type).jobFinished(j)
		log.Info("job canceled")
		return
	}
	if j.State == api.StateRunning {
		j.State = api.StateRetrying
	}
	j.NextAttemptAt, j.CancelRequested = nil, false
	if why != nil {
		j.Error = why
	}
	setRunning(j, api.StateRetrying, now)
	if _, err := w.store.Save(ctx, j, h.Token, store.SaveArgs{Fields: fields}); err != nil {
		// Fenced: a worker claimed the new generation already (another
		// reconciler enqueued it); it is in good hands.
		log.Warn("cannot save the handed-off job", "err", err)
		if errors.Is(err, store.ErrFenced) {
			return
		}
	}
	if err := store.Enqueue(ctx, w.client, j, h.Gen, retriesLeft, jobTimeout(opts, p), opts.Retention); err != nil {
		log.Warn("cannot enqueue the job's next task generation; the reconciler retries", "gen", h.Gen, "err", err)
		return
	}
	store.Wake(ctx, w.rdb, store.TaskQueue(j))
	if err := w.store.UntrackLapsed(ctx, j.ID); err != nil {
		log.Debug("cannot untrack the handed-off job", "err", err)
	}
}

// jobInfo is what a takeover needs besides the record.
type jobInfo struct {
	opts      api.Options
	left      int // retries left, -1 unknown
	takeovers int
}

func (i jobInfo) retriesLeft(p *tasks.Pipeline) int {
	if i.left >= 0 {
		return i.left
	}
	return maxRetries(i.opts, p)
}

func (w *Worker) readInfo(ctx context.Context, id string) (jobInfo, error) {
	b, err := w.store.Bookkeeping(ctx, id)
	if err != nil {
		return jobInfo{}, err
	}
	return jobInfo{opts: b.Options, left: b.RetriesLeft, takeovers: b.Takeovers}, nil
}

// runningStage names the stage j was running, or its current stage.
func runningStage(j *api.Job) string {
	for _, s := range j.Stages {
		if s.State == api.StateRunning {
			return s.Name
		}
	}
	return j.Stage.Name
}

// setRunning moves j's running stages to state s.
func setRunning(j *api.Job, s api.State, now time.Time) {
	for i := range j.Stages {
		if j.Stages[i].State == api.StateRunning {
			j.Stages[i].State, j.Stages[i].FinishedAt = s, &now
		}
	}
}
