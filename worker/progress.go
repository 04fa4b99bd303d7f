package worker

import (
	"encoding/json"
	"fmt"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/tasks"
)

// stageProgress is the tasks.Progress of one run of one stage. Report only
// records the latest fraction and partial result in memory; a flush writes
// them at most once per FlushInterval, so a stage may report as often as it
// likes. The flush also carries the stage boundaries noted meanwhile (see
// write.go); every record write includes the latest partial result.
// Reports from a stage that has returned are ignored.
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
		b, err = api.Marshal(partial)
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
	r.schedule()
}

// setStage makes stage k (-1: none) the one whose reports count.
func (r *run) setStage(k int) {
	r.pmu.Lock()
	defer r.pmu.Unlock()
	r.stage, r.frac = k, 0
}
