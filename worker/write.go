package worker

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/internal/store"
)

// How a run writes its job's record: write-behind.
//
// Every change is applied to the in-memory record when it happens, so the
// record's timestamps are exact. Whether it is written at once depends on
// what it is:
//
//   - commit writes at once: terminal states, failures, hand-backs, and the
//     boundary after a stage that ran for at least FlushInterval;
//   - note leaves the write to a flush at most FlushInterval later: stage
//     starts, and the boundaries of shorter stages. The next commit or
//     flush carries every noted change and checkpoint.
//
// The claim counts as a write. So a four-stage job whose stages take no time
// costs the claim and one terminal write, and after a crash at most one
// FlushInterval of short stages runs again; a stage that ran FlushInterval
// or longer is written before the next one starts and never runs again.

// note applies change to the record and adds fields (checkpoints) to the next
// write, which a flush makes within FlushInterval.
func (r *run) note(change func(*api.Job, time.Time), fields map[string][]byte) error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.closed {
		return errClosed
	}
	change(r.job, r.w.now())
	r.addFields(fields)
	r.unsaved = true
	r.pmu.Lock()
	r.schedule()
	r.pmu.Unlock()
	return nil
}

// endStage applies the end of stage k, with output out, to the record; its
// checkpoint goes with the next write.
func (r *run) endStage(k int, out []byte) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	now, j := r.w.now(), r.job
	j.Stages[k].State, j.Stages[k].FinishedAt = api.StateSucceeded, &now
	j.Progress = stagesProgress(r.stages, k+1, 0)
	r.setField(checkpointField(k), out)
	r.unsaved = true
}

// setField adds field k, v to the next write; the caller holds wmu.
func (r *run) setField(k string, v []byte) {
	if r.fields == nil {
		// Room for a checkpoint per stage and one more field: the
		// map does not grow while the stages run.
		r.fields = make(map[string][]byte, len(r.stages)+1)
	}
	r.fields[k] = v
}

// checkpointNames are the checkpoint fields of the first stages, named once:
// endStage names one per stage run.
var checkpointNames = func() (names [128]string) {
	for k := range names {
		names[k] = "out:" + strconv.Itoa(k)
	}
	return names
}()

// checkpointField is the record's hash field holding stage k's output.
func checkpointField(k int) string {
	if k < len(checkpointNames) {
		return checkpointNames[k]
	}
	return "out:" + strconv.Itoa(k)
}

// withoutCheckpoints returns the fields of f that are not checkpoints, in a
// map of their own (nil if none): f stays as it is for a retry of the write.
func withoutCheckpoints(f map[string][]byte) map[string][]byte {
	var m map[string][]byte
	for k, v := range f {
		if !strings.HasPrefix(k, "out:") {
			if m == nil {
				m = make(map[string][]byte, 1)
			}
			m[k] = v
		}
	}
	return m
}

func (r *run) addFields(f map[string][]byte) {
	for k, v := range f {
		r.setField(k, v)
	}
}

// commit applies change to the record and writes it at once with every
// unwritten change, serialised with flushes, retrying while Redis is
// unavailable. A final commit closes the record to this run. The write of a
// succeeded job carries no checkpoints: nothing resumes it.
func (r *run) commit(change func(*api.Job, time.Time), ttl time.Duration, fields map[string][]byte, final bool) (store.SaveResult, error) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.closed {
		return store.SaveResult{}, errClosed
	}
	now, j := r.w.now(), r.job
	r.pmu.Lock()
	if r.partial != nil {
		j.Partial = r.partial
	}
	r.dirty = false
	r.pmu.Unlock()
	change(j, now)
	r.addFields(fields)
	fields = r.fields
	if j.State == api.StateSucceeded { // a succeeded job needs no checkpoints
		fields = withoutCheckpoints(fields)
	}
	args := store.SaveArgs{TTL: ttl, Fields: fields}
	if final && j.State.Terminal() {
		// The job leaves its tenant's live jobs, and its asynq task gets
		// its result (and on a single node is completed), in the same
		// round trip.
		args.Live, args.Tenant = r.claim.Live, r.claim.Tenant
		args.Task = r.taskEnd(j)
		args.Checkpoints = r.checkpoints()
	}
	r.sending(fields)
	var res store.SaveResult
	err := r.w.retryWrite(r.log, func(ctx context.Context) (err error) {
		res, err = r.w.save(ctx, j, r.token, args)
		return err
	})
	r.pmu.Lock()
	r.lastWrite = time.Now()
	if final && r.timer != nil {
		r.timer.Stop()
		r.scheduled = false
	}
	r.pmu.Unlock()
	switch {
	case err == nil:
		r.fields, r.unsaved = nil, false
		r.closed = final
		if res.TaskCompleted {
			r.w.taskEnds.completed(r.resultKey) // the task's hash, as taskEnd found it
		}
	case errors.Is(err, store.ErrFenced):
		r.closed = true
		r.stop(errFenced)
	}
	return res, err
}

