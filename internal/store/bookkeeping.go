package store

import (
	"context"
	"encoding/json"
	"strconv"

	"github.com/staged-dev/staged/api"
)

// Bookkeeping is what the job hash holds besides the record that a
// takeover needs.
type Bookkeeping struct {
	Options api.Options
	// RetriesLeft is FieldRetriesLeft, or -1 when not recorded.
	RetriesLeft int
	// Takeovers is FieldTakeovers, 0 when not recorded.
	Takeovers int
}

// Bookkeeping reads job id's options, retries left and takeover count in
// one round trip (HMGET).
func (s *Store) Bookkeeping(ctx context.Context, id string) (Bookkeeping, error) {
	vals, err := s.rdb.HMGet(ctx, JobKey(id), "opts", FieldRetriesLeft, FieldTakeovers).Result()
	if err != nil {
		return Bookkeeping{}, redisErr("store.Bookkeeping "+id, err)
	}
	b := Bookkeeping{RetriesLeft: -1}
	if v, ok := vals[0].(string); ok {
		_ = json.Unmarshal([]byte(v), &b.Options)
	}
	if v, ok := vals[1].(string); ok {
		if n, err := strconv.Atoi(v); err == nil {
			b.RetriesLeft = max(n, 0)
		}
	}
	if v, ok := vals[2].(string); ok {
		b.Takeovers, _ = strconv.Atoi(v)
	}
	return b, nil
}
