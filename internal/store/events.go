package store

import "context"

// Event is one entry of a job's event stream: the record as written.
type Event struct {
	// ID is the stream entry id; it increases per job and is the SSE id.
	ID   string
	Data []byte
}

// Events returns up to count events of job id after event id after ("" or
// "0" = from the start), oldest first.
func (s *Store) Events(ctx context.Context, id, after string, count int64) ([]Event, error) {
	start := "-"
	if after != "" && after != "0" {
		start = "(" + after
	}
	msgs, err := s.rdb.XRangeN(ctx, EventsKey(id), start, "+", count).Result()
	if err != nil {
		return nil, redisErr("store.Events "+id, err)
	}
	evs := make([]Event, 0, len(msgs))
	for _, m := range msgs {
		rec, _ := m.Values["rec"].(string)
		evs = append(evs, Event{ID: m.ID, Data: []byte(rec)})
	}
	return evs, nil
}

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
