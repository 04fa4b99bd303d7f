package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// TestCancel: cancel while queued (the job never starts once a worker
// comes), cancel mid-stage (canceled within seconds), cancel after finish
// (409), and both canceled jobs are still canceled, unchanged, 10 s later.
func TestCancel(t *testing.T) {
	t.Parallel()
	s := newStack(t, false)
	s.startAPI()

	// Queued: no worker runs yet.
	queued := s.submit(`{"type":"sleep","input":{"stages":2,"ms":500}}`)
	r := s.cancel(queued.ID)
	if r.status != http.StatusAccepted {
		t.Fatalf("cancel queued job: status %d, want 202: %s", r.status, r.body)
	}
	if j := decodeJob(t, r.body); j.State != "canceled" {
		t.Errorf("cancel of a queued job answered state %s, want canceled: %s", j.State, r.body)
	}

	w := s.startWorker()
	// The worker has drained the queue once a job submitted later succeeds.
	probe := s.submit(`{"type":"chain","input":{"data":"p","stages":1}}`)
	s.waitSucceeded(probe.ID, 20*time.Second)
	neverStarted := func(j *job) (bool, string) {
		if j.State != "canceled" || j.StartedAt != nil {
			return false, j.summary()
		}
		for _, st := range j.Stages {
			if st.Attempts != 0 || st.StartedAt != nil {
				return false, "a stage started: " + j.summary()
			}
		}
		return true, ""
	}
	if ok, why := neverStarted(s.mustGet(queued.ID)); !ok {
		t.Errorf("canceled queued job after a worker drained the queue: %s", why)
	}

	// Mid-stage.
	mid := s.submit(`{"type":"sleep","input":{"stages":3,"ms":3000}}`)
	s.waitJob(mid.ID, 20*time.Second, "running stage 1 with some progress", func(j *job) bool {
		return j.State == "running" && j.Stage.Index == 1 && j.Progress > 0
	})
	r = s.cancel(mid.ID)
	asked := time.Now()
	if r.status != http.StatusAccepted {
		t.Fatalf("cancel running job: status %d, want 202: %s", r.status, r.body)
	}
	if j := decodeJob(t, r.body); j.State != "canceled" && !j.CancelRequested {
		t.Errorf("cancel of a running job answered %s without cancel_requested", j.summary())
	}
	canceled := s.waitJob(mid.ID, 5*time.Second, "canceled after a mid-stage cancel", func(j *job) bool { return j.terminal() })
	t.Logf("running job recorded %s %.2fs after the cancel", canceled.State, time.Since(asked).Seconds())
	if canceled.State != "canceled" {
		t.Fatalf("mid-stage cancel ended %s, want canceled: %s", canceled.State, canceled.summary())
	}
	if st := canceled.Stages[0]; st.State != "canceled" || st.Attempts != 1 {
		t.Errorf("the stage running at the cancel is %s with attempts %d, want canceled, 1", st.State, st.Attempts)
	}

	// Finished: 409, also for the already canceled job.
	for name, id := range map[string]string{"succeeded": probe.ID, "canceled": queued.ID} {
		t.Run("after finish/"+name, func(t *testing.T) {
			checkProblem(t, s.cancel(id), []int{http.StatusConflict})
		})
	}

	// Final: 10 s later both are still canceled, with no new attempt.
	s.holds(10*time.Second, "both canceled jobs to stay canceled and never run again", func() (bool, string) {
		q, _, err := s.get(queued.ID)
		if err != nil || q == nil {
			return false, fmt.Sprintf("GET queued job: %v", err)
		}
		if ok, why := neverStarted(q); !ok {
			return false, "queued job: " + why
		}
		m, _, err := s.get(mid.ID)
		if err != nil || m == nil {
			return false, fmt.Sprintf("GET mid-stage job: %v", err)
		}
		if m.State != "canceled" || m.Attempt != canceled.Attempt || m.Stages[0].Attempts != 1 || m.Stages[1].Attempts != 0 {
			return false, "mid-stage job came back: " + m.summary()
		}
		return true, ""
	})
	if w.exited() {
		t.Errorf("the worker exited: %v", w.err)
	}
}
