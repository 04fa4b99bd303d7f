package store

import "context"

// LatestEvent returns the newest event of job id in one round trip (XREVRANGE
// COUNT 1); ok is false when the stream is empty or gone.
func (s *Store) LatestEvent(ctx context.Context, id string) (ev Event, ok bool, err error) {
	msgs, err := s.rdb.XRevRangeN(ctx, EventsKey(id), "+", "-", 1).Result()
	if err != nil {
		return Event{}, false, redisErr("store.LatestEvent "+id, err)
	}
	if len(msgs) == 0 {
		return Event{}, false, nil
	}
	rec, _ := msgs[0].Values["rec"].(string)
	return Event{ID: msgs[0].ID, Data: []byte(rec)}, true, nil
}
