package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/staged-dev/staged/api"
)

// ListOptions filter and page GET /v1/jobs. Zero fields do not filter.
type ListOptions struct {
	// States, Types and Queues: a job matches when its value is any of these.
	States []api.State
	Types  []string
	Queues []string
	// CreatedAfter and CreatedBefore bound the creation time (exclusive).
	CreatedAfter, CreatedBefore time.Time
	// Limit is the page size (the API's default 50, at most 500).
	Limit int
	// Cursor continues after a page: its JobList.Cursor.
	Cursor string
}

// JobList is one page of jobs, newest first.
type JobList struct {
	// Jobs are records without partial and result.
	Jobs []*api.Job `json:"jobs"`
	// Next is the path of the next page, "" on the last.
	Next string `json:"next"`
	// Counts are the tenant's jobs per state (first page only).
	Counts map[api.State]int `json:"counts"`
	// CountsComplete is false when the counts cover only the newest jobs.
	CountsComplete bool `json:"counts_complete"`
}

// Cursor returns the cursor of the next page, "" on the last.
func (l *JobList) Cursor() string {
	if l.Next == "" {
		return ""
	}
	u, err := url.Parse(l.Next)
	if err != nil {
		return ""
	}
	return u.Query().Get("cursor")
}

// Query returns the query string of o.
func (o *ListOptions) Query() url.Values {
	v := url.Values{}
	join := func(name string, xs []string) {
		if len(xs) > 0 {
			v.Set(name, strings.Join(xs, ","))
		}
	}
	states := make([]string, len(o.States))
	for i, s := range o.States {
		states[i] = string(s)
	}
	join("state", states)
	join("type", o.Types)
	join("queue", o.Queues)
	if !o.CreatedAfter.IsZero() {
		v.Set("created_after", o.CreatedAfter.UTC().Format(time.RFC3339Nano))
	}
	if !o.CreatedBefore.IsZero() {
		v.Set("created_before", o.CreatedBefore.UTC().Format(time.RFC3339Nano))
	}
	if o.Limit > 0 {
		v.Set("limit", strconv.Itoa(o.Limit))
	}
	if o.Cursor != "" {
		v.Set("cursor", o.Cursor)
	}
	return v
}

// List returns a page of the caller's jobs, newest first (GET /v1/jobs).
func (c *Client) List(ctx context.Context, o *ListOptions) (*JobList, error) {
	if o == nil {
		o = &ListOptions{}
	}
	path := "/v1/jobs"
	if q := o.Query().Encode(); q != "" {
		path += "?" + q
	}
	var l struct {
		JobList
		Next *string `json:"next"`
	}
	if err := c.do(ctx, http.MethodGet, path, nil, nil, 0, &l); err != nil {
		return nil, fmt.Errorf("client.List: %w", err)
	}
	if l.Next != nil {
		l.JobList.Next = *l.Next
	}
	return &l.JobList, nil
}

// Retry runs failed or canceled job id again from its first stage that did
// not succeed (POST /v1/jobs/{id}/retry) and returns the queued record. A
// queued, running or succeeded job is a 409 Problem.
func (c *Client) Retry(ctx context.Context, id string) (*api.Job, error) {
	var j api.Job
	if err := c.do(ctx, http.MethodPost, jobPath(id)+"/retry", nil, nil, 0, &j); err != nil {
		return nil, fmt.Errorf("client.Retry %s: %w", id, err)
	}
	return &j, nil
}
