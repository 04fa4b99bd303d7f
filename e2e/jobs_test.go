package e2e

import (
	"encoding/json"
	"testing"
	"time"
)

// TestListAndRetry drives `staged ls` and `staged retry` against a real api
// and worker: a canceled sleep job is listed, filtered, run again from its
// canceled stage (the first one is not run again) and succeeds; the
// listing shows it as a new attempt.
func TestListAndRetry(t *testing.T) {
	t.Parallel()
	s := newStack(t, false)
	s.startAPI()
	s.startWorker()

	done := s.submit(`{"type":"chain","input":{"data":"d","stages":2}}`)
	s.waitSucceeded(done.ID, 20*time.Second)
	r := s.cli(nil, "submit", "sleep", "--input", `{"stages":2,"ms":2500}`)
	long := uuidRE.FindString(r.stdout)
	if long == "" {
		t.Fatalf("submit printed no job id: %q %q", r.stdout, r.stderr)
	}
	s.waitJob(long, 20*time.Second, "in stage 2", func(j *job) bool { return j.State == "running" && j.Stage.Index == 2 })
	s.cli(nil, "cancel", long).want(t, "cancel", 0)
	s.waitJob(long, 10*time.Second, "canceled", func(j *job) bool { return j.State == "canceled" })

	s.cli(nil, "ls").want(t, "ls", 0, "STATE", long, done.ID, "canceled", "succeeded", "1 canceled")
	r = s.cli(nil, "ls", "--state", "canceled", "--json")
	var l struct {
		Jobs []job          `json:"jobs"`
		Next *string        `json:"next"`
		Cnt  map[string]int `json:"counts"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &l); err != nil || len(l.Jobs) != 1 || l.Jobs[0].ID != long || l.Next != nil || l.Cnt["succeeded"] != 1 {
		t.Fatalf("ls --state canceled --json: %v\n%s", err, r.stdout)
	}
	s.cli(nil, "ls", "--state", "done").want(t, "ls with a bad state", 3, "not a job state")

	s.cli(nil, "retry", done.ID).want(t, "retry of a succeeded job", 1, "is succeeded")
	s.cli(nil, "retry", long, "--wait").want(t, "retry --wait", 0, "again from stage 2/2")
	j := s.waitSucceeded(long, 20*time.Second)
	if j.Attempt != 2 || j.Stages[0].Attempts != 1 || j.Stages[1].Attempts != 2 {
		t.Fatalf("after the rerun: attempt %d, stage attempts %d %d; want 2, 1, 2", j.Attempt, j.Stages[0].Attempts, j.Stages[1].Attempts)
	}
	s.cli(nil, "ls", "--state", "succeeded").want(t, "ls succeeded", 0, long, done.ID)
}
