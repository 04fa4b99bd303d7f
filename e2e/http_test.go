package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// job is the job record as PRODUCT.md describes it; the tests decode the
// public JSON, not the tasks package's type.
type job struct {
	ID              string          `json:"id"`
	Type            string          `json:"type"`
	State           string          `json:"state"`
	Stage           stageRef        `json:"stage"`
	Progress        float64         `json:"progress"`
	Stages          []stageStatus   `json:"stages"`
	Partial         json.RawMessage `json:"partial"`
	Result          json.RawMessage `json:"result"`
	Error           *jobError       `json:"error"`
	Attempt         int             `json:"attempt"`
	Digest          string          `json:"digest"`
	Warnings        []string        `json:"warnings"`
	CancelRequested bool            `json:"cancel_requested"`
	NextAttemptAt   *time.Time      `json:"next_attempt_at"`
	CreatedAt       time.Time       `json:"created_at"`
	StartedAt       *time.Time      `json:"started_at"`
	UpdatedAt       time.Time       `json:"updated_at"`
	FinishedAt      *time.Time      `json:"finished_at"`
	ExpiresAt       time.Time       `json:"expires_at"`
	Links           struct {
		Self   string `json:"self"`
		Events string `json:"events"`
		Page   string `json:"page"`
	} `json:"links"`

	raw []byte // the body as received
}

type stageRef struct {
	Index int    `json:"index"`
	Name  string `json:"name"`
	Total int    `json:"total"`
}

type stageStatus struct {
	Name       string     `json:"name"`
	State      string     `json:"state"`
	Attempts   int        `json:"attempts"`
	StartedAt  *time.Time `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at"`
}

type jobError struct {
	Stage   string `json:"stage"`
	Message string `json:"message"`
}

func (j *job) terminal() bool {
	return j.State == "succeeded" || j.State == "failed" || j.State == "canceled"
}

// summary is a one-line description of j for failure messages.
func (j *job) summary() string {
	if j == nil {
		return "<no record>"
	}
	var st []string
	for _, s := range j.Stages {
		st = append(st, fmt.Sprintf("%s:%s×%d", s.Name, s.State, s.Attempts))
	}
	e := ""
	if j.Error != nil {
		e = fmt.Sprintf(" error=%s: %s", j.Error.Stage, j.Error.Message)
	}
	return fmt.Sprintf("%s state=%s stage=%d/%d(%s) attempt=%d progress=%.2f stages=[%s]%s",
		j.ID, j.State, j.Stage.Index, j.Stage.Total, j.Stage.Name, j.Attempt, j.Progress, strings.Join(st, " "), e)
}

