package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/tasks"
)

// MetricsAddrDefault is where staged worker serves the worker's Prometheus
// metrics, at /metrics, when STAGED_METRICS_ADDR is unset.
const MetricsAddrDefault = ":9090"

// The worker's Prometheus metrics, all named staged_*:
//
//	staged_jobs_started_total{type}              jobs whose first stage started (once per job)
//	staged_jobs_finished_total{type,state}       jobs this worker finished: succeeded, failed, canceled
//	staged_stage_duration_seconds{type,stage}    stage runs that returned without an error
//	staged_job_duration_seconds{type}            started_at → finished_at of finished jobs that started
//	staged_submit_to_start_seconds{type}         created_at → first stage started (first attempt only)
//	staged_retries_total{type}                   failed attempts that asynq retries
//	staged_takeovers_total                       jobs taken over after a lapsed lease
//	staged_handbacks_total                       jobs handed back at shutdown
//	staged_fenced_total                          runs stopped because another worker took their job over
//	staged_cancels_total                         jobs this worker ended canceled
//
// A queued job canceled through the API never reaches a worker: the API
// counts it (staged_jobs_canceled_total on its /metrics).
//
// Label values are bounded: type is a pipeline registered in this worker
// (any other type is "unregistered"); stage is a stage name of that
// pipeline. Pipelines whose stages are built from the input (sleep's and
// chain's stage1..stage100) get one series per distinct name, at most
// maxStageLabels per type; further names share the series stage="other".
//
// The label children of every type and stage are resolved once and
// cached, so the runner's hot path does one map lookup per stage and no
// allocation; Progress.Report touches no metric at all.

const (
	// maxStageLabels bounds the stage label values of one pipeline.
	maxStageLabels = 256
	// typeUnregistered labels jobs of a type this worker does not know.
	typeUnregistered = "unregistered"
	// stageOther labels the stages of a type beyond maxStageLabels.
	stageOther = "other"
)

var (
	// durationBuckets span a 5ms stage to a 4h training run.
	durationBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400}
	// latencyBuckets resolve the few-ms submit-to-start of an idle worker
	// and still show a backlog of an hour.
	latencyBuckets = []float64{.001, .0025, .005, .01, .02, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600}
)

// metrics holds the worker's collectors and the label children resolved
// per job type.
type metrics struct {
	gatherer prometheus.Gatherer // nil when Config.Metrics is not a Gatherer

	started, finished, retries *prometheus.CounterVec
	stageDur                   *prometheus.HistogramVec
	jobDur, submitToStart      *prometheus.HistogramVec

	takeovers, handbacks, fenced, cancels prometheus.Counter

	pipelines *tasks.Registry
	mu        sync.RWMutex
	byType    map[string]*typeMetrics
}

// typeMetrics are the label children of one job type.
type typeMetrics struct {
	vecs                        *metrics
	typ                         string
	started, retries            prometheus.Counter
	succeeded, failed, canceled prometheus.Counter
	jobDur, submitToStart       prometheus.Observer

	mu     sync.RWMutex
	stages map[string]prometheus.Observer
	other  prometheus.Observer // stage="other", made when first needed
}

// newMetrics registers the worker's collectors on reg (nil: a private
// registry). A collector already registered there by another Worker is
// shared with it.
func newMetrics(reg prometheus.Registerer, pipelines *tasks.Registry) (*metrics, error) {
	m := &metrics{pipelines: pipelines, byType: map[string]*typeMetrics{}}
	if reg == nil {
		r := prometheus.NewRegistry()
		reg, m.gatherer = r, r
	} else if g, ok := reg.(prometheus.Gatherer); ok {
		m.gatherer = g
	}
	var errs []error
	counter := func(name, help string) prometheus.Counter {
		c, err := register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help}))
		errs = append(errs, err)
		return c
	}
	counterVec := func(name, help string, labels ...string) *prometheus.CounterVec {
		c, err := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels))
		errs = append(errs, err)
		return c
	}
	histVec := func(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
		h, err := register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels))
		errs = append(errs, err)
		return h
	}
	m.started = counterVec("staged_jobs_started_total", "Jobs whose first stage started, counted once per job.", "type")
	m.finished = counterVec("staged_jobs_finished_total", "Jobs this worker finished, by final state.", "type", "state")
	m.retries = counterVec("staged_retries_total", "Failed job attempts that will be retried.", "type")
	m.stageDur = histVec("staged_stage_duration_seconds", "Time a stage took to run, for stage runs that succeeded.",
		durationBuckets, "type", "stage")
	m.jobDur = histVec("staged_job_duration_seconds", "Time from a job's start to its end, for finished jobs that started.",
		durationBuckets, "type")
	m.submitToStart = histVec("staged_submit_to_start_seconds", "Time from a job's submit to the start of its first stage.",
		latencyBuckets, "type")
	m.takeovers = counter("staged_takeovers_total", "Jobs taken over from a worker that stopped renewing their lease.")
	m.handbacks = counter("staged_handbacks_total", "Jobs handed back by a shutting-down worker for another to resume.")
	m.fenced = counter("staged_fenced_total", "Job runs stopped because another worker took their job over.")
	m.cancels = counter("staged_cancels_total", "Jobs this worker ended canceled.")
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("worker: Config.Metrics: %w", err)
	}
	for _, p := range pipelines.All() {
		tm := m.forType(p.Name)
		for _, st := range p.Stages {
			tm.stage(st.Name)
		}
	}
	return m, nil
}

