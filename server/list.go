package server

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/internal/store"
)

// listParams are the query parameters GET /v1/jobs accepts.
var listParams = []string{"state", "type", "queue", "created_after", "created_before", "limit", "cursor"}

// jobStates are the states a job can be in.
var jobStates = []api.State{api.StateQueued, api.StateRunning, api.StateRetrying, api.StateSucceeded, api.StateFailed, api.StateCanceled}

// jobList is the body of GET /v1/jobs.
type jobList struct {
	// Jobs are records without partial and result (read the job for those).
	Jobs []*api.Job `json:"jobs"`
	// Next is the URL of the next page, or null on the last.
	Next *string `json:"next"`
	// Counts are the tenant's jobs per state, whatever the filters; on the
	// first page only (no cursor).
	Counts         map[api.State]int `json:"counts,omitempty"`
	CountsComplete *bool             `json:"counts_complete,omitempty"`
}

// listJobs is GET /v1/jobs: the caller's jobs, newest first, filtered and
// cursor-paginated (store.List), with counts per state on the first page.
func (s *Server) listJobs(c echo.Context) error {
	q, err := parseListQuery(c.QueryParams())
	if err != nil {
		return err
	}
	q.Tenant = tenantOf(c)
	ctx, cancel := s.redisCtx(c.Request().Context())
	defer cancel()
	page, err := s.store.List(ctx, q)
	if err != nil {
		return err
	}
	out := jobList{Jobs: page.Jobs}
	for _, j := range out.Jobs {
		j.Partial, j.Result = nil, nil
	}
	if page.Next != "" {
		v := c.QueryParams()
		v.Set("cursor", page.Next)
		next := "/v1/jobs?" + v.Encode()
		out.Next = &next
	}
	if q.Cursor == "" {
		counts, err := s.store.Counts(ctx, q.Tenant)
		if err != nil {
			return err
		}
		out.Counts, out.CountsComplete = counts.States, &counts.Complete
		for _, st := range jobStates {
			out.Counts[st] += 0
		}
	}
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, b)
}

// parseListQuery validates the listing's query parameters. Each filter
// takes a comma-separated list or repeats (state=failed,canceled).
func parseListQuery(v url.Values) (store.ListQuery, error) {
	var q store.ListQuery
	for name := range v {
		if !slices.Contains(listParams, name) {
			return q, invalid(name, "unknown query parameter %q; GET /v1/jobs takes %s", name, strings.Join(listParams, ", "))
		}
	}
	for _, st := range values(v, "state") {
		if !slices.Contains(jobStates, api.State(st)) {
			return q, invalid("state", "state %q is not a job state; use queued, running, retrying, succeeded, failed or canceled", st)
		}
		q.States = append(q.States, api.State(st))
	}
	for _, t := range values(v, "type") {
		if len(t) > 100 {
			return q, invalid("type", "type must be at most 100 characters")
		}
		q.Types = append(q.Types, t)
	}
	for _, name := range values(v, "queue") {
		if !ValidQueueName(name) {
			return q, invalid("queue", "queue %q is not a queue name (1 to %d characters of a-z, 0-9, _ and -)", name, maxQueueName)
		}
		q.Queues = append(q.Queues, name)
	}
	var err error
	if q.CreatedAfter, err = timeParam(v, "created_after"); err != nil {
		return q, err
	}
	if q.CreatedBefore, err = timeParam(v, "created_before"); err != nil {
		return q, err
	}
	if l := v.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > store.ListLimitMax {
			return q, invalid("limit", "limit must be a whole number from 1 to %d, not %q", store.ListLimitMax, l)
		}
		q.Limit = n
	}
	q.Cursor = v.Get("cursor")
	if q.Cursor != "" && !store.ValidCursor(q.Cursor) {
		return q, invalid("cursor", "cursor %q is not one this API gave out; follow the next link of a page", q.Cursor)
	}
	return q, nil
}

// values returns the non-empty comma-separated values of parameter name.
func values(v url.Values, name string) []string {
	var out []string
	for _, s := range v[name] {
		for _, part := range strings.Split(s, ",") {
			if part = strings.TrimSpace(part); part != "" {
				out = append(out, part)
			}
		}
	}
	return out
}

func timeParam(v url.Values, name string) (time.Time, error) {
	s := v.Get(name)
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return t, invalid(name, "%s must be an RFC 3339 time like 2026-11-30T18:00:00Z, not %q", name, s)
	}
	return t, nil
}
