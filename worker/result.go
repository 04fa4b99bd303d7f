package worker

import (
	"encoding/json"

	"github.com/hibiken/asynq"
	"github.com/staged-dev/staged/api"
)

// taskResult is what a finished job's asynq task carries as its result, so
// that asynqmon tells succeeded, failed and canceled jobs apart.
type taskResult struct {
	State   api.State `json:"state"`
	Stage   string    `json:"stage,omitempty"`
	Attempt int       `json:"attempt"`
	Error   string    `json:"error,omitempty"`
}

// writeTaskResult sets the task's result to the job's final state and
// stage (one HSET on the task, by asynq's ResultWriter). A run that did
// not write the job's final record (handed back, taken over, retrying)
// writes none.
func (r *run) writeTaskResult(t *asynq.Task) {
	r.wmu.Lock()
	j := r.job
	res := taskResult{State: j.State, Stage: j.Stage.Name, Attempt: j.Attempt}
	if j.Error != nil {
		res.Stage, res.Error = j.Error.Stage, j.Error.Message
		if len(res.Error) > 200 {
			res.Error = res.Error[:200] + "…"
		}
	}
	r.wmu.Unlock()
	rw := t.ResultWriter()
	if !r.finished.Load() || rw == nil {
		return
	}
	b, _ := json.Marshal(res)
	if _, err := rw.Write(b); err != nil {
		r.log.Debug("cannot write the task's result for asynqmon", "err", err)
	}
}
