package store

import (
	"context"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Event is one entry of a job's event stream: the record as written.
type Event struct {
	// ID is the stream entry id; it increases per job and is the SSE id.
	ID   string
	Data []byte
}

// Events returns up to count events of job id after event id after ("" or
// "0" = from the start), oldest first. A finished job has no stream left,
// only its final event: the record, with the id it was written with.
func (s *Store) Events(ctx context.Context, id, after string, count int64) ([]Event, error) {
	start := "-"
	if after != "" && after != "0" {
		start = "(" + after
	}
	var xr *redis.XMessageSliceCmd
	var eid *redis.StringCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		xr = p.XRangeN(ctx, EventsKey(id), start, "+", count)
		eid = p.HGet(ctx, JobKey(id), "eid")
		return nil
	})
	if err != nil && err != redis.Nil {
		return nil, redisErr("store.Events "+id, err)
	}
	msgs := xr.Val()
	if len(msgs) == 0 && eid.Val() != "" && idAfter(eid.Val(), after) {
		return s.finalEvent(ctx, id, eid.Val())
	}
	evs := make([]Event, 0, len(msgs))
	for _, m := range msgs {
		rec, _ := m.Values["rec"].(string)
		evs = append(evs, Event{ID: m.ID, Data: []byte(rec)})
	}
	return evs, nil
}

// finalEvent is the event a finished job's record was written with.
func (s *Store) finalEvent(ctx context.Context, id, eid string) ([]Event, error) {
	rec, err := s.rdb.HGet(ctx, JobKey(id), "rec").Result()
	if err == redis.Nil {
		return nil, nil
	}
	if err != nil {
		return nil, redisErr("store.Events "+id, err)
	}
	return []Event{{ID: eid, Data: []byte(rec)}}, nil
}

// idAfter reports whether stream id a sorts after b ("" and "0" sort
// before every id).
func idAfter(a, b string) bool {
	if b == "" || b == "0" {
		return true
	}
	ams, aseq, _ := strings.Cut(a, "-")
	bms, bseq, _ := strings.Cut(b, "-")
	am, _ := strconv.ParseUint(ams, 10, 64)
	bm, _ := strconv.ParseUint(bms, 10, 64)
	if am != bm {
		return am > bm
	}
	as, _ := strconv.ParseUint(aseq, 10, 64)
	bs, _ := strconv.ParseUint(bseq, 10, 64)
	return as > bs
}

// LatestEvent returns the newest event of job id in one round trip (XREVRANGE
// COUNT 1); ok is false when the stream is empty or gone.
func (s *Store) LatestEvent(ctx context.Context, id string) (ev Event, ok bool, err error) {
	msgs, err := s.rdb.XRevRangeN(ctx, EventsKey(id), "+", "-", 1).Result()
	if err != nil {
		return Event{}, false, redisErr("store.LatestEvent "+id, err)
	}
	if len(msgs) == 0 { // a finished job keeps its final event in the hash
		vals, err := s.rdb.HMGet(ctx, JobKey(id), "eid", "rec").Result()
		if err != nil {
			return Event{}, false, redisErr("store.LatestEvent "+id, err)
		}
		eid, _ := vals[0].(string)
		rec, _ := vals[1].(string)
		return Event{ID: eid, Data: []byte(rec)}, eid != "" && rec != "", nil
	}
	rec, _ := msgs[0].Values["rec"].(string)
	return Event{ID: msgs[0].ID, Data: []byte(rec)}, true, nil
}
