package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"time"

	"github.com/google/uuid"
)

// State is a job's or a stage's lifecycle state.
type State string

// Job and stage states.
const (
	StateQueued    State = "queued"
	StateRunning   State = "running"
	StateRetrying  State = "retrying"
	StateSucceeded State = "succeeded"
	StateFailed    State = "failed"
	StateCanceled  State = "canceled"
	StatePending   State = "pending" // a stage not started yet
)

// Terminal reports whether s is a final job state.
func (s State) Terminal() bool {
	return s == StateSucceeded || s == StateFailed || s == StateCanceled
}

// Job is the job record: what the API returns and what the hash's "rec"
// field holds, as JSON.
type Job struct {
	ID       string          `json:"id"`
	Type     string          `json:"type"`
	State    State           `json:"state"`
	Stage    StageRef        `json:"stage"`
	Progress float64         `json:"progress"`
	Stages   []StageStatus   `json:"stages"`
	Partial  json.RawMessage `json:"partial"`
	Result   json.RawMessage `json:"result"`
	Error    *JobError       `json:"error"`
	Attempt  int             `json:"attempt"`
	Queue    string          `json:"queue"`
	// Digest is the digest of the pipeline definition the job was accepted
	// under (Definition): only workers with that definition run it.
	Digest string `json:"digest,omitempty"`

	// CancelRequested is true once a cancel was asked for a running job and
	// until the worker has stopped it.
	CancelRequested bool `json:"cancel_requested,omitempty"`
	// NextAttemptAt is when a retrying job runs again.
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`

	CreatedAt  time.Time  `json:"created_at"`
	StartedAt  *time.Time `json:"started_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
	FinishedAt *time.Time `json:"finished_at"`
	ExpiresAt  time.Time  `json:"expires_at"`
	Links      Links      `json:"links"`
}

// StageRef says which stage a job is in: Index is 1-based, 0 before the first
// stage starts.
type StageRef struct {
	Index int    `json:"index"`
	Name  string `json:"name"`
	Total int    `json:"total"`
}

// StageStatus is one entry of the record's stages list.
type StageStatus struct {
	Name       string     `json:"name"`
	State      State      `json:"state"`
	Attempts   int        `json:"attempts"`
	StartedAt  *time.Time `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at"`
}

// JobError says which stage failed and why.
type JobError struct {
	Stage   string `json:"stage"`
	Message string `json:"message"`
}

// Links are the job's URLs, relative to the API's root.
type Links struct {
	Self   string `json:"self"`
	Events string `json:"events"`
	Page   string `json:"page"`
}

// Options are the per-job settings given at submit time; zero values take
// the pipeline's or the server's defaults.
type Options struct {
	Retention  time.Duration `json:"retention"`
	Timeout    time.Duration `json:"timeout"`
	MaxRetries int           `json:"max_retries"`
	Queue      string        `json:"queue"`
}

// LinksFor returns the links of job id.
func LinksFor(id string) Links {
	// One string holds all three, "/v1/jobs/ID/events": the events link,
	// then self and the page as parts of it (one allocation, not three).
	events := "/v1/jobs/" + id + "/events"
	self := events[:len(events)-len("/events")]
	return Links{Self: self, Events: events, Page: self[len("/v1"):]}
}

// ValidID reports whether s has the shape of a job id (a UUID), so that
// malformed ids never reach Redis.
func ValidID(s string) bool {
	if len(s) != 36 {
		return false
	}
	_, err := uuid.Parse(s)
	return err == nil
}

// DecodeJob parses a record as stored in Redis.
func DecodeJob(b []byte) (*Job, error) {
	var j Job
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("corrupt job record: %w", err)
	}
	return &j, nil
}

// MarkCanceled moves j to the canceled state at now: the stage that was
// running is canceled too.
func (j *Job) MarkCanceled(now time.Time) {
	j.State, j.CancelRequested, j.NextAttemptAt = StateCanceled, false, nil
	j.FinishedAt = &now
	for i := range j.Stages {
		if st := j.Stages[i].State; st == StateRunning || st == StateRetrying {
			j.Stages[i].State = StateCanceled
			j.Stages[i].FinishedAt = &now
		}
	}
}

// Marshal encodes v as JSON without escaping <, > and & (so "->" stays
// readable on the wire) and without a trailing newline. Use it for
// everything staged writes: records, checkpoints, results. A record
// (*Job) and a flat struct are written without encoding/json, to the same
// bytes (encode.go, flatencode.go).
func Marshal(v any) ([]byte, error) {
	if j, ok := v.(*Job); ok && j != nil {
		if b, ok := appendJob(make([]byte, 0, jobSizeHint(j)), j); ok {
			return b, nil
		}
	} else if e := flatEncoders.Get(reflect.TypeOf(v)); e != nil {
		// A flat struct (a stage's output, a partial result): flatencode.go.
		if b, ok := e.appendStruct(make([]byte, 0, 16+24*len(e.fields)), reflect.ValueOf(v)); ok {
			return b, nil
		}
	}
	return marshalJSON(v)
}

// jobSizeHint is about the length of j as JSON, so that appendJob
// allocates once.
func jobSizeHint(j *Job) int {
	n := 640 + 192*len(j.Stages) + len(j.Partial) + len(j.Result) + 3*len(j.ID)
	if j.Error != nil {
		n += len(j.Error.Message) + len(j.Error.Stage) + 32
	}
	return n
}

// marshalJSON is Marshal by encoding/json.
func marshalJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
