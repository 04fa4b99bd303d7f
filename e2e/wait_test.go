package e2e

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Tolerances of the ?wait tests.
const (
	// promptLimit is how soon after a job finishes a waiting request must
	// answer. The API is signalled by Redis pub/sub, so it is typically a
	// few milliseconds; the margin is for a loaded CI machine.
	promptLimit = 750 * time.Millisecond
	// lateLimit is how long after its wait a request may answer.
	lateLimit = 5 * time.Second // generous: a loaded machine (stress-ng --cpu 2) answered 1.8s late
)

// timed sends one request and returns the answer and how long it took.
func (s *stack) timed(method, path, body string) (*response, time.Duration) {
	s.t.Helper()
	ct := ""
	if body != "" {
		ct = "application/json"
	}
	hc := &http.Client{Timeout: 90 * time.Second} // longer than any wait
	start := time.Now()
	saved := s.http
	s.http = hc
	r, err := s.do(method, path, ct, []byte(body))
	s.http = saved
	took := time.Since(start)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	return r, took
}

// commandsProcessed is Redis's total_commands_processed.
func (s *stack) commandsProcessed() int64 {
	s.t.Helper()
	info, err := s.rdb.Info(context.Background(), "stats").Result()
	if err != nil {
		s.t.Fatalf("INFO stats: %v", err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "total_commands_processed:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				s.t.Fatalf("INFO stats: %q", line)
			}
			return n
		}
	}
	s.t.Fatalf("INFO stats has no total_commands_processed:\n%s", info)
	return 0
}

// onTime fails unless took is the wait, give or take lateLimit (never
// less).
func onTime(t *testing.T, what string, took, wait time.Duration) {
	t.Helper()
	if took < wait || took > wait+lateLimit {
		t.Errorf("%s answered after %v, want %v (at most %v late)", what, took.Round(time.Millisecond), wait, lateLimit)
	}
}

