package store

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/tasks"
)

// The tenant job index (TenantJobsKey): one sorted set per tenant, written
// with the record at submit (O(log N)); its members never change after
// that, so retries, takeovers, cancels and reruns cannot make it wrong —
// a job's state, type and queue are read from the job's own hash when
// listing. Every write also drops the entries older than IndexHorizon and
// sets the key's TTL to IndexHorizon: a job leaves the index at the latest
// IndexHorizon after its creation, and the listing skips (and removes) the
// entries whose job has expired before that.
const (
	// IndexHorizon bounds how long an entry stays in a tenant's index: the
	// live TTL plus the longest retention a submit may ask for (30 days).
	IndexHorizon = LiveTTLDefault + 30*24*time.Hour
	// ListLimitDefault and ListLimitMax bound a listing page.
	ListLimitDefault = 50
	ListLimitMax     = 500
	// ListScanMax is the most index entries one listing request reads. A
	// filtered page that meets it ends early, with fewer jobs than asked
	// and a Next cursor where it stopped: filters cost what they scan.
	ListScanMax = 5000
	// CountScanMax is the most jobs Counts reads; beyond, the counts cover
	// the newest CountScanMax jobs and say so.
	CountScanMax = 10000

	listBatch = 200
	msDigits  = 13
)

// indexMember is the index entry of job id created at t.
func indexMember(t time.Time, id string) string {
	return string(appendIndexMember(make([]byte, 0, msDigits+1+len(id)), t, id))
}

// appendIndexMember appends indexMember(t, id) to b: the creation time in
// Unix ms, zero-padded to msDigits digits (as %0*d pads a negative number:
// the sign first), ":", the id.
func appendIndexMember(b []byte, t time.Time, id string) []byte {
	ms := t.UnixMilli()
	var d [24]byte
	digits := strconv.AppendInt(d[:0], ms, 10)
	if ms < 0 {
		b = append(b, '-')
		digits = digits[1:]
		for range msDigits - 1 - len(digits) {
			b = append(b, '0')
		}
	} else {
		for range msDigits - len(digits) {
			b = append(b, '0')
		}
	}
	b = append(b, digits...)
	b = append(b, ':')
	return append(b, id...)
}

// indexJob returns the commands that add j to tenant's index, trim the
// entries past IndexHorizon and refresh the index's TTL.
func (s *Store) indexJob(ctx context.Context, j *api.Job, tenant string) func(redis.Pipeliner) error {
	key := TenantJobsKey(tenant)
	old := fmt.Sprintf("(%0*d", msDigits, s.now().Add(-IndexHorizon).UnixMilli())
	return func(p redis.Pipeliner) error {
		p.ZAdd(ctx, key, redis.Z{Member: indexMember(j.CreatedAt, j.ID)})
		p.ZRemRangeByLex(ctx, key, "-", old)
		p.PExpire(ctx, key, IndexHorizon)
		return nil
	}
}

// ListQuery selects a page of a tenant's jobs. Zero fields do not filter.
type ListQuery struct {
	Tenant string
	// States, Types and Queues: a job matches when its value is any of the
	// listed ones.
	States []api.State
	Types  []string
	Queues []string
	// CreatedAfter and CreatedBefore bound the creation time, both
	// exclusive, at millisecond precision.
	CreatedAfter, CreatedBefore time.Time
	// Limit is the page size: 0 means ListLimitDefault, at most ListLimitMax.
	Limit int
	// Cursor continues a listing where the page that returned it ended.
	Cursor string
}

// ListPage is one page of a listing, newest job first.
type ListPage struct {
	Jobs []*api.Job
	// Next is the cursor of the next page; "" when there is none.
	Next string
}

// ValidCursor reports whether c has the form of a listing cursor.
func ValidCursor(c string) bool {
	ms, id, ok := strings.Cut(c, ":")
	if !ok || len(ms) != msDigits || !api.ValidID(id) {
		return false
	}
	_, err := strconv.ParseUint(ms, 10, 64)
	return err == nil
}

// List returns a page of q.Tenant's jobs, newest first. It reads the index
// in batches, the filter fields of each batch in one pipeline, and the
// records of the matching jobs in another; entries whose job has expired
// are removed from the index on the way. Each page continues strictly
// after the previous one's last entry, so jobs submitted meanwhile (newer)
// never shift a listing: no duplicates, no gaps. Returns tasks.EINVALID for
// a malformed cursor.
func (s *Store) List(ctx context.Context, q ListQuery) (*ListPage, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = ListLimitDefault
	}
	limit = min(limit, ListLimitMax)
	key := TenantJobsKey(q.Tenant)
	hi, lo := "+", "-"
	if !q.CreatedBefore.IsZero() {
		hi = fmt.Sprintf("(%0*d", msDigits, max(q.CreatedBefore.UnixMilli(), 0))
	}
	if q.Cursor != "" {
		if !ValidCursor(q.Cursor) {
			return nil, &tasks.Error{Code: tasks.EINVALID, Field: "cursor", Message: fmt.Sprintf("cursor %q is not one this API gave out; follow the next link of a page", q.Cursor)}
		}
		if hi == "+" || "("+q.Cursor < hi {
			hi = "(" + q.Cursor
		}
	}
	if !q.CreatedAfter.IsZero() {
		// ';' sorts after ':', so every member of that millisecond is excluded.
		lo = fmt.Sprintf("(%0*d;", msDigits, max(q.CreatedAfter.UnixMilli(), 0))
	}
	page := &ListPage{Jobs: []*api.Job{}}
	scanned := 0
	for scanned < ListScanMax {
		n := min(listBatch, ListScanMax-scanned)
		members, err := s.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{Key: key, Start: hi, Stop: lo, ByLex: true, Rev: true, Count: int64(n)}).Result()
		if err != nil {
			return nil, redisErr("store.List", err)
		}
		last, full, err := s.listBatch(ctx, q, key, members, limit, page)
		if err != nil {
			return nil, err
		}
		scanned += last
		if full {
			page.Next = members[last-1]
			return page, nil
		}
		if len(members) < n {
			return page, nil // the end of the range
		}
		hi = "(" + members[len(members)-1]
	}
	page.Next = hi[1:]
	return page, nil
}

