package store

import (
	"context"
	"encoding/json"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/tasks"
)

// rerunScript moves a failed or canceled job to a new task generation and
// fencing token, queued again, with its cancel flag cleared; its
// checkpoints (out:K) stay.
// KEYS: job. ARGV: tenant (” = any).
// Returns {'missing'}, {'conflict', state} or {'ok', token, gen, rec, opts, state}.
var rerunScript = redis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'state', 'tenant', 'rec', 'opts')
if not h[3] then return {'missing'} end
if ARGV[1] ~= '' and h[2] ~= ARGV[1] then return {'missing'} end
if h[1] ~= 'failed' and h[1] ~= 'canceled' then return {'conflict', h[1]} end
local t = redis.call('HINCRBY', KEYS[1], 'token', 1)
local g = redis.call('HINCRBY', KEYS[1], 'gen', 1)
redis.call('HSET', KEYS[1], 'state', 'queued')
redis.call('HDEL', KEYS[1], 'cancel', 'handoff')
return {'ok', tostring(t), tostring(g), h[3], h[4] or '{}', h[1]}
`)

// Rerun is a failed or canceled job queued again by Store.Rerun.
type Rerun struct {
	// Job is the record as saved: queued, the stages that succeeded kept,
	// the others pending.
	Job *api.Job
	// Previous is the record before the rerun, to restore it with Token
	// should the new task not be enqueued.
	Previous *api.Job
	Token    int64
	// Gen is the task generation to enqueue.
	Gen     int64
	Options api.Options
}

// Rerun queues failed or canceled job id again, for tenant ("" = any), as
// a new attempt of the same job that starts at its first stage that did not
// succeed (the checkpoints of the others are kept until the job expires).
// The caller must enqueue generation Rerun.Gen. It returns tasks.ENOTFOUND
// for an unknown, expired or other tenant's job and tasks.ECONFLICT for a
// queued, running, retrying or succeeded one.
func (s *Store) Rerun(ctx context.Context, id, tenant string) (*Rerun, error) {
	if !api.ValidID(id) {
		return nil, tasks.Errorf(tasks.ENOTFOUND, "no job with id %q", id)
	}
	res, err := rerunScript.Run(ctx, s.rdb, []string{JobKey(id)}, tenant).StringSlice()
	if err != nil {
		return nil, redisErr("store.Rerun "+id, err)
	}
	switch res[0] {
	case "missing":
		return nil, tasks.Errorf(tasks.ENOTFOUND, "no job with id %s (unknown, expired, or not yours)", id)
	case "conflict":
		return nil, tasks.Errorf(tasks.ECONFLICT, "job %s is %s; only a failed or canceled job can be run again", id, res[1])
	}
	r := &Rerun{}
	r.Token, _ = strconv.ParseInt(res[1], 10, 64)
	r.Gen, _ = strconv.ParseInt(res[2], 10, 64)
	if r.Previous, err = api.DecodeJob([]byte(res[3])); err != nil {
		return nil, err
	}
	r.Job, _ = api.DecodeJob([]byte(res[3]))
	_ = json.Unmarshal([]byte(res[4]), &r.Options)
	ResetForRerun(r.Job)
	if _, err := s.Save(ctx, r.Job, r.Token, SaveArgs{}); err != nil {
		return nil, err
	}
	return r, nil
}

// ResetForRerun makes j a queued job again: the stages that succeeded stay
// (the worker skips them and starts from their checkpoint), the others are
// pending; the error and the end time go. Attempt stays: the worker counts
// the rerun as the next attempt.
func ResetForRerun(j *api.Job) {
	j.State, j.Error, j.Result, j.FinishedAt, j.NextAttemptAt, j.CancelRequested = api.StateQueued, nil, nil, nil, nil, false
	done := 0
	for i := range j.Stages {
		st := &j.Stages[i]
		if st.State == api.StateSucceeded && done == i {
			done++
			continue
		}
		st.State, st.StartedAt, st.FinishedAt = api.StatePending, nil, nil
	}
	j.Stage = api.StageRef{Total: len(j.Stages)}
	if done > 0 {
		j.Stage = api.StageRef{Index: done, Name: j.Stages[done-1].Name, Total: len(j.Stages)}
	}
	if len(j.Stages) > 0 {
		j.Progress = float64(done) / float64(len(j.Stages))
	}
}

// Restore puts back the record a Rerun replaced, when its task could not be
// enqueued: the job is failed or canceled again, as before.
func (s *Store) Restore(ctx context.Context, r *Rerun) error {
	_, err := s.Save(ctx, r.Previous, r.Token, SaveArgs{TTL: RetentionOr(r.Options.Retention)})
	return err
}
