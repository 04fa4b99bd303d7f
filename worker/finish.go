package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/internal/store"

	"github.com/hibiken/asynq"

	"github.com/staged-dev/staged/tasks"
)

// How a run ends, and how it writes the job's record.

// succeed writes the job's result.
func (r *run) succeed(result json.RawMessage) error {
	_, err := r.commit(func(j *api.Job, now time.Time) {
		j.State, j.Result, j.Progress, j.FinishedAt = api.StateSucceeded, result, 1, &now
		j.Error, j.NextAttemptAt = nil, nil
	}, r.retention(), nil, true)
	if err != nil {
		return r.writeFailed(err)
	}
	r.finished.Store(true)
	r.metrics.jobFinished(r.job)
	r.log.Info("job succeeded")
	return nil
}

func (r *run) finishCanceled() error {
	_, err := r.commit(func(j *api.Job, now time.Time) { j.MarkCanceled(now) }, r.retention(), nil, true)
	if err != nil {
		return r.writeFailed(err)
	}
	r.finished.Store(true)
	r.metrics.jobFinished(r.job)
	r.log.Info("job canceled")
	return nil
}

// fail ends an attempt that failed in stage k (-1: before any stage): for
// good when err is permanent or no retry is left, else for asynq to retry.
func (r *run) fail(k int, err error) error {
	stage, where, msg := "", "", err.Error()
	if k >= 0 {
		stage = r.stages[k].Name
		where = " in stage " + stage
	}
	setStage := func(j *api.Job, s api.State, now time.Time) {
		if k >= 0 {
			j.Stages[k].State, j.Stages[k].FinishedAt = s, &now
		}
	}
	if tasks.IsPermanent(err) || r.retried >= r.maxRetry {
		_, werr := r.commit(func(j *api.Job, now time.Time) {
			j.State, j.FinishedAt, j.NextAttemptAt = api.StateFailed, &now, nil
			j.Error = &api.JobError{Stage: stage, Message: msg}
			setStage(j, api.StateFailed, now)
		}, r.retention(), nil, true)
		if werr != nil {
			return r.writeFailed(werr)
		}
		r.finished.Store(true)
		r.metrics.jobFinished(r.job)
		r.log.Warn("job failed", "stage", stage, "retried", r.retried, "permanent", tasks.IsPermanent(err), "err", msg)
		return fmt.Errorf("job %s failed%s: %s: %w", r.id, where, msg, asynq.SkipRetry)
	}
	delay := r.w.backoff(r.retried)
	_, werr := r.commit(func(j *api.Job, now time.Time) {
		next := now.Add(delay)
		j.State, j.NextAttemptAt = api.StateRetrying, &next
		j.Error = &api.JobError{Stage: stage, Message: msg}
		setStage(j, api.StateRetrying, now)
	}, 0, map[string][]byte{fieldRetriesLeft: []byte(strconv.Itoa(r.maxRetry - r.retried - 1))}, true)
	if werr != nil {
		return r.writeFailed(werr)
	}
	r.metrics.retries.Inc()
	// Give the lease up, so the retry can claim the job at once.
	r.keeper.shutdown()
	if err := r.w.retryWrite(r.log, func(ctx context.Context) error { return r.w.store.Release(ctx, r.id, r.token) }); err != nil {
		r.log.Warn("cannot release the job's lease; the retry waits for it to lapse", "err", err)
	}
	r.log.Info("job attempt failed; asynq will retry it", "stage", stage, "retried", r.retried, "retry_in", delay, "err", msg)
	return fmt.Errorf("job %s attempt failed%s: %s", r.id, where, msg)
}

// handBack hands the job to a new task generation, for another worker to
// resume from its last completed stage; k is the stage that was next or
// was interrupted.
func (r *run) handBack(k int) error {
	if r.hasUnsaved() { // checkpoint the stages that finished
		if _, err := r.commit(func(*api.Job, time.Time) {}, 0, nil, false); err != nil {
			return r.writeFailed(err)
		}
	}
	j := r.close()
	r.keeper.shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	h, err := r.w.store.Handoff(ctx, r.id, r.token)
	if err != nil {
		r.log.Error("cannot hand the job back; another worker takes it over once its lease lapses", "err", err)
		return nil
	}
	if h.Outcome != store.HandoffOK {
		r.log.Info("job not handed back", "outcome", string(h.Outcome))
		return nil
	}
	r.w.metrics.handbacks.Inc()
	r.log.Info("handing the job back for another worker to resume", "stage", r.stages[k].Name, "gen", h.Gen)
	r.w.handOn(ctx, h, j, r.opts, r.p, r.maxRetry-r.retried, nil, nil, r.log)
	return nil
}

func (r *run) fenced() error {
	r.close()
	r.w.metrics.fenced.Inc()
	r.log.Warn("fenced, another worker took over: stopping without writing")
	return nil
}

// writeFailed ends a run whose record write failed.
func (r *run) writeFailed(err error) error {
	if errors.Is(err, store.ErrFenced) || errors.Is(err, errClosed) {
		return r.fenced()
	}
	r.close()
	r.log.Error("cannot write the job's record; leaving the job to a later attempt", "err", err)
	return infraError{fmt.Errorf("job %s: %w", r.id, err)}
}

func (r *run) retention() time.Duration { return store.RetentionOr(r.opts.Retention) }

// retryWrite calls write until it succeeds, fails for another reason than
// Redis being unavailable, or Lease has passed: by then the lease has
// lapsed and the job belongs to whoever takes it over.
func (w *Worker) retryWrite(log *slog.Logger, write func(context.Context) error) error {
	deadline := time.Now().Add(w.cfg.Lease)
	for delay := 50 * time.Millisecond; ; delay = min(2*delay, time.Second) {
		ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
		err := write(ctx)
		cancel()
		if err == nil || tasks.ErrorCode(err) != tasks.EUNAVAILABLE || time.Now().Add(delay).After(deadline) {
			return err
		}
		if w.writeLog.allow() {
			log.Warn("Redis unavailable; retrying the write", "err", err, "retry_in", delay)
		}
		time.Sleep(delay)
	}
}
