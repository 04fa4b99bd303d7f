package server

import (
	"cmp"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/staged-dev/staged/api"
)

func TestListJobs(t *testing.T) {
	e := newEnv(t, withKeys)
	acme, globex := bearer(acmeSecret), bearer(globexSecret)
	var jobs []*api.Job
	for i := 0; i < 3; i++ {
		jobs = append(jobs, e.submit(`{"type":"double"}`, http.StatusAccepted, acme...))
	}
	// Newest first: the index orders by creation millisecond, then by id
	// (submits of the same millisecond, common on a fast machine, list by
	// id, descending). mine is the expected listing order, reversed.
	slices.SortFunc(jobs, func(a, b *api.Job) int {
		return cmp.Or(cmp.Compare(a.CreatedAt.UnixMilli(), b.CreatedAt.UnixMilli()), strings.Compare(a.ID, b.ID))
	})
	var mine []string
	for _, j := range jobs {
		mine = append(mine, j.ID)
	}
	theirs := e.submit(`{"type":"double"}`, http.StatusAccepted, globex...)
	e.finish(mine[0]) // the oldest in listing order: on the second page

	var l struct {
		Jobs   []*api.Job        `json:"jobs"`
		Next   *string           `json:"next"`
		Counts map[api.State]int `json:"counts"`
	}
	res, b := e.do("GET", "/v1/jobs?limit=2", "", nil, acme...)
	if res.StatusCode != http.StatusOK || json.Unmarshal(b, &l) != nil {
		t.Fatalf("list: %d %s", res.StatusCode, b)
	}
	if len(l.Jobs) != 2 || l.Jobs[0].ID != mine[2] || l.Jobs[1].ID != mine[1] || l.Next == nil {
		t.Fatalf("first page: %s", b)
	}
	if l.Counts[api.StateQueued] != 2 || l.Counts[api.StateSucceeded] != 1 || l.Counts[api.StateFailed] != 0 {
		t.Fatalf("counts: %v", l.Counts)
	}
	res, b = e.do("GET", *l.Next, "", nil, acme...)
	l.Jobs, l.Next, l.Counts = nil, nil, nil
	if res.StatusCode != http.StatusOK || json.Unmarshal(b, &l) != nil || len(l.Jobs) != 1 || l.Jobs[0].ID != mine[0] || l.Next != nil || l.Counts != nil {
		t.Fatalf("second page: %d %s", res.StatusCode, b)
	}
	if r := string(l.Jobs[0].Result); r != "" && r != "null" {
		t.Fatalf("a listed job carries its result: %s", b)
	}
	res, b = e.do("GET", "/v1/jobs?state=succeeded", "", nil, globex...)
	if json.Unmarshal(b, &l) != nil || len(l.Jobs) != 0 || l.Counts[api.StateQueued] != 1 {
		t.Fatalf("globex's succeeded jobs: %s (its one job is %s)", b, theirs.ID)
	}

	bad := []struct{ query, detail string }{
		{"state=done", "not a job state"},
		{"status=failed", "unknown query parameter"},
		{"limit=0", "limit must be"},
		{"limit=501", "limit must be"},
		{"created_after=yesterday", "RFC 3339"},
		{"cursor=abc", "cursor"},
		{"queue=Bad!", "queue"},
	}
	for _, tt := range bad {
		res, b := e.do("GET", "/v1/jobs?"+tt.query, "", nil, acme...)
		assertProblem(t, res, b, http.StatusBadRequest, tt.detail)
	}
	res, b = e.do("GET", "/v1/jobs", "", nil)
	assertProblem(t, res, b, http.StatusUnauthorized, "")
}
