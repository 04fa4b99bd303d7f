package store

import (
	"context"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Idempotent records that tenant's Idempotency-Key key created job id for a
// request body whose digest is sum. When the key was used before it returns
// the earlier job's id and whether the earlier body's digest matched, and
// created is false.
func (s *Store) Idempotent(ctx context.Context, tenant, key, id, sum string) (prevID string, sameBody, created bool, err error) {
	k := IdempotencyKey(tenant, key)
	ok, err := s.rdb.SetNX(ctx, k, id+" "+sum, IdempotencyTTL).Result()
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
	pid, psum, _ := strings.Cut(v, " ")
	return pid, psum == sum, false, nil
}

// ForgetIdempotent removes tenant's key, when the job it named was not
// created after all.
func (s *Store) ForgetIdempotent(ctx context.Context, tenant, key string) {
	s.rdb.Del(ctx, IdempotencyKey(tenant, key))
}
