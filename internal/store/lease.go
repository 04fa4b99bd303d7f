package store

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/staged-dev/staged/api"
)

// Release gives up the lease held with token without finishing the job, so
// that the next attempt of the same task generation (an asynq retry) can
// claim it at once instead of finding it busy, and drops the job from the
// lease index. A lease held with another token is left alone.
func (s *Store) Release(ctx context.Context, id string, token int64) error {
	n, err := releaseScript.Run(ctx, s.rdb, []string{LeaseKey(id)}, token).Int64()
	if err != nil || n == 0 {
		return redisErr("store.Release "+id, err)
	}
	return redisErr("store.Release "+id, s.rdb.ZRem(ctx, LeasesKey(id), id).Err())
}

// indexLease returns the commands that record id's lease deadline in the
// lease index, to pipeline with a claim or a renewal.
func (s *Store) indexLease(ctx context.Context, id string, lease time.Duration) func(redis.Pipeliner) {
	deadline := s.now().Add(lease).UnixMilli()
	return func(p redis.Pipeliner) {
		p.ZAdd(ctx, LeasesKey(id), redis.Z{Score: float64(deadline), Member: id})
		p.Expire(ctx, LeasesKey(id), s.liveTTL())
	}
}

// Renew extends the caller's lease. It returns ErrFenced when the job has a
// new owner, and cancel=true when a cancel was requested.
func (s *Store) Renew(ctx context.Context, id string, token int64, lease time.Duration) (cancel bool, err error) {
	// Pipelined with the index entry; a fenced renewal's entry is corrected
	// by the new owner's next renewal.
	cmd, err := s.evalWith(ctx, renewScript, []string{LeaseKey(id), JobKey(id)}, []any{token, lease.Milliseconds()}, s.indexLease(ctx, id, lease))
	if err != nil {
		return false, redisErr("store.Renew "+id, err)
	}
	n, err := cmd.Int64()
	if err != nil {
		return false, redisErr("store.Renew "+id, err)
	}
	if n < 0 {
		return false, ErrFenced
	}
	return n == 1, nil
}

// HandoffOutcome says what a hand-off found.
type HandoffOutcome string

// Hand-off outcomes.
const (
	// HandoffOK: the caller owns the job with Handoff.Token and must save
	// Handoff.Job and enqueue generation Handoff.Gen.
	HandoffOK HandoffOutcome = "handoff"
	// HandoffEnqueue: a hand-off is under way; just make sure generation
	// Handoff.Gen is enqueued.
	HandoffEnqueue HandoffOutcome = "enqueue"
	HandoffAlive   HandoffOutcome = "alive"   // the owner's lease is live: nothing to do
	HandoffMissing HandoffOutcome = "missing" // no record: nothing to do
	HandoffDone    HandoffOutcome = "done"    // already finished: nothing to do
	HandoffFenced  HandoffOutcome = "fenced"  // the caller's token is stale: nothing to do
)

// Handoff is what a hand-off to a new task generation found.
type Handoff struct {
	Outcome         HandoffOutcome
	Token, Gen      int64
	Job             *api.Job
	CancelRequested bool
}

// Handoff moves the job to a new task generation and fencing token, so its
// current owner can no longer write. token 0 means takeover: only if the
// owner's lease has lapsed. A non-zero token is a voluntary hand-back by the
// owner holding that token.
func (s *Store) Handoff(ctx context.Context, id string, token int64) (*Handoff, error) {
	arg := ""
	if token != 0 {
		arg = strconv.FormatInt(token, 10)
	}
	res, err := handoffScript.Run(ctx, s.rdb, []string{JobKey(id), LeaseKey(id)}, arg).StringSlice()
	if err != nil {
		return nil, redisErr("store.Handoff "+id, err)
	}
	h := &Handoff{Outcome: HandoffOutcome(res[0])}
	switch h.Outcome {
	case HandoffEnqueue:
		h.Gen, _ = strconv.ParseInt(res[1], 10, 64)
	case HandoffOK:
		h.Token, _ = strconv.ParseInt(res[1], 10, 64)
		h.Gen, _ = strconv.ParseInt(res[2], 10, 64)
		if h.Job, err = api.DecodeJob([]byte(res[3])); err != nil {
			return nil, err
		}
		h.CancelRequested = res[4] == "1"
	}
	return h, nil
}

// LapsedLeases returns up to n ids of running jobs whose lease deadline has
// passed, from every shard of the lease index (one pipelined round trip;
// on a Cluster one per master).
func (s *Store) LapsedLeases(ctx context.Context, n int64) ([]string, error) {
	by := &redis.ZRangeBy{Min: "-inf", Max: strconv.FormatInt(s.now().UnixMilli(), 10), Count: n}
	cmds := make([]*redis.StringSliceCmd, LeaseShards)
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range cmds {
			cmds[i] = p.ZRangeByScore(ctx, LeasesShardKey(i), by)
		}
		return nil
	})
	if err != nil {
		return nil, redisErr("store.LapsedLeases", err)
	}
	var ids []string
	for _, c := range cmds {
		for _, id := range c.Val() {
			if int64(len(ids)) < n {
				ids = append(ids, id)
			}
		}
	}
	return ids, nil
}

// Untrack removes id from the lease index.
func (s *Store) Untrack(ctx context.Context, id string) error {
	return redisErr("store.Untrack "+id, s.rdb.ZRem(ctx, LeasesKey(id), id).Err())
}

// LeaseCount returns the number of jobs in the lease index, over all shards.
func (s *Store) LeaseCount(ctx context.Context) (int64, error) {
	cmds := make([]*redis.IntCmd, LeaseShards)
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range cmds {
			cmds[i] = p.ZCard(ctx, LeasesShardKey(i))
		}
		return nil
	})
	var n int64
	for _, c := range cmds {
		n += c.Val()
	}
	return n, redisErr("store.LeaseCount", err)
}

// untrackLapsedScript removes a job from the lease index only while its
// deadline has passed. KEYS: the index. ARGV: id, now (unix ms).
var untrackLapsedScript = redis.NewScript(`
local d = redis.call('ZSCORE', KEYS[1], ARGV[1])
if d and tonumber(d) <= tonumber(ARGV[2]) then return redis.call('ZREM', KEYS[1], ARGV[1]) end
return 0
`)

// UntrackLapsed removes id from the lease index if its deadline has passed:
// the reconciler's clean-up after it enqueued a job's task must not remove
// the entry a worker claiming that task has just written (the job would
// never be taken over again if that worker died).
func (s *Store) UntrackLapsed(ctx context.Context, id string) error {
	err := untrackLapsedScript.Run(ctx, s.rdb, []string{LeasesKey(id)}, id, s.now().UnixMilli()).Err()
	return redisErr("store.UntrackLapsed "+id, err)
}
