package e2e

import (
	"testing"
	"time"
)

// TestFailures: a job timeout fails the attempt with an error naming the
// stage; with max_retries the job is retried with backoff, resumes from its
// checkpoint, and ends failed once the retries are spent.
//
// No built-in pipeline fails on valid input, so the retried failure is the
// timeout itself: sleep 3×2 s with a 3 s timeout times out in stage2 (a
// second of margin each way, for a busy machine);
// its retry skips stage1 and times out in stage3.
func TestFailures(t *testing.T) {
	t.Parallel()
	s := newStack(t, false)
	s.startAPI()
	s.startWorker()

	once := s.submit(`{"type":"sleep","input":{"stages":3,"ms":2000},"timeout":"3s","max_retries":0}`)
	twice := s.submit(`{"type":"sleep","input":{"stages":3,"ms":2000},"timeout":"3s","max_retries":1}`)

	t.Run("job timeout", func(t *testing.T) {
		j := s.waitDone(once.ID, 30*time.Second)
		if j.State != "failed" || j.Error == nil || j.Error.Stage != "stage2" {
			t.Fatalf("want failed with error in stage2: %s", j.summary())
		}
		t.Logf("timeout error: %s", j.Error.Message)
		if st := j.Stages; st[0].State != "succeeded" || st[1].State != "failed" || st[2].State != "pending" || j.Attempt != 1 {
			t.Errorf("stages after a timeout in stage2: %s", j.summary())
		}
	})

	t.Run("retries", func(t *testing.T) {
		var retrying *job
		j := s.waitJob(twice.ID, 90*time.Second, "failed after one retry", func(j *job) bool {
			if j.State == "retrying" && retrying == nil {
				retrying = j
			}
			return j.terminal()
		})
		if retrying == nil {
			t.Errorf("never saw the job in state retrying")
		} else {
			if retrying.Error == nil || retrying.NextAttemptAt == nil {
				t.Errorf("a retrying record shows the error and next_attempt_at: %s", retrying.raw)
			} else {
				t.Logf("retry backoff: next attempt %.2fs after the failure", retrying.NextAttemptAt.Sub(retrying.UpdatedAt).Seconds())
			}
		}
		if j.State != "failed" || j.Attempt != 2 || j.Error == nil || j.Error.Stage != "stage3" {
			t.Fatalf("want failed on attempt 2 with error in stage3 (stage1 resumed from its checkpoint): %s", j.summary())
		}
		if st := j.Stages; st[0].Attempts != 1 || st[1].Attempts != 2 || st[2].Attempts != 1 {
			t.Errorf("stage attempts after one retry: %s (want stage1×1 stage2×2 stage3×1)", j.summary())
		}
	})
}
