// Package worker runs staged jobs: an asynq server whose one handler is the
// stage runner, plus the background components that keep jobs safe while
// they run.
//
// A Worker is made of, each in its own file:
//
//   - the runner (runner.go): claims a job and runs its remaining stages in
//     order; it writes the job's record write-behind (write.go): terminal
//     states and the boundaries of stages that ran FlushInterval or longer
//     at once, the rest folded into a write within FlushInterval;
//   - the progress reporter (progress.go): coalesces a stage's progress
//     reports into at most one record write per job per FlushInterval;
//   - the lease keeper (lease.go): renews the lease of each running job and
//     stops it when another worker has taken it over (fenced);
//   - the reconciler (reconciler.go): takes over jobs whose worker stopped
//     renewing its lease (killed, or cut off from Redis);
//   - the canceler (canceler.go): one pub/sub subscription that stops
//     running jobs canceled through the API.
//
// metrics.go holds the worker's Prometheus collectors (MetricsHandler,
// Gatherer, ServeMetrics).
//
// The protocol they follow is docs/ARCHITECTURE.md.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/internal/catalog"
	"github.com/staged-dev/staged/internal/store"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/staged-dev/staged/tasks"
)

// Config defaults: a zero Config field means the constant named after it.
const (
	// ConcurrencyDefault is how many jobs a worker runs at once.
	ConcurrencyDefault = 10
	// LeaseDefault is how long a job stays owned without a lease renewal.
	LeaseDefault = 8 * time.Second
	// ReconcileEveryDefault is how often lapsed leases are looked for.
	ReconcileEveryDefault = time.Second
	// ShutdownGraceDefault is how long running stages may go on at shutdown.
	ShutdownGraceDefault = 10 * time.Second
	// TaskCheckIntervalDefault is how often idle queues are polled when no
	// wake-up comes (see wake.go).
	TaskCheckIntervalDefault = 100 * time.Millisecond
	// FlushIntervalDefault is the least time between two progress writes of a job.
	FlushIntervalDefault = 100 * time.Millisecond
	// RetryBaseDefault is the delay after a job's first failed attempt.
	RetryBaseDefault = time.Second
	// RetryMaxDefault is the longest delay between two attempts.
	RetryMaxDefault = 5 * time.Minute
	// MaxPayloadDefault is the most bytes of a stage output, partial result
	// or result, as JSON.
	MaxPayloadDefault = 1 << 20
)

const (
	// abandonAfter is how long a stage whose context has ended may take to
	// return before the runner stops waiting for it (the stage goroutine is
	// left behind; a stage must return when its context is done).
	abandonAfter = 2 * time.Second
	// writeTimeout bounds one record write.
	writeTimeout = 5 * time.Second
	// asynqCheckInterval is asynq's pause after an empty poll (with a
	// jitter of ±50%); the waker has waited before it.
	asynqCheckInterval = 2 * time.Millisecond
	// logEvery is the least time between two log lines about the same
	// recurring trouble (Redis down), so an outage does not flood the log.
	logEvery = 10 * time.Second
)

