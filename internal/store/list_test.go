package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/internal/redistest"
	"github.com/staged-dev/staged/internal/store"
	"github.com/staged-dev/staged/tasks"
)

// listed is a job as the listing test expects it.
type listed struct {
	id, tenant, typ, queue string
	state                  api.State
	created                time.Time
}

// makeJob creates a job of typ on queue for tenant at created and brings it
// to state through the store's own calls (claim, save, cancel).
func makeJob(t *testing.T, s *store.Store, tenant, typ, queue string, created time.Time, state api.State, ttl time.Duration) listed {
	t.Helper()
	ctx := context.Background()
	run := func(ctx context.Context, in json.RawMessage, p tasks.Progress) (any, error) { return in, nil }
	p := &tasks.Pipeline{Name: typ, Stages: []tasks.Stage{{Name: "a", Run: run}, {Name: "b", Run: run}}}
	j := store.NewJob(p, queue, created)
	if _, err := s.Create(ctx, j, tenant, json.RawMessage(`{}`), api.Options{Queue: queue}); err != nil {
		t.Fatal(err)
	}
	switch state {
	case api.StateQueued:
	case api.StateCanceled:
		if _, err := s.Cancel(ctx, j.ID, tenant); err != nil {
			t.Fatal(err)
		}
	default:
		c, err := s.Claim(ctx, j.ID, 1, time.Minute)
		if err != nil || c.Outcome != store.ClaimOK {
			t.Fatalf("claim: %v %+v", err, c)
		}
		c.Job.State = state
		if _, err := s.Save(ctx, c.Job, c.Token, store.SaveArgs{TTL: ttl}); err != nil {
			t.Fatal(err)
		}
	}
	return listed{id: j.ID, tenant: tenant, typ: typ, queue: queue, state: state, created: created}
}

// newestFirst orders jobs as the listing does: creation millisecond, then id,
// both descending.
func newestFirst(js []listed) {
	sort.Slice(js, func(a, b int) bool {
		ma, mb := js[a].created.UnixMilli(), js[b].created.UnixMilli()
		if ma != mb {
			return ma > mb
		}
		return js[a].id > js[b].id
	})
}

// listAll follows the cursor to the end and returns the ids in order.
func listAll(t *testing.T, s *store.Store, q store.ListQuery, between func()) []string {
	t.Helper()
	var ids []string
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatal("the listing does not end")
		}
		p, err := s.List(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Jobs) > max(q.Limit, 0) && q.Limit > 0 {
			t.Fatalf("page of %d jobs, limit %d", len(p.Jobs), q.Limit)
		}
		for _, j := range p.Jobs {
			ids = append(ids, j.ID)
		}
		if p.Next == "" {
			return ids
		}
		q.Cursor = p.Next
		if between != nil {
			between()
		}
	}
}

