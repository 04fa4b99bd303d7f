package store

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// QueuedWrites returns how many requests wait in s's combiner for a
// sender (tests).
func QueuedWrites(s *Store) int {
	if c := s.comb.Load(); c != nil {
		return len(c.reqs)
	}
	return 0
}

// ShardScript answers the lease-index shard key of each id in ARGV, as
// the claiming dequeue computes it.
var ShardScript = redis.NewScript(shardLua + `
local r = {}
for i, id in ipairs(ARGV) do r[i] = "` + keyPrefix + `leases:{l" .. leaseShard(id) .. "}" end
return r`)

// TakeSHA is the claiming dequeue's script hash.
func TakeSHA() string { return takeScript.Hash() }

// ClaimScript is Claim's script, for benchmarks to load.
var ClaimScript = claimScript

// ClaimIn queues the one-node claim of job id (generation 1) on p, as
// Claim sends it.
func ClaimIn(ctx context.Context, s *Store, p redis.Pipeliner, id string, lease time.Duration) {
	claimScript.EvalSha(ctx, p, []string{JobKey(id), LeaseKey(id), LeasesKey(id)},
		1, lease.Milliseconds(), s.now().Add(lease).UnixMilli(), s.liveTTL().Milliseconds(), id)
}

// LeaseShardOf is the number of id's lease-index shard.
func LeaseShardOf(id string) int { return leaseShard(id) }