// Config configures a Worker. The zero value of every field but the Redis
// connection and Registry means its documented default.
type Config struct {
	// RedisConnOpt is the Redis the asynq server and client use. Nil means
	// Redis.
	RedisConnOpt asynq.RedisConnOpt
	// Redis is the client of the job store. Nil means a client made from
	// RedisConnOpt, closed when Run returns. One of the two is required.
	Redis redis.UniversalClient
	// Registry holds the pipelines this worker runs. Required.
	Registry *tasks.Registry
	// Concurrency is the most jobs run at once; 0 means ConcurrencyDefault.
	Concurrency int
	// Queues are the asynq queues to take jobs from, with their priorities;
	// nil means {"default": 1}.
	Queues map[string]int
	// Lease is how long a job stays owned by this worker without a renewal;
	// 0 means LeaseDefault. A job whose worker dies runs again elsewhere
	// about Lease+ReconcileEvery later.
	Lease time.Duration
	// RenewEvery is how often leases are renewed; 0 means Lease/4. It must
	// be shorter than Lease.
	RenewEvery time.Duration
	// ReconcileEvery is how often lapsed leases are looked for; 0 means
	// ReconcileEveryDefault.
	ReconcileEvery time.Duration
	// ShutdownGrace is how long running stages may go on once Run's context
	// is done; 0 means ShutdownGraceDefault. A job whose stage finishes in
	// time is handed back before its next stage; after the grace period the
	// running stages are canceled and their jobs handed back, to rerun the
	// unfinished stage on another worker.
	ShutdownGrace time.Duration
	// TaskCheckInterval is how often idle queues are polled when no wake-up
	// arrives; 0 means TaskCheckIntervalDefault. An idle worker learns of a
	// new job from a push (store.Wake, which the API sends after each
	// enqueue) and dequeues it at once; the poll is the fallback for lost
	// pushes and for retries coming due. At 100ms an idle worker costs
	// about 30 Redis commands/s.
	TaskCheckInterval time.Duration
	// FlushInterval is the least time between two progress writes of one
	// job; 0 means FlushIntervalDefault. Terminal states, and the boundary
	// after a stage that ran FlushInterval or longer, are written at once;
	// the boundaries of shorter stages are folded into the next write,
	// within FlushInterval. A crash reruns at most FlushInterval of short
	// stages.
	FlushInterval time.Duration
	// RetryBase and RetryMax bound the exponential backoff between failed
	// attempts (RetryBase, 2×RetryBase, 4×... up to RetryMax); 0 means
	// RetryBaseDefault and RetryMaxDefault.
	RetryBase, RetryMax time.Duration
	// KeepAllEvents keeps every job's whole event stream (up to 1,000
	// entries, also once finished) instead of as many as fit in 24 KiB and
	// only the final event once finished: for tests and debugging, at a
	// cost in memory (STAGED_KEEP_ALL_EVENTS).
	KeepAllEvents bool
	// MaxPayload is the most bytes of a stage's output, partial result or
	// job result as JSON; 0 means MaxPayloadDefault. A larger one fails the
	// job at once, without retries.
	MaxPayload int
	// Heartbeat is how often the worker refreshes its entry in the
	// pipeline catalogue (its pipelines' definitions and its instance);
	// 0 means catalog.HeartbeatDefault. The API counts the worker as gone
	// three heartbeats after its last one.
	Heartbeat time.Duration
	// DefinitionTTL is how long the catalogue keeps a pipeline's
	// definition after the last heartbeat of a worker that runs it; 0
	// means catalog.DefinitionTTLDefault. Until then the API accepts its
	// jobs, with a warning that no live worker runs it.
	DefinitionTTL time.Duration
	// OrphanAfter is how long a queued job waits for a worker with the
	// definition it was accepted under (after a deploy changed the
	// pipeline's stages) before it fails with an error that says so; 0
	// means catalog.OrphanAfterDefault.
	OrphanAfter time.Duration
	// Metrics is where the worker registers its Prometheus collectors (see
	// metrics.go); nil means a private registry, served by MetricsHandler.
	// Collectors another Worker registered there already are shared.
	Metrics prometheus.Registerer
	// Logger is where the worker logs; nil means slog.Default(). Every line
	// about a job carries its id as the attribute job_id; none carries a
	// job's input, partial result or result.
	Logger *slog.Logger
	// Now is the clock of the job records; nil means time.Now.
	Now func() time.Time
}

