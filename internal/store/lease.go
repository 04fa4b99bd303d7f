package store

import "context"

// Release gives up the lease held with token without finishing the job, so
// that the next attempt of the same task generation (an asynq retry) can
// claim it at once instead of finding it busy, and drops the job from the
// lease index. A lease held with another token is left alone.
func (s *Store) Release(ctx context.Context, id string, token int64) error {
	n, err := releaseScript.Run(ctx, s.rdb, []string{LeaseKey(id)}, token).Int64()
	if err != nil || n == 0 {
		return redisErr("store.Release "+id, err)
	}
	return redisErr("store.Release "+id, s.rdb.ZRem(ctx, LeasesKey, id).Err())
}
