package store

import (
	"context"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/staged-dev/staged/tasks"
)

// TenantMaxLiveDefault is the number of live jobs (queued, running or
// waiting for a retry) a tenant may have at once.
const TenantMaxLiveDefault = 10000

// LiveKey is the sorted set of tenant's live job ids, scored by the time
// (Unix ms) their live TTL runs out; a job leaves it when it finishes. It
// hashes on the tenant, so tenants spread over a Cluster's masters.
func LiveKey(tenant string) string { return keyPrefix + "live:{" + tenant + "}" }

// admitScript adds a job to its tenant's live set unless the tenant is at
// its limit. Entries whose live TTL ran out (a job whose finish was never
// recorded) are dropped first when the set holds limit entries or more:
// below, they cannot change the answer.
// KEYS: live. ARGV: now_ms, limit, deadline_ms, id, ttl_ms.
// Returns the number of live jobs before the add; the job was added when
// that is below limit.
var admitScript = redis.NewScript(`
local n = redis.call('ZCARD', KEYS[1])
if n >= tonumber(ARGV[2]) then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
  n = redis.call('ZCARD', KEYS[1])
  if n >= tonumber(ARGV[2]) then return n end
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return n
`)

// Admit counts job id among tenant's live jobs (Create does it itself), or answers
// tasks.ERATELIMITED (429) when tenant has TenantMaxLive of them already.
// With no limit it does nothing.
func (s *Store) Admit(ctx context.Context, tenant, id string) error {
	limit := s.TenantMaxLive
	if limit <= 0 {
		return nil
	}
	now := s.now()
	ttl := s.liveTTL()
	n, err := s.evalWith(ctx, admitScript, []string{LiveKey(tenant)},
		[]any{now.UnixMilli(), limit, now.Add(ttl).UnixMilli(), id, ttl.Milliseconds()}, nil)
	if err != nil {
		return redisErr("store.Admit", err)
	}
	if c, _ := n.Int64(); c >= int64(limit) {
		return s.overLimit(tenant, c)
	}
	return nil
}

// overLimit is the answer to a submit of tenant, which has n live jobs.
func (s *Store) overLimit(tenant string, n int64) error {
	who := "this API key"
	if tenant != "" {
		who = "tenant " + strconv.Quote(tenant)
	}
	return tasks.Errorf(tasks.ERATELIMITED, "%s has %d live jobs (queued or running), the most allowed (STAGED_TENANT_MAX_LIVE=%d): wait for some to finish, or cancel some", who, n, s.TenantMaxLive)
}

// Unadmit removes job id from tenant's live jobs: it finished, or was never
// created.
func (s *Store) Unadmit(ctx context.Context, tenant, id string) error {
	return redisErr("store.Unadmit "+id, s.rdb.ZRem(ctx, LiveKey(tenant), id).Err())
}
