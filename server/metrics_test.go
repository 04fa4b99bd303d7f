package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// seriesCount returns how many series of metric name reg gathers.
func seriesCount(t *testing.T, reg prometheus.Gatherer, name string) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return len(mf.GetMetric())
		}
	}
	return 0
}

// scrape returns GET /metrics.
func (e *env) scrape() string {
	e.t.Helper()
	res, b := e.do("GET", "/metrics", "", nil)
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/plain") {
		e.t.Fatalf("/metrics: %d %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	return string(b)
}

func TestMetrics(t *testing.T) {
	e := newEnv(t)
	j := e.submit(`{"type":"double"}`, 202)
	e.submit(`{"type":"double"}`, 202, "Idempotency-Key", "k")
	e.submit(`{"type":"double"}`, 200, "Idempotency-Key", "k") // a repeat: not a new job
	e.do("GET", "/v1/jobs/"+j.ID, "", nil)
	e.do("GET", "/v1/jobs/"+unknownID, "", nil)
	e.do("POST", "/v1/jobs/"+j.ID+"/cancel", "", nil)
	e.do("GET", "/no/such/route", "", nil)
	e.do("BREW", "/v1/jobs", "", nil)

	m := e.scrape()
	for _, want := range []string{
		`staged_jobs_submitted_total{type="double"} 2`,
		`staged_jobs_submitted_total{type="shaped"} 0`,
		`staged_jobs_canceled_total{type="double"} 1`,
		`staged_http_requests_total{code="202",method="POST",route="/v1/jobs"} 2`,
		`staged_http_requests_total{code="200",method="POST",route="/v1/jobs"} 1`,
		`staged_http_requests_total{code="200",method="GET",route="/v1/jobs/:id"} 1`,
		`staged_http_requests_total{code="404",method="GET",route="/v1/jobs/:id"} 1`,
		`staged_http_requests_total{code="202",method="POST",route="/v1/jobs/:id/cancel"} 1`,
		`staged_http_requests_total{code="404",method="GET",route="other"} 1`,
		`staged_http_requests_total{code="405",method="other",route=`,
		`staged_http_request_duration_seconds_count{route="/v1/jobs/:id"} 2`,
		`asynq_queue_size{queue="default:double:`,
		`go_goroutines `,
		`process_cpu_seconds_total`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// Raw paths never become label values.
	for _, bad := range []string{j.ID, unknownID, "/no/such/route", "BREW"} {
		if strings.Contains(m, bad) {
			t.Errorf("/metrics has the unbounded label value %q", bad)
		}
	}
}

// TestQueueMetricsCached: asynq's queue metrics are collected at most once
// per queueMetricsTTL, however often /metrics is scraped.
func TestQueueMetricsCached(t *testing.T) {
	e := newEnv(t)
	e.submit(`{"type":"double"}`, 202)
	inner := &countingCollector{}
	c := newCachedCollector(inner, time.Hour)
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	for range 5 {
		seriesCount(t, reg, "test_counted")
	}
	if inner.n != 1 {
		t.Errorf("the inner collector ran %d times in 6 scrapes, want 1", inner.n)
	}
	if n := seriesCount(t, reg, "test_counted"); n != 1 {
		t.Errorf("cached metric: %d series", n)
	}

	// The real one: the first scrape reads the queues from Redis, the next
	// one right after it does not.
	before := e.smembers(t)
	e.scrape()
	mid := e.smembers(t)
	e.scrape()
	if first, second := mid-before, e.smembers(t)-mid; first == 0 || second != 0 {
		t.Errorf("SMEMBERS calls: %d in the first scrape, %d in the second; want some, then none", first, second)
	}
}

// smembers returns how many times Redis ran SMEMBERS (the queue metrics
// start with SMEMBERS asynq:queues).
func (e *env) smembers(t *testing.T) int64 {
	t.Helper()
	info, err := e.rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(info, "\n") {
		if rest, ok := strings.CutPrefix(l, "cmdstat_smembers:calls="); ok {
			n := int64(0)
			for _, c := range rest {
				if c < '0' || c > '9' {
					break
				}
				n = n*10 + int64(c-'0')
			}
			return n
		}
	}
	return 0
}

type countingCollector struct{ n int }

var countedDesc = prometheus.NewDesc("test_counted", "test", nil, nil)

func (c *countingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- countedDesc }
func (c *countingCollector) Collect(ch chan<- prometheus.Metric) {
	c.n++
	ch <- prometheus.MustNewConstMetric(countedDesc, prometheus.GaugeValue, 1)
}

// TestObserveAllocs: counting a request allocates nothing once its label
// children exist.
func TestObserveAllocs(t *testing.T) {
	e := newEnv(t)
	m := e.srv.metrics
	m.observe("/v1/jobs/:id", "GET", 200, time.Millisecond)
	if n := testing.AllocsPerRun(1000, func() { m.observe("/v1/jobs/:id", "GET", 200, time.Millisecond) }); n != 0 {
		t.Errorf("observe allocates %v times per request", n)
	}
	if n := testing.AllocsPerRun(1000, func() { m.jobSubmitted("double") }); n != 0 {
		t.Errorf("jobSubmitted allocates %v times", n)
	}
}

// TestSharedMetricsRegistry: a Server registers on a given registry, next
// to collectors registered there already (a worker's Go collector).
func TestSharedMetricsRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGoCollector())
	e := newEnv(t, func(c *Config) { c.Metrics = reg })
	e.submit(`{"type":"double"}`, 202)
	if n := seriesCount(t, reg, "staged_jobs_submitted_total"); n != 2 {
		t.Errorf("staged_jobs_submitted_total series on the shared registry: %d", n)
	}
}
