package worker

import (
	"context"
	"encoding/json"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

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

// writeTaskResult returns the command that sets the task's result to the
// job's final state and stage, j, as asynq's ResultWriter does (one HSET on
// the task), for the round trip of the job's final write; nil outside a
// task. A run that does not write the job's final record (handed back,
// taken over, retrying) writes none.
func (r *run) writeTaskResult(j *api.Job) func(redis.Pipeliner) {
	if r.resultKey == "" {
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
	return func(p redis.Pipeliner) { p.HSet(context.Background(), r.resultKey, "result", b) }
}
