package e2e

import (
	"bufio"
	"strconv"
	"strings"
	"testing"
	"time"
)

// scrapeMetrics returns the samples of GET /metrics, by series ("name" or
// "name{labels}" as written).
func (s *stack) scrapeMetrics() map[string]float64 {
	s.t.Helper()
	r := s.doAuth("GET", "/metrics", "", nil)
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
		s.t.Fatalf("GET /metrics: %d %q", r.status, r.header.Get("Content-Type"))
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(r.body)))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			s.t.Fatalf("bad metrics line %q", line)
		}
		m[line[:i]] = v
	}
	return m
}

// TestMetrics scrapes the api's /metrics before and after a job: the
// request, submit and cancel counters and asynq's queue metrics move, and
// labels are route patterns, never raw paths.
func TestMetrics(t *testing.T) {
	t.Parallel()
	s := newStack(t, false)
	s.startAPI()
	s.startWorker()

	before := s.scrapeMetrics()
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes",
		`staged_jobs_submitted_total{type="chain"}`, `staged_jobs_canceled_total{type="sleep"}`} {
		if _, ok := before[name]; !ok {
			t.Errorf("/metrics lacks %s before any job", name)
		}
	}
	j := s.submit(`{"type":"chain","input":{"data":"m","stages":2}}`)
	s.waitSucceeded(j.ID, 20*time.Second)
	c := s.submit(`{"type":"sleep","input":{"stages":2,"ms":5000}}`)
	if r := s.cancel(c.ID); r.status != 202 {
		t.Fatalf("cancel: %d %s", r.status, r.body)
	}
	s.waitDone(c.ID, 20*time.Second)

	// asynq's queue metrics are cached for a few seconds: wait for a
	// scrape that shows the job processed.
	var after map[string]float64
	s.waitFor(20*time.Second, "asynq's metrics to count the processed task", func() (bool, string) {
		after = s.scrapeMetrics()
		n := after[`asynq_tasks_processed_total{queue="`+builtinQueue("default", "chain")+`"}`]
		return n >= 1, "asynq_tasks_processed_total=" + strconv.FormatFloat(n, 'g', -1, 64)
	})
	moved := []struct {
		series string
		delta  float64
	}{
		{`staged_jobs_submitted_total{type="chain"}`, 1},
		{`staged_jobs_submitted_total{type="sleep"}`, 1},
		{`staged_jobs_canceled_total{type="sleep"}`, 1},
		{`staged_http_requests_total{code="202",method="POST",route="/v1/jobs"}`, 2},
		{`staged_http_requests_total{code="202",method="POST",route="/v1/jobs/:id/cancel"}`, 1},
		{`staged_http_request_duration_seconds_count{route="/v1/jobs"}`, 2},
	}
	for _, m := range moved {
		if got := after[m.series] - before[m.series]; got != m.delta {
			t.Errorf("%s moved by %v, want %v", m.series, got, m.delta)
		}
	}
	if after[`staged_http_requests_total{code="200",method="GET",route="/v1/jobs/:id"}`] < 1 {
		t.Errorf("the polls are not counted under route /v1/jobs/:id")
	}
	if _, ok := after[`asynq_queue_size{queue="`+builtinQueue("default", "chain")+`"}`]; !ok {
		t.Errorf("no asynq_queue_size for chain's queue on default")
	}
	for series := range after {
		if strings.Contains(series, j.ID) || strings.Contains(series, c.ID) {
			t.Errorf("a job id became a label value: %s", series)
		}
	}
}
