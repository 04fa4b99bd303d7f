package server

import (
	"errors"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/hibiken/asynq/x/metrics"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/staged-dev/staged/tasks"
)

// The API's Prometheus metrics, served on GET /metrics:
//
//	staged_http_requests_total{route,method,code}   requests answered
//	staged_http_request_duration_seconds{route}     time to answer (streams: their whole life)
//	staged_jobs_submitted_total{type}               jobs created (not idempotent repeats)
//	staged_jobs_canceled_total{type}                cancels accepted (202)
//	asynq_*{queue,...}                              asynq's queue metrics (x/metrics), cached
//	go_*, process_*                                 the Go runtime and the process
//
// Label values are bounded: route is the Echo route pattern
// ("/v1/jobs/:id", "other" for no route), method one of the standard
// methods or "other", type a registered pipeline. The label children are
// resolved once, so a request costs a map lookup and two atomic adds.

// queueMetricsTTL is how long asynq's queue metrics are reused between
// scrapes: each collection costs a few Redis round trips per queue.
const queueMetricsTTL = 5 * time.Second

// routeOther labels requests that matched no route.
const routeOther = "other"

// methods are the method label values; anything else is "other".
var methods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
	http.MethodPatch, http.MethodDelete, http.MethodOptions, "other"}

func methodIndex(m string) int {
	for i, x := range methods[:len(methods)-1] {
		if m == x {
			return i
		}
	}
	return len(methods) - 1
}

// apiMetrics holds the API's collectors and their resolved children.
type apiMetrics struct {
	gatherer  prometheus.Gatherer
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	submitted *prometheus.CounterVec
	canceled  *prometheus.CounterVec

	routes      map[string]*routeMetrics // by route pattern; read-only once routes are set
	other       *routeMetrics
	submittedBy map[string]prometheus.Counter // by pipeline name; read-only
	canceledBy  map[string]prometheus.Counter
}

// newMetrics registers the API's collectors on reg (a new registry when
// nil), with asynq's queue metrics read through inspector. Collectors
// already registered there (by another Server, or the Go and process
// collectors by a worker) are shared.
func newMetrics(reg *prometheus.Registry, inspector *asynq.Inspector, pipelines *tasks.Registry) (*apiMetrics, error) {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := &apiMetrics{
		gatherer: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "staged_http_requests_total",
			Help: "HTTP requests the API answered, by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "staged_http_request_duration_seconds",
			Help:    "Time the API took to answer, by route pattern (event streams and long polls: their whole duration).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"route"}),
		submitted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "staged_jobs_submitted_total",
			Help: "Jobs the API created, by type (idempotent repeats are not counted).",
		}, []string{"type"}),
		canceled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "staged_jobs_canceled_total",
			Help: "Cancels the API accepted (202), by job type.",
		}, []string{"type"}),
		routes:      map[string]*routeMetrics{},
		submittedBy: map[string]prometheus.Counter{},
		canceledBy:  map[string]prometheus.Counter{},
	}
	var err error
	m.requests = register(reg, m.requests, &err)
	m.duration = register(reg, m.duration, &err)
	m.submitted = register(reg, m.submitted, &err)
	m.canceled = register(reg, m.canceled, &err)
	register[prometheus.Collector](reg, collectors.NewGoCollector(), &err)
	register[prometheus.Collector](reg, collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), &err)
	register[prometheus.Collector](reg, newCachedCollector(metrics.NewQueueMetricsCollector(inspector), queueMetricsTTL), &err)
	if err != nil {
		return nil, err
	}
	for _, name := range pipelines.Names() { // nil: none
		m.submittedBy[name] = m.submitted.WithLabelValues(name)
		m.canceledBy[name] = m.canceled.WithLabelValues(name)
	}
	m.other = m.route(routeOther)
	return m, nil
}

// register registers c on reg, or returns the collector registered there
// already under the same description. The first error is kept in *err.
func register[C prometheus.Collector](reg prometheus.Registerer, c C, err *error) C {
	rerr := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	switch {
	case rerr == nil:
	case errors.As(rerr, &are):
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	case *err == nil:
		*err = rerr
	}
	return c
}