func TestListFiltersAndPages(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Client()
	s := store.NewStore(rdb)
	types := []string{"train", "sleep", "chain"}
	queues := []string{"default", "critical"}
	states := []api.State{api.StateQueued, api.StateRunning, api.StateSucceeded, api.StateFailed, api.StateCanceled}
	base := time.Now().UTC().Add(-time.Hour)
	var all []listed
	for i := 0; i < 300; i++ {
		tenant := []string{"acme", "umbrella"}[i%2]
		// Three jobs share each millisecond: ties are ordered by id.
		created := base.Add(time.Duration(i/3) * time.Millisecond)
		all = append(all, makeJob(t, s, tenant, types[i%3], queues[i%5%2], created, states[i%5], time.Hour))
	}
	want := func(f func(listed) bool) []string {
		var js []listed
		for _, j := range all {
			if j.tenant == "acme" && f(j) {
				js = append(js, j)
			}
		}
		newestFirst(js)
		ids := make([]string, len(js))
		for i, j := range js {
			ids[i] = j.id
		}
		return ids
	}
	mid := base.Add(50 * time.Millisecond)
	tests := []struct {
		name string
		q    store.ListQuery
		want []string
	}{
		{"all", store.ListQuery{}, want(func(listed) bool { return true })},
		{"failed", store.ListQuery{States: []api.State{api.StateFailed}}, want(func(j listed) bool { return j.state == api.StateFailed })},
		{"running or queued", store.ListQuery{States: []api.State{api.StateRunning, api.StateQueued}},
			want(func(j listed) bool { return j.state == api.StateRunning || j.state == api.StateQueued })},
		{"type", store.ListQuery{Types: []string{"sleep"}}, want(func(j listed) bool { return j.typ == "sleep" })},
		{"queue", store.ListQuery{Queues: []string{"critical"}}, want(func(j listed) bool { return j.queue == "critical" })},
		{"type and state", store.ListQuery{Types: []string{"train"}, States: []api.State{api.StateCanceled}},
			want(func(j listed) bool { return j.typ == "train" && j.state == api.StateCanceled })},
		{"created after", store.ListQuery{CreatedAfter: mid}, want(func(j listed) bool { return j.created.UnixMilli() > mid.UnixMilli() })},
		{"created before", store.ListQuery{CreatedBefore: mid}, want(func(j listed) bool { return j.created.UnixMilli() < mid.UnixMilli() })},
		{"created range", store.ListQuery{CreatedAfter: base.Add(10 * time.Millisecond), CreatedBefore: mid},
			want(func(j listed) bool {
				return j.created.UnixMilli() > base.Add(10*time.Millisecond).UnixMilli() && j.created.UnixMilli() < mid.UnixMilli()
			})},
		{"unknown type", store.ListQuery{Types: []string{"nope"}}, nil},
	}
	for _, tt := range tests {
		for _, limit := range []int{0, 1, 7, 500} {
			t.Run(fmt.Sprintf("%s/limit=%d", tt.name, limit), func(t *testing.T) {
				q := tt.q
				q.Tenant, q.Limit = "acme", limit
				if got := listAll(t, s, q, nil); !slices.Equal(got, tt.want) {
					t.Fatalf("got %d jobs, want %d\ngot  %v\nwant %v", len(got), len(tt.want), got, tt.want)
				}
			})
		}
	}

	t.Run("while jobs are submitted", func(t *testing.T) {
		wantAll := want(func(listed) bool { return true })
		var wg sync.WaitGroup
		defer wg.Wait()
		got := listAll(t, s, store.ListQuery{Tenant: "acme", Limit: 9}, func() {
			wg.Add(1)
			go func() { // newer jobs land while the client pages
				defer wg.Done()
				makeJob(t, s, "acme", "chain", "default", time.Now().UTC(), api.StateQueued, 0)
			}()
		})
		if !slices.Equal(got, wantAll) {
			t.Fatalf("paging while submitting: got %d jobs, want %d", len(got), len(wantAll))
		}
	})

	t.Run("counts", func(t *testing.T) {
		c, err := s.Counts(ctx, "umbrella")
		if err != nil || !c.Complete {
			t.Fatal(err, c)
		}
		for _, st := range states {
			n := 0
			for _, j := range all {
				if j.tenant == "umbrella" && j.state == st {
					n++
				}
			}
			if c.States[st] != n {
				t.Errorf("%s = %d, want %d", st, c.States[st], n)
			}
		}
	})

	t.Run("other tenant", func(t *testing.T) {
		for _, id := range listAll(t, s, store.ListQuery{Tenant: "umbrella", Limit: 50}, nil) {
			if i := slices.IndexFunc(all, func(j listed) bool { return j.id == id }); i >= 0 && all[i].tenant != "umbrella" {
				t.Fatalf("umbrella's listing shows %s of %s", id, all[i].tenant)
			}
		}
		if got := listAll(t, s, store.ListQuery{Tenant: "nobody"}, nil); len(got) != 0 {
			t.Fatalf("a tenant without jobs sees %d", len(got))
		}
	})

	assertIndexTTLs(t, rdb)
}

// assertIndexTTLs checks that every key staged wrote has a TTL.
func assertIndexTTLs(t *testing.T, rdb *redis.Client) {
	t.Helper()
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, "staged:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if ttl := rdb.PTTL(ctx, k).Val(); ttl <= 0 {
			t.Errorf("key %s has no TTL (%v)", k, ttl)
		}
	}
}

func TestListForgetsExpiredJobs(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Client()
	s := store.NewStore(rdb)
	now := time.Now().UTC()
	keep := makeJob(t, s, "acme", "chain", "default", now, api.StateSucceeded, time.Hour)
	short := makeJob(t, s, "acme", "chain", "default", now.Add(time.Millisecond), api.StateSucceeded, 50*time.Millisecond)
	redistest.Eventually(t, 10*time.Second, "the job past its retention leaves the listing", func() bool {
		p, err := s.List(ctx, store.ListQuery{Tenant: "acme"})
		return err == nil && len(p.Jobs) == 1 && p.Jobs[0].ID == keep.id
	})
	// The listing removed its entry, and counts no longer see it.
	if n := rdb.ZCard(ctx, store.TenantJobsKey("acme")).Val(); n != 1 {
		t.Fatalf("index holds %d entries, want 1 (%s trimmed)", n, short.id)
	}
	if c, _ := s.Counts(ctx, "acme"); c.States[api.StateSucceeded] != 1 {
		t.Fatalf("counts = %v", c.States)
	}

	// Entries older than the index horizon go with the next submit, whether
	// or not a listing met them.
	s.Now = func() time.Time { return now.Add(store.IndexHorizon + time.Hour) }
	late := makeJob(t, s, "acme", "chain", "default", s.Now(), api.StateQueued, 0)
	members := rdb.ZRange(ctx, store.TenantJobsKey("acme"), 0, -1).Val()
	if len(members) != 1 || members[0][14:] != late.id {
		t.Fatalf("index after the horizon = %v, want only %s", members, late.id)
	}
	if ttl := rdb.PTTL(ctx, store.TenantJobsKey("acme")).Val(); ttl <= 0 || ttl > store.IndexHorizon {
		t.Fatalf("index TTL = %v", ttl)
	}
}

func TestListBadCursor(t *testing.T) {
	s := store.NewStore(redistest.Start(t).Client())
	for _, c := range []string{"x", "123:abc", "0000000000001:not-a-uuid"} {
		if _, err := s.List(context.Background(), store.ListQuery{Cursor: c}); tasks.ErrorCode(err) != tasks.EINVALID {
			t.Errorf("cursor %q: %v, want EINVALID", c, err)
		}
	}
}
