package store

import "github.com/redis/go-redis/v9"

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
for i, id in ipairs(ARGV) do r[i] = "` + keyPrefix + `leases:{l" .. shard(id) .. "}" end
return r`)