// withDefaults returns c with its zero fields set to their defaults, or an
// error naming the first invalid field.
func (c Config) withDefaults() (Config, error) {
	if c.RedisConnOpt == nil && c.Redis == nil {
		return c, errors.New("worker: Config.RedisConnOpt or Config.Redis is required")
	}
	if c.Registry == nil || len(c.Registry.All()) == 0 {
		return c, errors.New("worker: Config.Registry is required and must hold at least one pipeline")
	}
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"Concurrency", int64(c.Concurrency)}, {"Lease", int64(c.Lease)}, {"RenewEvery", int64(c.RenewEvery)},
		{"ReconcileEvery", int64(c.ReconcileEvery)}, {"ShutdownGrace", int64(c.ShutdownGrace)},
		{"TaskCheckInterval", int64(c.TaskCheckInterval)}, {"FlushInterval", int64(c.FlushInterval)},
		{"RetryBase", int64(c.RetryBase)}, {"RetryMax", int64(c.RetryMax)}, {"MaxPayload", int64(c.MaxPayload)},
		{"Heartbeat", int64(c.Heartbeat)}, {"DefinitionTTL", int64(c.DefinitionTTL)}, {"OrphanAfter", int64(c.OrphanAfter)},
	} {
		if f.v < 0 {
			return c, fmt.Errorf("worker: Config.%s must not be negative", f.name)
		}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.Concurrency == 0 {
		c.Concurrency = ConcurrencyDefault
	}
	if len(c.Queues) == 0 {
		c.Queues = map[string]int{store.DefaultQueue: 1}
	}
	for q, prio := range c.Queues {
		if q == "" || prio <= 0 {
			return c, fmt.Errorf("worker: Config.Queues: queue %q needs a name and a positive priority", q)
		}
	}
	def(&c.Lease, LeaseDefault)
	if c.Lease < time.Millisecond {
		return c, errors.New("worker: Config.Lease must be at least 1ms")
	}
	def(&c.RenewEvery, c.Lease/4)
	if c.RenewEvery >= c.Lease {
		return c, fmt.Errorf("worker: Config.RenewEvery (%v) must be shorter than Config.Lease (%v)", c.RenewEvery, c.Lease)
	}
	def(&c.ReconcileEvery, ReconcileEveryDefault)
	def(&c.ShutdownGrace, ShutdownGraceDefault)
	def(&c.TaskCheckInterval, TaskCheckIntervalDefault)
	def(&c.FlushInterval, FlushIntervalDefault)
	def(&c.Heartbeat, catalog.HeartbeatDefault)
	def(&c.DefinitionTTL, catalog.DefinitionTTLDefault)
	def(&c.OrphanAfter, catalog.OrphanAfterDefault)
	def(&c.RetryBase, RetryBaseDefault)
	def(&c.RetryMax, RetryMaxDefault)
	if c.RetryMax < c.RetryBase {
		return c, fmt.Errorf("worker: Config.RetryMax (%v) must not be shorter than Config.RetryBase (%v)", c.RetryMax, c.RetryBase)
	}
	if c.MaxPayload == 0 {
		c.MaxPayload = MaxPayloadDefault
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, nil
}

// Worker runs jobs; make one with New and start it with Run.
type Worker struct {
	cfg       Config
	log       *slog.Logger
	rdb       redis.UniversalClient
	ownsRedis bool
	store     *store.Store
	client    *asynq.Client
	srv       *asynq.Server
	metrics   *metrics

	runs       *runSet
	stages     *stagePool // the goroutines stages run on (stagepool.go)
	canceler   *canceler
	reconciler *reconciler
	waker      *waker
	taskEnds   *taskEnds // group commit of asynq's task-ending scripts (taskends.go)

	asynqRdb     redis.UniversalClient // asynq server's client, with the waker's and taskEnds' hooks
	ownsAsynqRdb bool
	publisher    *catalog.Publisher
	orphans      *orphanSweeper
	digests      map[string]string // pipeline name -> definition digest

	// renew is store.Renew; tests replace it to cut a worker off.
	renew func(ctx context.Context, id string, token int64, lease time.Duration) (bool, error)
	// save is store.Save, the runner's record writes; tests replace it too.
	save func(ctx context.Context, j *api.Job, token int64, a store.SaveArgs) (store.SaveResult, error)

	// onDrain, if set, is called when shutdown begins (a test signal).
	onDrain func()

	writeLog throttle // for retried record writes

	claimTrips atomic.Int64 // claims the handlers made themselves, not the dequeue (tests)

	started  atomic.Bool
	draining atomic.Bool // set when shutdown begins: no stage starts after it
	wg       sync.WaitGroup
}

// New validates cfg and returns a Worker; the error names the bad field.
func New(cfg Config) (*Worker, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Metrics, cfg.Registry)
	if err != nil {
		return nil, err
	}
	w := &Worker{cfg: cfg, log: cfg.Logger.With("component", "worker"), rdb: cfg.Redis, runs: newRunSet(), metrics: m,
		stages: newStagePool(2 * cfg.Concurrency)} // a job's attempt and its stage
	if w.rdb == nil {
		c, ok := cfg.RedisConnOpt.MakeRedisClient().(redis.UniversalClient)
		if !ok {
			return nil, fmt.Errorf("worker: Config.RedisConnOpt of type %T makes no go-redis client", cfg.RedisConnOpt)
		}
		w.rdb, w.ownsRedis = c, true
	}
	w.store = store.NewStore(w.rdb)
	w.store.KeepAllEvents = cfg.KeepAllEvents
	w.store.Now = cfg.Now
	w.renew, w.save = w.store.Renew, w.store.Save
	w.client = asynq.NewClientFromRedisClient(w.rdb)
	w.digests = map[string]string{}
	for _, p := range cfg.Registry.All() {
		w.digests[p.Name] = p.Digest()
	}
	queues := taskQueues(cfg.Queues, w.digests)
	acfg := asynq.Config{
		Concurrency: cfg.Concurrency,
		Queues:      queues,
		// The waker (wake.go) does the idle waiting, TaskCheckInterval at
		// most; asynq's own pause after an empty poll stays short.
		TaskCheckInterval: asynqCheckInterval,
		// asynq moves due retries to their queue on this beat.
		DelayedTaskCheckInterval: min(max(cfg.RetryBase, 50*time.Millisecond), time.Second),
		RetryDelayFunc:           w.retryDelay,
		IsFailure:                isFailure,
		// Run drains the running jobs itself within ShutdownGrace before it
		// shuts asynq down; asynq must not abort them first.
		ShutdownTimeout: cfg.ShutdownGrace + abandonAfter + 5*time.Second,
		Logger:          asynqLogger{cfg.Logger.With("component", "asynq")},
		LogLevel:        asynq.InfoLevel,
	}
	// asynq's server gets a client of its own when it can, for the waker's
	// hook (wake.go); else the hook goes on Config.Redis, where it only
	// touches asynq's dequeue.
	w.waker = newWaker(queues, cfg.TaskCheckInterval)
	w.asynqRdb = w.rdb
	if cfg.RedisConnOpt != nil {
		if c, ok := cfg.RedisConnOpt.MakeRedisClient().(redis.UniversalClient); ok {
			w.asynqRdb, w.ownsAsynqRdb = c, true
		}
	}
	w.waker.pf = &prefetcher{rdb: w.asynqRdb, conc: cfg.Concurrency, max: prefetchMax, hold: prefetchHold,
		onErr: func(err error, q string, ids []any) {
			w.log.Error("cannot hand prefetched tasks back to their queue; asynq's recoverer retries them once their lease lapses",
				"queue", q, "task_ids", ids, "err", err)
		}}
	if _, cluster := w.asynqRdb.(*redis.ClusterClient); !cluster && w.store.TakesClaims() {
		// One node: the dequeue claims the jobs of the tasks it takes.
		w.waker.pf.take, w.waker.pf.lease = w.store, cfg.Lease
		w.waker.pf.onUnclaimErr = func(err error, bs []buffered) {
			for _, b := range bs {
				id, _ := store.JobOfTask(b.t.TaskID)
				w.log.Error("cannot give back the claim of a prefetched job handed back to its queue; it runs again once its lease lapses",
					"job_id", id, "task_id", b.t.TaskID, "err", err)
			}
		}
	}
	// taskEnds is the outer hook, so that its answer to asynq's
	// MarkAsComplete comes one frame shallower: asynq calls it on a new
	// goroutine per task, whose small stack the waker's frame made grow
	// (copying it: 5-6% of the drain bench's worker CPU). The two hooks
	// handle different commands.
	w.taskEnds = newTaskEnds(w.asynqRdb)
	w.asynqRdb.AddHook(w.taskEnds)
	w.asynqRdb.AddHook(w.waker)
	w.srv = asynq.NewServerFromRedisClient(w.asynqRdb, acfg)
	w.canceler = &canceler{w: w}
	w.reconciler = &reconciler{w: w, insp: asynq.NewInspectorFromRedisClient(w.rdb), quit: make(chan struct{}), done: make(chan struct{})}
	w.publisher = catalog.NewPublisher(w.rdb, cfg.Registry, catalog.PublisherConfig{
		Heartbeat: cfg.Heartbeat, DefinitionTTL: cfg.DefinitionTTL, Logger: w.log})
	w.orphans = newOrphanSweeper(w)
	return w, nil
}