// sending notes the checkpoints among the fields of a write about to be
// sent: whether or not it succeeds, the job may hold them from now on.
// The caller holds wmu.
func (r *run) sending(fields map[string][]byte) {
	for k := range fields {
		if strings.HasPrefix(k, "out:") {
			if r.written == nil {
				r.written = map[string]bool{}
			}
			r.written[k] = true
		}
	}
}

// checkpoints returns the checkpoint fields the job may hold: those it had
// when claimed and those this run sent. The caller holds wmu.
func (r *run) checkpoints() []string {
	cps := make([]string, 0, len(r.claim.Outputs)+len(r.written))
	for k := range r.claim.Outputs {
		if name := checkpointField(k); !r.written[name] {
			cps = append(cps, name)
		}
	}
	for k := range r.written {
		cps = append(cps, k)
	}
	return cps
}

// hasUnsaved reports whether the record has changes not yet written.
func (r *run) hasUnsaved() bool {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	return r.unsaved && !r.closed
}

// schedule makes sure a flush runs within FlushInterval of the last write;
// the caller holds pmu.
func (r *run) schedule() {
	if r.scheduled {
		return
	}
	r.scheduled = true
	d := min(max(r.w.cfg.FlushInterval-time.Since(r.lastWrite), 0), r.w.cfg.FlushInterval)
	r.timer = time.AfterFunc(d, r.flush)
}

// flush writes the record if it has unwritten changes or progress, and
// schedules the next flush FlushInterval later if more arrived meanwhile or
// the write failed.
func (r *run) flush() {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	r.pmu.Lock()
	progress := r.dirty && r.stage >= 0
	if r.closed || (!progress && !r.unsaved) {
		r.scheduled = false
		r.pmu.Unlock()
		return
	}
	j := r.job
	if progress {
		j.Progress = stagesProgress(r.stages, r.stage, r.frac)
		if r.partial != nil {
			j.Partial = r.partial
		}
	}
	r.dirty = false
	r.pmu.Unlock()

	r.sending(r.fields)
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	res, err := r.w.save(ctx, j, r.token, store.SaveArgs{Fields: r.fields})
	cancel()
	switch {
	case errors.Is(err, store.ErrFenced):
		r.closed = true
		r.stop(errFenced)
	case err != nil:
		if r.keeper.throttle.allow() {
			r.log.Warn("cannot write the job's record; retrying", "err", err)
		}
	default:
		r.fields, r.unsaved = nil, false
		if res.CancelRequested {
			r.stop(errCanceled)
		}
	}

	r.pmu.Lock()
	defer r.pmu.Unlock()
	r.lastWrite = time.Now()
	if err != nil && !r.closed {
		r.dirty = progress || r.dirty
	}
	r.scheduled = false
	if !r.closed && (r.dirty || r.unsaved) {
		r.scheduled = true
		r.timer = time.AfterFunc(r.w.cfg.FlushInterval, r.flush)
	}
}

// close closes the record to further writes and returns it.
func (r *run) close() *api.Job {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	r.closed = true
	return r.job
}
