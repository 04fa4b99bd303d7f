package store

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/staged-dev/staged/tasks"
)

// WaitReplicated blocks until n replicas of the primary holding job id have
// everything written to that primary so far (the job's record, and on one
// node its asynq task too), or timeout passes (Redis WAIT). Replication is
// asynchronous: without it a failover can lose a job the API accepted.
// WAIT counts the writes of its own connection, so it is sent pipelined
// after a write of the job's key (a PEXPIRE refreshing its TTL), on the
// connection of the node that holds the key. Fewer replicas than n in time
// is tasks.EUNAVAILABLE.
func (s *Store) WaitReplicated(ctx context.Context, id string, n int, timeout time.Duration) error {
	var c redis.Cmdable = s.rdb
	if cc, ok := s.rdb.(*redis.ClusterClient); ok {
		m, err := cc.MasterForKey(ctx, JobKey(id))
		if err != nil {
			return redisErr("store.WaitReplicated "+id, err)
		}
		c = m
	}
	var wait *redis.Cmd
	_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.PExpire(ctx, JobKey(id), s.liveTTL())
		wait = p.Do(ctx, "WAIT", n, timeout.Milliseconds())
		return nil
	})
	if err != nil {
		return redisErr("store.WaitReplicated "+id, err)
	}
	if got, _ := wait.Int64(); got < int64(n) {
		return &tasks.Error{Code: tasks.EUNAVAILABLE,
			Message: fmt.Sprintf("the job store's replicas did not confirm the job within %v (%d of %d); it may still run: repeat the request with the same Idempotency-Key to learn its fate", timeout, got, n),
			Err:     fmt.Errorf("WAIT %d: %d replicas", n, got)}
	}
	return nil
}
