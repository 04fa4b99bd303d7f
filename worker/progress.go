package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/staged-dev/staged/internal/store"

	"github.com/staged-dev/staged/tasks"
)

// stageProgress is the tasks.Progress of one run of one stage. Report only
// records the latest fraction and partial result in memory; a flush writes
// them at most once per FlushInterval, so a stage may report as often as it
// likes. Stage boundaries and terminal states are written at once by the
// runner and include the latest partial result. Reports from a stage that
// has returned are ignored.
type stageProgress struct {
	r *run
	k int
}

// Report implements tasks.Progress.
func (p stageProgress) Report(fraction float64, partial any) {
	r := p.r
	var b json.RawMessage
	var bad error
	if partial != nil {
		var err error
		b, err = tasks.Marshal(partial)
		switch {
		case err != nil:
			bad = tasks.Permanent(fmt.Errorf("stage %s reported a partial result that is not JSON: %v", r.stages[p.k].Name, err))
		case len(b) > r.w.cfg.MaxPayload:
			bad = tasks.Permanent(fmt.Errorf("stage %s reported a partial result of %d bytes (as JSON), over the %d-byte limit%s",
				r.stages[p.k].Name, len(b), r.w.cfg.MaxPayload, payloadHint))
		}
	}
	r.pmu.Lock()
	defer r.pmu.Unlock()
	if r.stage != p.k {
		return
	}
	if bad != nil {
		r.stop(bad)
		return
	}
	r.frac = fraction
	if b != nil {
		r.partial = b
	}
	r.dirty = true
	if !r.scheduled {
		r.scheduled = true
		time.AfterFunc(max(r.w.cfg.FlushInterval-time.Since(r.lastWrite), 0), r.flush)
	}
}

// setStage makes stage k (-1: none) the one whose reports count.
func (r *run) setStage(k int) {
	r.pmu.Lock()
	defer r.pmu.Unlock()
	r.stage, r.frac = k, 0
}

// flush writes the latest progress, if any is unwritten, and schedules
// the next flush FlushInterval later if more arrived meanwhile.
func (r *run) flush() {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	r.pmu.Lock()
	if r.closed || !r.dirty || r.stage < 0 {
		r.scheduled = false
		r.pmu.Unlock()
		return
	}
	k, frac, partial := r.stage, r.frac, r.partial
	r.dirty = false
	r.pmu.Unlock()

	j := r.job
	j.Progress = tasks.StagesProgress(r.stages, k, frac)
	if partial != nil {
		j.Partial = partial
	}
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	res, err := r.w.store.Save(ctx, j, r.token, store.SaveArgs{})
	cancel()
	switch {
	case errors.Is(err, store.ErrFenced):
		r.closed = true
		r.stop(errFenced)
	case err != nil:
		if r.keeper.throttle.allow() {
			r.log.Warn("cannot write the job's progress; retrying", "err", err)
		}
	case res.CancelRequested:
		r.stop(errCanceled)
	}

	r.pmu.Lock()
	defer r.pmu.Unlock()
	r.lastWrite = time.Now()
	if err != nil && !r.closed {
		r.dirty = true
	}
	r.scheduled = r.dirty && !r.closed
	if r.scheduled {
		time.AfterFunc(r.w.cfg.FlushInterval, r.flush)
	}
}
