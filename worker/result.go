package worker

import (
	"context"
	"encoding/json"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/internal/store"
)

// taskResult is what a finished job's asynq task carries as its result, so
// that asynqmon tells succeeded, failed and canceled jobs apart.
type taskResult struct {
	State   api.State `json:"state"`
	Stage   string    `json:"stage,omitempty"`
	Attempt int       `json:"attempt"`
	Error   string    `json:"error,omitempty"`
}

// taskResultKey is the hash of the asynq task that ctx runs, where asynq's
// ResultWriter writes the task's result (asynq's key layout,
// asynq:{queue}:t:id), or "" outside a task.
func taskResultKey(ctx context.Context) string {
	id, ok := asynq.GetTaskID(ctx)
	q, ok2 := asynq.GetQueueName(ctx)
	if !ok || !ok2 {
		return ""
	}
	return "asynq:{" + q + "}:t:" + id
}

// taskEnd returns the asynq task of the job's final write, j, with its
// result set to the job's final state and stage, as asynq's ResultWriter
// would (asynqmon shows it); nil outside a task. A run that does not write
// the job's final record (handed back, taken over, retrying) writes none.
// When the handler returns nil after this write (succeeded, canceled), the
// write also completes the task on a single node, and asynq's own
// MarkAsComplete is answered by taskEnds without a round trip.
func (r *run) taskEnd(j *api.Job) *store.TaskEnd {
	if r.resultKey == "" {
		return nil
	}
	q, ok := asynq.GetQueueName(r.ctx)
	id, ok2 := asynq.GetTaskID(r.ctx)
	if !ok || !ok2 {
		return nil
	}
	res := taskResult{State: j.State, Stage: j.Stage.Name, Attempt: j.Attempt}
	if j.Error != nil {
		res.Stage, res.Error = j.Error.Stage, j.Error.Message
		if len(res.Error) > 200 {
			res.Error = res.Error[:200] + "…"
		}
	}
	b, _ := json.Marshal(res)
	return &store.TaskEnd{Queue: q, ID: id, Result: b, Retention: r.retention(), Msg: r.claim.TaskMsg,
		Complete: (j.State == api.StateSucceeded || j.State == api.StateCanceled) && r.w.sameRedis()}
}

// sameRedis reports whether asynq's Redis is known to be the store's, so
// that a final write may complete the job's task in the store's script (as
// the API's sameRedis decides for a submit's enqueue).
func (w *Worker) sameRedis() bool {
	if w.asynqRdb == w.rdb {
		return true
	}
	a, ok := w.rdb.(*redis.Client)
	b, ok2 := w.asynqRdb.(*redis.Client)
	if !ok || !ok2 {
		return false
	}
	ao, bo := a.Options(), b.Options()
	return ao.Addr == bo.Addr && ao.DB == bo.DB // "FailoverClient" for both: the one Sentinel URL
}