// Run processes jobs until ctx is done, then shuts down gracefully: it
// stops taking jobs, lets running stages finish for up to ShutdownGrace and
// hands their jobs back at the next stage boundary, then cancels the stages
// still running and hands those jobs back too, so that other workers resume
// them. It returns nil after a clean shutdown. Run may be called once.
func (w *Worker) Run(ctx context.Context) error {
	if !w.started.CompareAndSwap(false, true) {
		return errors.New("worker: Run called twice")
	}
	// Components start in this order and stop in the reverse order of their
	// dependencies: the canceler must listen before any job runs, and keeps
	// listening while running jobs drain. The store's combiner (group commit
	// of record writes) runs from first to last, and so does the group
	// commit of asynq's task ends.
	w.store.StartCombiner(context.Background())
	w.taskEnds.start()
	w.canceler.start(&w.wg)
	w.reconciler.start(&w.wg)
	// The catalogue knows this worker before it takes a job.
	w.publisher.Start(ctx)
	w.orphans.start(&w.wg)
	if err := w.srv.Start(asynq.HandlerFunc(w.handle)); err != nil {
		w.orphans.shutdown()
		w.publisher.Stop()
		w.reconciler.shutdown()
		w.canceler.shutdown()
		w.wg.Wait()
		w.taskEnds.stop()
		w.store.Close()
		return fmt.Errorf("worker: start asynq server: %w", err)
	}
	w.log.Info("worker started", "concurrency", w.cfg.Concurrency, "queues", w.cfg.Queues,
		"pipelines", w.cfg.Registry.Names(), "lease", w.cfg.Lease)
	<-ctx.Done()
	w.shutdown()
	return nil
}

