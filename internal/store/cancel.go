package store

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/tasks"
)

// Canceled is what Cancel did.
type Canceled struct {
	Job *api.Job
	// Idle is true when the job was queued or waiting for a retry and is now
	// canceled; its asynq task (generation Gen, on api.Job.Queue) can be deleted.
	// Otherwise a running job was asked to stop and its worker will record
	// the cancel within seconds.
	Idle bool
	Gen  int64
}

// Cancel cancels job id for tenant ("" = any). It returns tasks.ENOTFOUND for an
// unknown, expired or other tenant's job and tasks.ECONFLICT for a finished one.
// The cancel flag is durable: no later claim or retry runs the job.
func (s *Store) Cancel(ctx context.Context, id, tenant string) (*Canceled, error) {
	if !api.ValidID(id) {
		return nil, tasks.Errorf(tasks.ENOTFOUND, "no job with id %q", id)
	}
	pub, err := s.shardArg(ctx, id)
	if err != nil {
		return nil, err
	}
	res, err := cancelScript.Run(ctx, s.rdb, []string{JobKey(id)}, tenant, pub).StringSlice()
	if err != nil {
		return nil, redisErr("store.Cancel "+id, err)
	}
	switch res[0] {
	case "missing":
		return nil, tasks.Errorf(tasks.ENOTFOUND, "no job with id %s (unknown, expired, or not yours)", id)
	case "finished":
		j, err := api.DecodeJob([]byte(res[1]))
		if err != nil {
			return nil, err
		}
		return nil, tasks.Errorf(tasks.ECONFLICT, "job %s already finished (%s); only queued or running jobs can be canceled", id, j.State)
	}
	token, _ := strconv.ParseInt(res[1], 10, 64)
	j, err := api.DecodeJob([]byte(res[2]))
	if err != nil {
		return nil, err
	}
	var opts api.Options
	_ = json.Unmarshal([]byte(res[3]), &opts)
	gen, _ := strconv.ParseInt(res[4], 10, 64)
	if res[0] == "running" {
		j.CancelRequested = true
		return &Canceled{Job: j, Gen: gen}, nil
	}
	j.MarkCanceled(s.now())
	_, err = s.Save(ctx, j, token, SaveArgs{TTL: RetentionOr(opts.Retention)})
	if errors.Is(err, ErrFenced) {
		// A worker claimed it meanwhile; it sees the flag and records the cancel.
		j, err = s.Get(ctx, id, "")
		if err != nil {
			return nil, err
		}
		j.CancelRequested = !j.State.Terminal()
		return &Canceled{Job: j, Gen: gen}, nil
	}
	if err != nil {
		return nil, err
	}
	return &Canceled{Job: j, Idle: true, Gen: gen}, nil
}

// CancelFlag reports whether job id was asked to stop (its durable cancel
// flag, as lease renewals and record writes report it).
func (s *Store) CancelFlag(ctx context.Context, id string) (bool, error) {
	v, err := s.rdb.HGet(ctx, JobKey(id), "cancel").Result()
	if err == redis.Nil {
		return false, nil
	}
	if err != nil {
		return false, redisErr("store.CancelFlag "+id, err)
	}
	return v == "1", nil
}