// TestWait is ?wait on GET and POST /v1/jobs: a wait that runs out answers
// on time with the current record (GET 200, POST 202) and reads Redis only
// when the job changes, not in a loop; a wait on a job that finishes
// (succeeded, or canceled by another request) answers as soon as it does;
// POST ?wait answers 200 with the finished record of a short job.
func TestWait(t *testing.T) {
	t.Parallel()
	s := newStack(t, false)
	s.startAPI()

	// No worker yet: the job stays queued and nothing writes to it. The
	// wait runs out on time, having read Redis about once.
	queued := s.submit(`{"type":"chain","input":{"data":"q","stages":1}}`)
	before := s.commandsProcessed()
	r, took := s.timed(http.MethodGet, "/v1/jobs/"+queued.ID+"?wait=2s", "")
	cmds := s.commandsProcessed() - before - 1 // less the first INFO
	if r.status != http.StatusOK {
		t.Fatalf("GET ?wait=2s of a queued job: status %d, want 200: %s", r.status, r.body)
	}
	if j := decodeJob(t, r.body); j.State != "queued" {
		t.Errorf("GET ?wait=2s of a queued job answered %s, want the queued record", j.summary())
	}
	onTime(t, "GET ?wait=2s of a job that does not change", took, 2*time.Second)
	t.Logf("GET ?wait=2s of an idle job: %v, %d Redis commands", took.Round(time.Millisecond), cmds)
	if cmds > 5 {
		t.Errorf("a 2s wait on a job that did not change made %d Redis commands: the API polls Redis while waiting", cmds)
	}

	s.startWorker()

	// A job finishing during the wait: the answer comes at once.
	short := s.submit(`{"type":"sleep","input":{"stages":2,"ms":600}}`)
	r, took = s.timed(http.MethodGet, "/v1/jobs/"+short.ID+"?wait=20s", "")
	answered := time.Now()
	if r.status != http.StatusOK {
		t.Fatalf("GET ?wait=20s: status %d, want 200: %s", r.status, r.body)
	}
	j := decodeJob(t, r.body)
	if j.State != "succeeded" || j.FinishedAt == nil {
		t.Fatalf("GET ?wait=20s of a 1.2s job answered %s, want it succeeded", j.summary())
	}
	lag := answered.Sub(*j.FinishedAt)
	t.Logf("GET ?wait=20s of a 1.2s job: answered after %v, %v after it finished", took.Round(time.Millisecond), lag.Round(time.Microsecond))
	if lag > promptLimit {
		t.Errorf("GET ?wait answered %v after the job finished, want at once (≤ %v)", lag, promptLimit)
	}

	// A running job that does not finish in time: 200 with the running
	// record, on time.
	long := s.submit(`{"type":"sleep","input":{"stages":1,"ms":60000}}`)
	s.waitJob(long.ID, 20*time.Second, "running", func(j *job) bool { return j.State == "running" })
	r, took = s.timed(http.MethodGet, "/v1/jobs/"+long.ID+"?wait=2s", "")
	if r.status != http.StatusOK {
		t.Fatalf("GET ?wait=2s of a running job: status %d, want 200: %s", r.status, r.body)
	}
	if j := decodeJob(t, r.body); j.State != "running" || j.Progress <= 0 {
		t.Errorf("GET ?wait=2s of a running job answered %s, want running with some progress", j.summary())
	}
	onTime(t, "GET ?wait=2s of a running job", took, 2*time.Second)

	// A wait ended by another request's cancel: at once, canceled.
	type answer struct {
		r   *response
		err error
		at  time.Time
	}
	got := make(chan answer, 1)
	go func() {
		hc := &http.Client{Timeout: 90 * time.Second}
		resp, err := hc.Get(s.baseURL + "/v1/jobs/" + long.ID + "?wait=30s")
		if err != nil {
			got <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		got <- answer{&response{status: resp.StatusCode, body: b}, err, time.Now()}
	}()
	s.cancel(long.ID)
	canceledAt := time.Now()
	select {
	case a := <-got:
		if a.err != nil {
			t.Fatalf("GET ?wait=30s during a cancel: %v", a.err)
		}
		if a.r.status != http.StatusOK {
			t.Fatalf("GET ?wait=30s during a cancel: status %d: %s", a.r.status, a.r.body)
		}
		j := decodeJob(t, a.r.body)
		if j.State != "canceled" || j.FinishedAt == nil {
			t.Fatalf("GET ?wait=30s during a cancel answered %s, want canceled", j.summary())
		}
		lag := a.at.Sub(*j.FinishedAt)
		t.Logf("GET ?wait=30s, canceled meanwhile: answered %v after the cancel, %v after the job was canceled",
			a.at.Sub(canceledAt).Round(time.Millisecond), lag.Round(time.Microsecond))
		if lag > promptLimit {
			t.Errorf("GET ?wait answered %v after the job was canceled, want at once (≤ %v)", lag, promptLimit)
		}
	case <-time.After(40 * time.Second):
		t.Fatalf("GET ?wait=30s did not answer")
	}

	// POST ?wait: a short job answers 200 with the finished record.
	r, took = s.timed(http.MethodPost, "/v1/jobs?wait=10s", `{"type":"sleep","input":{"stages":2,"ms":300}}`)
	if r.status != http.StatusOK {
		t.Fatalf("POST ?wait=10s of a 0.6s job: status %d, want 200: %s", r.status, r.body)
	}
	j = decodeJob(t, r.body)
	if j.State != "succeeded" || string(j.Result) != `{"stage":2,"slept_ms":300}` {
		t.Errorf("POST ?wait=10s of a 0.6s job answered %s result %s, want succeeded with its result", j.summary(), j.Result)
	}
	if loc := r.header.Get("Location"); !strings.HasSuffix(loc, "/v1/jobs/"+j.ID) {
		t.Errorf("POST ?wait=10s: Location %q, want /v1/jobs/%s", loc, j.ID)
	}
	if took > 5*time.Second {
		t.Errorf("POST ?wait=10s of a 0.6s job took %v", took)
	}
	t.Logf("POST ?wait=10s of a 0.6s job: 200 after %v", took.Round(time.Millisecond))

	// POST ?wait: a long job answers 202 with the unfinished record after
	// the wait.
	r, took = s.timed(http.MethodPost, "/v1/jobs?wait=3s", `{"type":"sleep","input":{"stages":2,"ms":30000}}`)
	if r.status != http.StatusAccepted {
		t.Fatalf("POST ?wait=3s of a 60s job: status %d, want 202: %s", r.status, r.body)
	}
	j = decodeJob(t, r.body)
	if j.terminal() {
		t.Errorf("POST ?wait=3s of a 60s job answered %s", j.summary())
	}
	if loc := r.header.Get("Location"); !strings.HasSuffix(loc, "/v1/jobs/"+j.ID) {
		t.Errorf("POST ?wait=3s: Location %q, want /v1/jobs/%s", loc, j.ID)
	}
	onTime(t, "POST ?wait=3s of a 60s job", took, 3*time.Second)
	s.cancel(j.ID)

	// A wait that is not a duration is a 400 naming the parameter.
	r, _ = s.timed(http.MethodGet, "/v1/jobs/"+j.ID+"?wait=soon", "")
	checkProblem(t, r, []int{http.StatusBadRequest}, "wait")
}
