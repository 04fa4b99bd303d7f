package store

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// An Idempotency-Key's value is "<job id> <body digest> <unix ms taken>".

// Idempotent records that tenant's Idempotency-Key key created job id for a
// request body whose digest is sum. When the key was used before it returns
// the earlier job's id and whether the earlier body's digest matched, and
// created is false.
func (s *Store) Idempotent(ctx context.Context, tenant, key, id, sum string) (prevID string, sameBody, created bool, err error) {
	k := IdempotencyKey(tenant, key)
	ok, err := s.rdb.SetNX(ctx, k, s.idemValue(id, sum), IdempotencyTTL).Result()
	if err != nil {
		return "", false, false, redisErr("store.Idempotent", err)
	}
	if ok {
		return id, true, true, nil
	}
	v, err := s.rdb.Get(ctx, k).Result()
	if err == redis.Nil {
		return s.Idempotent(ctx, tenant, key, id, sum)
	}
	if err != nil {
		return "", false, false, redisErr("store.Idempotent", err)
	}
	pid, rest, _ := strings.Cut(v, " ")
	psum, _, _ := strings.Cut(rest, " ")
	return pid, psum == sum, false, nil
}

func (s *Store) idemValue(id, sum string) string {
	return id + " " + sum + " " + strconv.FormatInt(s.now().UnixMilli(), 10)
}

// reclaimScript hands an Idempotency-Key over to a new job if it still
// names job ARGV[1] and was taken before ARGV[2] (unix ms); an old value
// without a time counts as taken long ago.
// KEYS: the key. ARGV: prev id, taken-before ms, new value, ttl ms.
var reclaimScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then
  local id, sum, ms = string.match(v, '^(%S+) (%S+) ?(%d*)$')
  if id ~= ARGV[1] then return 0 end
  if ms and ms ~= '' and tonumber(ms) >= tonumber(ARGV[2]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
return 1
`)

// ReclaimIdempotent points tenant's key, which names job prev whose record
// does not exist, at the new job id instead, if the key was taken more than
// olderThan ago: then the submit that took it has given up (its create
// failed, and so did its clean-up) or its job has expired, and the key must
// not stay stuck on a job that does not exist. A younger key may belong to
// a submit still under way, and is left alone (ok false). Only one of
// several concurrent callers wins.
func (s *Store) ReclaimIdempotent(ctx context.Context, tenant, key, prev, id, sum string, olderThan time.Duration) (ok bool, err error) {
	before := s.now().Add(-olderThan).UnixMilli()
	n, err := reclaimScript.Run(ctx, s.rdb, []string{IdempotencyKey(tenant, key)},
		prev, before, s.idemValue(id, sum), IdempotencyTTL.Milliseconds()).Int()
	if err != nil {
		return false, redisErr("store.ReclaimIdempotent", err)
	}
	return n == 1, nil
}

// ForgetIdempotent removes tenant's key, when the job it named was not
// created after all.
func (s *Store) ForgetIdempotent(ctx context.Context, tenant, key string) {
	s.rdb.Del(ctx, IdempotencyKey(tenant, key))
}