// shutdown stops the worker, in this order:
//
//  1. asynq stops taking new tasks, and no job starts another stage;
//  2. the reconciler stops taking over other workers' jobs;
//  3. running stages get ShutdownGrace to finish; each job is handed back
//     at its next stage boundary;
//  4. stages still running are canceled and their jobs handed back;
//  5. the asynq server shuts down (its handlers have returned by now);
//  6. the canceler unsubscribes.
func (w *Worker) shutdown() {
	w.log.Info("worker shutting down", "grace", w.cfg.ShutdownGrace, "running", w.runs.len())
	w.draining.Store(true)
	if w.onDrain != nil {
		w.onDrain()
	}
	w.waker.stop()
	w.srv.Stop()
	// asynq's processor has stopped dequeuing: the prefetched tasks no
	// handler took go back to their queues, for the other workers.
	hctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	w.waker.pf.stop(hctx)
	cancel()
	w.publisher.Stop() // takes no more jobs: the API's worker counts drop at once
	w.orphans.shutdown()
	w.reconciler.shutdown()
	grace := time.NewTimer(w.cfg.ShutdownGrace)
	select {
	case <-w.runs.idle():
		grace.Stop()
	case <-grace.C:
		n := w.runs.abortAll()
		w.log.Warn("shutdown grace period over: canceling running stages and handing their jobs back", "jobs", n)
		late := time.NewTimer(abandonAfter + writeTimeout)
		select {
		case <-w.runs.idle():
			late.Stop()
		case <-late.C:
			w.log.Error("jobs still running after the shutdown grace period; their leases will lapse and other workers take them over", "jobs", w.runs.len())
		}
	}
	w.srv.Shutdown()
	w.taskEnds.stop()
	w.canceler.shutdown()
	w.wg.Wait()
	w.stages.stop()
	w.store.Close()
	if w.ownsAsynqRdb {
		w.asynqRdb.Close()
	}
	if w.ownsRedis {
		w.rdb.Close()
	}
	w.log.Info("worker stopped")
}