// route returns the metrics of route pattern p, creating them (at setup).
func (m *apiMetrics) route(p string) *routeMetrics {
	if r, ok := m.routes[p]; ok {
		return r
	}
	r := &routeMetrics{route: p, requests: m.requests, duration: m.duration.WithLabelValues(p)}
	r.codes.Store(&map[uint32]prometheus.Counter{})
	m.routes[p] = r
	return r
}

// observe records one answered request.
func (m *apiMetrics) observe(route, method string, code int, d time.Duration) {
	r, ok := m.routes[route]
	if !ok {
		r = m.other
	}
	r.duration.Observe(d.Seconds())
	r.counter(methodIndex(method), code).Inc()
}

// jobSubmitted and jobCanceled count a job of type typ.
func (m *apiMetrics) jobSubmitted(typ string) { count(m.submittedBy, m.submitted, typ) }
func (m *apiMetrics) jobCanceled(typ string)  { count(m.canceledBy, m.canceled, typ) }

func count(by map[string]prometheus.Counter, vec *prometheus.CounterVec, typ string) {
	if c, ok := by[typ]; ok {
		c.Inc()
		return
	}
	vec.WithLabelValues(typ).Inc() // a type another API process registered
}

// handler serves the metrics in the Prometheus text format.
func (m *apiMetrics) handler() echo.HandlerFunc {
	h := promhttp.HandlerFor(m.gatherer, promhttp.HandlerOpts{
		ErrorHandling:     promhttp.ContinueOnError,
		EnableOpenMetrics: false,
	})
	return echo.WrapHandler(h)
}

// routeMetrics are one route's children: its duration observer and its
// request counters by method and code, kept in a copy-on-write map so
// that reading one is a single atomic load.
type routeMetrics struct {
	route    string
	requests *prometheus.CounterVec
	duration prometheus.Observer
	mu       sync.Mutex // serialises adding to codes
	codes    atomic.Pointer[map[uint32]prometheus.Counter]
}

func (r *routeMetrics) counter(method, code int) prometheus.Counter {
	k := uint32(method)<<16 | uint32(code)&0xffff
	if c, ok := (*r.codes.Load())[k]; ok {
		return c
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old := *r.codes.Load()
	if c, ok := old[k]; ok {
		return c
	}
	c := r.requests.WithLabelValues(r.route, methods[method], strconv.Itoa(code))
	next := make(map[uint32]prometheus.Counter, len(old)+1)
	for kk, v := range old {
		next[kk] = v
	}
	next[k] = c
	r.codes.Store(&next)
	return c
}

// cachedCollector reuses what an expensive collector collected for ttl.
// A scrape that comes while another is refreshing gets the previous
// values instead of waiting. It describes nothing (an unchecked
// collector), so registering it costs no collection.
type cachedCollector struct {
	inner      prometheus.Collector
	ttl        time.Duration
	mu         sync.Mutex
	at         time.Time
	refreshing bool
	metrics    []prometheus.Metric
}

func newCachedCollector(inner prometheus.Collector, ttl time.Duration) *cachedCollector {
	return &cachedCollector{inner: inner, ttl: ttl}
}

// Describe sends nothing: the collector is unchecked.
func (c *cachedCollector) Describe(chan<- *prometheus.Desc) {}

// Collect sends the cached metrics, refreshing them first when they are
// older than ttl and no other scrape is refreshing them.
func (c *cachedCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	if !c.refreshing && time.Since(c.at) >= c.ttl {
		c.refreshing = true
		c.mu.Unlock()
		fresh := collect(c.inner)
		c.mu.Lock()
		c.metrics, c.at, c.refreshing = fresh, time.Now(), false
	}
	ms := c.metrics
	c.mu.Unlock()
	for _, m := range ms {
		ch <- m
	}
}

// collect runs inner.Collect to completion and returns what it sent.
func collect(inner prometheus.Collector) []prometheus.Metric {
	ch := make(chan prometheus.Metric, 64)
	done := make(chan struct{})
	var out []prometheus.Metric
	go func() {
		defer close(done)
		for m := range ch {
			out = append(out, m)
		}
	}()
	inner.Collect(ch)
	close(ch)
	<-done
	return out
}