// register registers c on reg, or returns the equal collector registered
// there already.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}

// forType returns the label children of job type typ.
func (m *metrics) forType(typ string) *typeMetrics {
	m.mu.RLock()
	tm := m.byType[typ]
	m.mu.RUnlock()
	if tm != nil {
		return tm
	}
	if m.pipelines.Get(typ) == nil {
		typ = typeUnregistered
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if tm = m.byType[typ]; tm != nil {
		return tm
	}
	tm = &typeMetrics{
		vecs: m, typ: typ,
		started:       m.started.WithLabelValues(typ),
		retries:       m.retries.WithLabelValues(typ),
		succeeded:     m.finished.WithLabelValues(typ, string(api.StateSucceeded)),
		failed:        m.finished.WithLabelValues(typ, string(api.StateFailed)),
		canceled:      m.finished.WithLabelValues(typ, string(api.StateCanceled)),
		jobDur:        m.jobDur.WithLabelValues(typ),
		submitToStart: m.submitToStart.WithLabelValues(typ),
		stages:        map[string]prometheus.Observer{},
	}
	m.byType[typ] = tm
	return tm
}

// stage returns the duration histogram of stage name.
func (tm *typeMetrics) stage(name string) prometheus.Observer {
	tm.mu.RLock()
	o := tm.stages[name]
	tm.mu.RUnlock()
	if o != nil {
		return o
	}
	tm.mu.Lock()
	defer tm.mu.Unlock()
	if o = tm.stages[name]; o != nil {
		return o
	}
	if len(tm.stages) >= maxStageLabels {
		if tm.other == nil {
			tm.other = tm.vecs.stageDur.WithLabelValues(tm.typ, stageOther)
		}
		return tm.other
	}
	o = tm.vecs.stageDur.WithLabelValues(tm.typ, name)
	tm.stages[name] = o
	return o
}

// jobStarted counts the first start of a job created at created.
func (tm *typeMetrics) jobStarted(created, now time.Time) {
	tm.started.Inc()
	tm.submitToStart.Observe(max(now.Sub(created), 0).Seconds())
}

// jobFinished counts job j, which just reached its terminal state.
func (tm *typeMetrics) jobFinished(j *api.Job) {
	switch j.State {
	case api.StateSucceeded:
		tm.succeeded.Inc()
	case api.StateFailed:
		tm.failed.Inc()
	case api.StateCanceled:
		tm.canceled.Inc()
		tm.vecs.cancels.Inc()
	default:
		return
	}
	if j.StartedAt != nil && j.FinishedAt != nil {
		tm.jobDur.Observe(max(j.FinishedAt.Sub(*j.StartedAt), 0).Seconds())
	}
}

// Gatherer returns the registry holding the worker's metrics: the private
// one when Config.Metrics is nil, else Config.Metrics if it is also a
// prometheus.Gatherer (as a *prometheus.Registry is), else nil. Merge it
// into another endpoint with prometheus.Gatherers.
func (w *Worker) Gatherer() prometheus.Gatherer { return w.metrics.gatherer }

// MetricsHandler serves Gatherer in the Prometheus exposition format. When
// there is no Gatherer it answers 404, naming where the metrics went.
func (w *Worker) MetricsHandler() http.Handler {
	if w.metrics.gatherer == nil {
		return http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
			http.Error(rw, "the worker's metrics are registered on Config.Metrics, which is not a prometheus.Gatherer; serve them from there",
				http.StatusNotFound)
		})
	}
	return promhttp.HandlerFor(w.metrics.gatherer, promhttp.HandlerOpts{
		ErrorLog:      promLogger{w.log},
		ErrorHandling: promhttp.ContinueOnError,
		Timeout:       metricsTimeout,
	})
}

// metricsTimeout bounds one scrape of the worker's listener.
const metricsTimeout = 10 * time.Second

// ServeMetrics serves MetricsHandler at /metrics on ln until ctx is done.
// It returns nil after ctx ends, or the error that stopped the listener.
func (w *Worker) ServeMetrics(ctx context.Context, ln net.Listener) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", w.MetricsHandler())
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      metricsTimeout + 5*time.Second,
		IdleTimeout:       time.Minute,
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			srv.Shutdown(sctx)
		case <-done:
		}
	}()
	w.log.Info("serving worker metrics", "addr", ln.Addr().String(), "path", "/metrics")
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("worker: metrics listener %s: %w", ln.Addr(), err)
	}
	return nil
}

// promLogger sends promhttp's error lines to slog.
type promLogger struct{ l *slog.Logger }

func (p promLogger) Println(v ...any) { p.l.Error("metrics: " + fmt.Sprint(v...)) }
