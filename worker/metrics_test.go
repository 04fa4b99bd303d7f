package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/internal/redistest"
	"github.com/staged-dev/staged/tasks"
)

// metric returns the value of the counter name with the given label
// pairs, or the sample count of the histogram; 0 when it has no such series.
func metric(t *testing.T, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			if len(got) != len(want) {
				continue
			}
			match := true
			for k, v := range want {
				match = match && got[k] == v
			}
			if !match {
				continue
			}
			if h := m.GetHistogram(); h != nil {
				return float64(h.GetSampleCount())
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// waitMetric waits until metric(name, labels) is want: a finish is
// counted just after the terminal write a test waits for.
func waitMetric(t *testing.T, g prometheus.Gatherer, want float64, name string, labels ...string) {
	t.Helper()
	var got float64
	redistest.Eventually(t, 5*time.Second, fmt.Sprintf("%s%v to be %v", name, labels, want), func() bool {
		got = metric(t, g, name, labels...)
		return got == want
	})
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	var runs atomic.Int32
	started := make(chan struct{}, 1)
	h := newHarness(t,
		chainPipeline(nil, nil),
		&tasks.Pipeline{Name: "flaky", Stages: []tasks.Stage{
			{Name: "ok", Run: stageFunc(func(context.Context, string, tasks.Progress) (any, error) { return "fine", nil })},
			{Name: "bad", Run: stageFunc(func(context.Context, string, tasks.Progress) (any, error) {
				return nil, errors.New("disk full")
			})},
		}},
		blockPipeline(&runs, started),
	)
	cfg := h.config()
	cfg.Lease = 5 * time.Second // no takeover on a loaded machine: this test counts none
	w := h.start(cfg)
	g := w.Gatherer()

	h.wait(h.submit("chain", `"x"`, api.Options{}), api.StateSucceeded, 5*time.Second)
	h.wait(h.submit("flaky", `{}`, api.Options{MaxRetries: 2}), api.StateFailed, 10*time.Second)
	id := h.submit("block", `{}`, api.Options{})
	<-started
	if _, err := h.store.Cancel(context.Background(), id, ""); err != nil {
		t.Fatal(err)
	}
	h.wait(id, api.StateCanceled, 5*time.Second)

	tests := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"staged_jobs_started_total", []string{"type", "chain"}, 1},
		{"staged_jobs_finished_total", []string{"type", "chain", "state", "succeeded"}, 1},
		{"staged_stage_duration_seconds", []string{"type", "chain", "stage", "a"}, 1},
		{"staged_stage_duration_seconds", []string{"type", "chain", "stage", "b"}, 1},
		{"staged_stage_duration_seconds", []string{"type", "chain", "stage", "c"}, 1},
		{"staged_job_duration_seconds", []string{"type", "chain"}, 1},
		{"staged_submit_to_start_seconds", []string{"type", "chain"}, 1},
		{"staged_retries_total", []string{"type", "chain"}, 0},

		// Three attempts: one start, one submit-to-start, two retries; stage
		// ok succeeded once (later attempts resume after it), bad never.
		{"staged_jobs_started_total", []string{"type", "flaky"}, 1},
		{"staged_submit_to_start_seconds", []string{"type", "flaky"}, 1},
		{"staged_retries_total", []string{"type", "flaky"}, 2},
		{"staged_jobs_finished_total", []string{"type", "flaky", "state", "failed"}, 1},
		{"staged_jobs_finished_total", []string{"type", "flaky", "state", "succeeded"}, 0},
		{"staged_stage_duration_seconds", []string{"type", "flaky", "stage", "ok"}, 1},
		{"staged_stage_duration_seconds", []string{"type", "flaky", "stage", "bad"}, 0},
		{"staged_job_duration_seconds", []string{"type", "flaky"}, 1},

		{"staged_jobs_finished_total", []string{"type", "block", "state", "canceled"}, 1},
		{"staged_cancels_total", nil, 1},
		{"staged_takeovers_total", nil, 0},
		{"staged_handbacks_total", nil, 0},
		{"staged_fenced_total", nil, 0},
	}
	waitMetric(t, g, 1, "staged_jobs_finished_total", "type", "chain", "state", "succeeded")
	waitMetric(t, g, 1, "staged_jobs_finished_total", "type", "flaky", "state", "failed")
	waitMetric(t, g, 1, "staged_jobs_finished_total", "type", "block", "state", "canceled")
	for _, tt := range tests {
		if got := metric(t, g, tt.name, tt.labels...); got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}

	// The handler serves the same in the text format.
	rec := httptest.NewRecorder()
	w.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{
		`staged_jobs_finished_total{state="succeeded",type="chain"} 1`,
		`staged_stage_duration_seconds_count{stage="b",type="chain"} 1`,
		`staged_submit_to_start_seconds_bucket{type="chain",le="+Inf"} 1`,
	} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("/metrics lacks %q:\n%s", want, rec.Body)
		}
	}
}

func TestMetricsLabels(t *testing.T) {
	reg := tasks.NewRegistry(chainPipeline(nil, nil))
	m, err := newMetrics(nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	if m.forType("nope") != m.forType(typeUnregistered) || m.forType("chain").typ != "chain" {
		t.Fatal("an unknown type must share the unregistered series")
	}
	tm := m.forType("chain")
	for i := range maxStageLabels + 10 { // a, b, c were resolved by newMetrics
		tm.stage(fmt.Sprintf("stage%d", i)).Observe(1)
	}
	if n := len(tm.stages); n != maxStageLabels {
		t.Fatalf("%d stage series, want at most %d", n, maxStageLabels)
	}
	if got := metric(t, m.gatherer, "staged_stage_duration_seconds", "type", "chain", "stage", stageOther); got != 13 {
		t.Fatalf("stage=other count = %v, want 13", got)
	}
	// The hot path allocates nothing once a stage's series exists.
	if n := testing.AllocsPerRun(100, func() { m.forType("chain").stage("a").Observe(0.1) }); n != 0 {
		t.Fatalf("%v allocations per stage observation", n)
	}
}

func TestMetricsRegistry(t *testing.T) {
	h := newHarness(t, chainPipeline(nil, nil))
	shared := prometheus.NewRegistry()
	cfg := h.config()
	cfg.Metrics = shared
	a, b := h.newWorker(cfg), h.newWorker(cfg) // two workers share one registry
	a.metrics.takeovers.Inc()
	b.metrics.takeovers.Inc()
	if got := metric(t, shared, "staged_takeovers_total"); got != 2 || a.Gatherer() != shared {
		t.Fatalf("shared takeovers = %v", got)
	}

	// A Registerer that cannot gather: the handler says where the metrics are.
	cfg.Metrics = prometheus.WrapRegistererWith(prometheus.Labels{"worker": "x"}, prometheus.NewRegistry())
	c := h.newWorker(cfg)
	rec := httptest.NewRecorder()
	c.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if c.Gatherer() != nil || rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), "Config.Metrics") {
		t.Fatalf("handler: %d %s", rec.Code, rec.Body)
	}

	// A clashing collector is an error naming the field.
	clash := prometheus.NewRegistry()
	clash.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "staged_fenced_total", Help: "x"}))
	cfg.Metrics = clash
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "Config.Metrics") {
		t.Fatalf("err = %v", err)
	}
}

func TestServeMetrics(t *testing.T) {
	h := newHarness(t, chainPipeline(nil, nil))
	w := h.newWorker(h.config())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.ServeMetrics(ctx, ln) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "staged_takeovers_total 0") {
		t.Fatalf("GET /metrics: %d\n%s", resp.StatusCode, body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ServeMetrics did not return after its context ended")
	}
}