// taskQueues returns the asynq queues a worker serves: for each configured
// queue, one per pipeline and definition (catalog.QueueName), each with the
// queue's weight, so that the configured queues keep their ratios.
func taskQueues(queues map[string]int, digests map[string]string) map[string]int {
	out := make(map[string]int, len(queues)*len(digests))
	for q, weight := range queues {
		for name, d := range digests {
			out[catalog.QueueName(q, name, d)] = weight
		}
	}
	return out
}

// backoff is the delay after failed attempt n (0-based) of a task:
// RetryBase doubled n times, at most RetryMax. asynq's RetryDelayFunc is
// this function, so the runner can show when the next attempt runs.
func (w *Worker) backoff(n int) time.Duration {
	d := w.cfg.RetryBase
	for i := 0; i < n && d < w.cfg.RetryMax; i++ {
		d *= 2
	}
	return min(d, w.cfg.RetryMax)
}

// retryDelay is asynq's RetryDelayFunc: the backoff after failed attempt
// n, and none for the task of a worker that died (its asynq lease
// expired): that task only completes, its job taken over meanwhile, or
// resumes the job at once.
func (w *Worker) retryDelay(n int, err error, _ *asynq.Task) time.Duration {
	if errors.Is(err, asynq.ErrLeaseExpired) {
		return 0
	}
	return w.backoff(n)
}

// isFailure is asynq's IsFailure: whether a task's error counts as a
// failed attempt, one of the job's retries. Redis trouble does not, nor a
// worker that died (the reconciler takes its job over without a retry).
func isFailure(err error) bool {
	return !isInfra(err) && !errors.Is(err, asynq.ErrLeaseExpired)
}

func (w *Worker) now() time.Time { return w.cfg.Now().UTC() }

// infraError marks a handler error caused by Redis trouble, not by the
// job: asynq retries the task without counting a failed attempt.
type infraError struct{ err error }

func (e infraError) Error() string { return e.err.Error() }
func (e infraError) Unwrap() error { return e.err }

func isInfra(err error) bool {
	var ie infraError
	return errors.As(err, &ie)
}

// throttle lets through one log line per logEvery, so recurring trouble
// (Redis down) is logged without flooding the log.
type throttle struct {
	mu   sync.Mutex
	last time.Time
}

func (t *throttle) allow() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if now := time.Now(); now.Sub(t.last) >= logEvery {
		t.last = now
		return true
	}
	return false
}

// asynqLogger sends asynq's log lines to slog. asynq names the task a
// line is about in its message ("task id=ID"; a task id is its job's id,
// with "-gN" for later generations), so the job ids found there become the
// attribute job_id (job_ids when a line names several).
type asynqLogger struct{ l *slog.Logger }

func (a asynqLogger) Debug(args ...any) { a.log(slog.LevelDebug, args) }
func (a asynqLogger) Info(args ...any)  { a.log(slog.LevelInfo, args) }
func (a asynqLogger) Warn(args ...any)  { a.log(slog.LevelWarn, args) }
func (a asynqLogger) Error(args ...any) { a.log(slog.LevelError, args) }

// Fatal is never called by asynq's server; it logs like Error rather than
// exiting a process that may be running other jobs.
func (a asynqLogger) Fatal(args ...any) { a.log(slog.LevelError, args) }

func (a asynqLogger) log(level slog.Level, args []any) {
	ctx := context.Background()
	if !a.l.Enabled(ctx, level) {
		return
	}
	msg := fmt.Sprint(args...)
	switch ids := jobIDsIn(msg); len(ids) {
	case 0:
		a.l.Log(ctx, level, msg)
	case 1:
		a.l.Log(ctx, level, msg, "job_id", ids[0])
	default:
		a.l.Log(ctx, level, msg, "job_ids", ids)
	}
}

// jobIDsIn returns the distinct job ids (UUIDs) in s, in order.
func jobIDsIn(s string) []string {
	var ids []string
	for i := 0; i+36 <= len(s); i++ {
		if s[i+8] != '-' || s[i+13] != '-' || !api.ValidID(s[i:i+36]) {
			continue
		}
		if id := s[i : i+36]; !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
		i += 35
	}
	return ids
}