// listBatch adds the jobs of members that match q to page until it holds
// limit jobs. It returns how many members it used up and whether the page
// is full.
func (s *Store) listBatch(ctx context.Context, q ListQuery, key string, members []string, limit int, page *ListPage) (int, bool, error) {
	ids := make([]string, len(members))
	for i, m := range members {
		_, ids[i], _ = strings.Cut(m, ":")
	}
	candidates := make([]int, 0, len(ids)) // indexes into members
	if len(q.States)+len(q.Types)+len(q.Queues) > 0 {
		cmds := make([]*redis.SliceCmd, len(ids))
		if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, id := range ids {
				cmds[i] = p.HMGet(ctx, JobKey(id), "state", "type", "queue")
			}
			return nil
		}); err != nil {
			return 0, false, redisErr("store.List", err)
		}
		for i, c := range cmds {
			// The hash's fields narrow; the record decides (below). A job
			// written before the fields existed is decided by its record.
			if v := c.Val(); v[0] == nil || (q.matchState(api.State(str(v[0]))) && q.match(q.Types, v[1]) && q.match(q.Queues, v[2])) {
				candidates = append(candidates, i)
			}
		}
	} else {
		for i := range ids {
			candidates = append(candidates, i)
		}
	}
	recs := make([]*redis.SliceCmd, len(candidates))
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for k, i := range candidates {
			recs[k] = p.HMGet(ctx, JobKey(ids[i]), "rec", "tenant", "state")
		}
		return nil
	}); err != nil {
		return 0, false, redisErr("store.List", err)
	}
	var gone []any
	defer func() { s.trim(ctx, key, gone) }()
	for k, c := range recs {
		i := candidates[k]
		v := c.Val()
		if v[0] == nil || str(v[1]) != q.Tenant {
			gone = append(gone, members[i])
			continue
		}
		j, err := api.DecodeJob([]byte(str(v[0])))
		if err != nil {
			continue
		}
		// The hash's state is the job's state: a claim marks it running
		// before the worker's first record write.
		st := api.State(str(v[2]))
		if st == "" {
			st = j.State
		}
		if !q.matchState(st) || !q.match(q.Types, j.Type) || !q.match(q.Queues, j.Queue) {
			continue
		}
		j.State = st // the listing shows the state it filtered on
		page.Jobs = append(page.Jobs, j)
		if len(page.Jobs) == limit {
			return i + 1, true, nil
		}
	}
	return len(members), false, nil
}

// trim removes index entries whose job has expired; best effort (the next
// listing tries again).
func (s *Store) trim(ctx context.Context, key string, members []any) {
	if len(members) > 0 {
		_ = s.rdb.ZRem(ctx, key, members...).Err()
	}
}

func (q ListQuery) matchState(st api.State) bool {
	return len(q.States) == 0 || slices.Contains(q.States, st)
}

func (q ListQuery) match(set []string, v any) bool {
	if len(set) == 0 {
		return true
	}
	s, ok := v.(string)
	if !ok {
		return v == nil // unknown until the record is read
	}
	return slices.Contains(set, s)
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// Counts is how many of a tenant's jobs are in each state.
type Counts struct {
	States map[api.State]int
	// Complete is false when the tenant has more than CountScanMax jobs:
	// the counts then cover the newest CountScanMax.
	Complete bool
}

// Counts counts tenant's jobs by state. It costs one HGET per job in the
// index (pipelined, 500 a round trip), up to CountScanMax: cheap for the
// listing's first page of a tenant with thousands of jobs, and bounded
// beyond (see Counts.Complete).
func (s *Store) Counts(ctx context.Context, tenant string) (*Counts, error) {
	key := TenantJobsKey(tenant)
	members, err := s.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{Key: key, Start: "+", Stop: "-", ByLex: true, Rev: true, Count: CountScanMax + 1}).Result()
	if err != nil {
		return nil, redisErr("store.Counts", err)
	}
	c := &Counts{States: map[api.State]int{}, Complete: len(members) <= CountScanMax}
	members = members[:min(len(members), CountScanMax)]
	for start := 0; start < len(members); start += 500 {
		chunk := members[start:min(start+500, len(members))]
		cmds := make([]*redis.SliceCmd, len(chunk))
		if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, m := range chunk {
				_, id, _ := strings.Cut(m, ":")
				cmds[i] = p.HMGet(ctx, JobKey(id), "state", "tenant")
			}
			return nil
		}); err != nil {
			return nil, redisErr("store.Counts", err)
		}
		for _, cmd := range cmds {
			v := cmd.Val()
			if v[0] != nil && str(v[1]) == tenant {
				c.States[api.State(str(v[0]))]++
			}
		}
	}
	return c, nil
}

// Unindex removes j from tenant's index: for a job deleted because it could
// not be enqueued.
func (s *Store) Unindex(ctx context.Context, j *api.Job, tenant string) error {
	return redisErr("store.Unindex "+j.ID, s.rdb.ZRem(ctx, TenantJobsKey(tenant), indexMember(j.CreatedAt, j.ID)).Err())
}