// response is an HTTP answer read in full.
type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends one request; contentType "" sends none.
func (s *stack) do(method, path, contentType string, body []byte) (*response, error) {
	req, err := http.NewRequest(method, s.baseURL+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// submit POSTs body (a JSON document) to /v1/jobs and expects 202 with a
// Location and a queued record.
func (s *stack) submit(body string) *job {
	s.t.Helper()
	r, err := s.do(http.MethodPost, "/v1/jobs", "application/json", []byte(body))
	if err != nil {
		s.t.Fatalf("POST /v1/jobs %s: %v", body, err)
	}
	if r.status != http.StatusAccepted {
		s.t.Fatalf("POST /v1/jobs %s: status %d, want 202; body %s", body, r.status, r.body)
	}
	j := decodeJob(s.t, r.body)
	if loc := r.header.Get("Location"); loc != "/v1/jobs/"+j.ID && !strings.HasSuffix(loc, "/v1/jobs/"+j.ID) {
		s.t.Fatalf("POST /v1/jobs: Location %q, want /v1/jobs/%s", loc, j.ID)
	}
	if j.ID == "" || j.State != "queued" || j.Links.Self != "/v1/jobs/"+j.ID {
		s.t.Fatalf("POST /v1/jobs: record %s, want a queued job with its links", r.body)
	}
	return j
}

func decodeJob(t *testing.T, b []byte) *job {
	t.Helper()
	var j job
	if err := json.Unmarshal(b, &j); err != nil {
		t.Fatalf("decode job record: %v\n%s", err, b)
	}
	j.raw = b
	return &j
}

// get reads job id: the record on 200, nil with the status otherwise.
func (s *stack) get(id string) (*job, *response, error) {
	r, err := s.do(http.MethodGet, "/v1/jobs/"+id, "", nil)
	if err != nil || r.status != http.StatusOK {
		return nil, r, err
	}
	var j job
	if err := json.Unmarshal(r.body, &j); err != nil {
		return nil, r, fmt.Errorf("decode %s: %w", r.body, err)
	}
	j.raw = r.body
	return &j, r, nil
}

// mustGet reads job id and fails unless it answers 200.
func (s *stack) mustGet(id string) *job {
	s.t.Helper()
	j, r, err := s.get(id)
	if err != nil {
		s.t.Fatalf("GET /v1/jobs/%s: %v", id, err)
	}
	if j == nil {
		s.t.Fatalf("GET /v1/jobs/%s: status %d: %s", id, r.status, r.body)
	}
	return j
}

// waitJob polls job id until cond holds, tolerating failed polls (Redis may
// be restarting), and returns the record that satisfied it.
func (s *stack) waitJob(id string, limit time.Duration, what string, cond func(*job) bool) *job {
	s.t.Helper()
	var got *job
	s.waitFor(limit, fmt.Sprintf("job %s: %s", id, what), func() (bool, string) {
		j, r, err := s.get(id)
		switch {
		case err != nil:
			return false, err.Error()
		case j == nil:
			return false, fmt.Sprintf("status %d: %s", r.status, r.body)
		}
		got = j
		if cond(j) {
			return true, ""
		}
		return false, j.summary()
	})
	return got
}

// waitDone waits for job id to reach a terminal state.
func (s *stack) waitDone(id string, limit time.Duration) *job {
	s.t.Helper()
	return s.waitJob(id, limit, "a terminal state", (*job).terminal)
}

// waitSucceeded waits for job id to finish and fails unless it succeeded.
func (s *stack) waitSucceeded(id string, limit time.Duration) *job {
	s.t.Helper()
	j := s.waitDone(id, limit)
	if j.State != "succeeded" {
		s.t.Fatalf("job %s ended %s, want succeeded: %s", id, j.State, j.summary())
	}
	return j
}

// cancel POSTs /v1/jobs/{id}/cancel.
func (s *stack) cancel(id string) *response {
	s.t.Helper()
	r, err := s.do(http.MethodPost, "/v1/jobs/"+id+"/cancel", "", nil)
	if err != nil {
		s.t.Fatalf("POST /v1/jobs/%s/cancel: %v", id, err)
	}
	return r
}

// problem is an RFC 9457 problem document.
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Field  string `json:"field"`
}

// checkProblem asserts r is an application/problem+json answer with one of
// the wanted statuses, a matching status member, a title and a detail that
// contains every string in mention (case-insensitive), and no stack trace.
func checkProblem(t *testing.T, r *response, want []int, mention ...string) problem {
	t.Helper()
	ok := false
	for _, w := range want {
		ok = ok || r.status == w
	}
	if !ok {
		t.Errorf("status %d, want one of %v; body %.300s", r.status, want, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		t.Errorf("Content-Type %q, want application/problem+json", ct)
	}
	var p problem
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("problem body is not JSON: %v: %.300s", err, r.body)
	}
	if p.Status != r.status {
		t.Errorf("problem status member %d, HTTP status %d", p.Status, r.status)
	}
	if p.Title == "" || p.Detail == "" {
		t.Errorf("problem needs a title and a detail: %s", r.body)
	}
	for _, m := range mention {
		if !strings.Contains(strings.ToLower(p.Detail), strings.ToLower(m)) {
			t.Errorf("detail %q should mention %q", p.Detail, m)
		}
	}
	if b := string(r.body); strings.Contains(b, "goroutine ") || strings.Contains(b, ".go:") {
		t.Errorf("problem leaks a stack trace or source position: %s", r.body)
	}
	return p
}
