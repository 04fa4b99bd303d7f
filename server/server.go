// Package server is staged's HTTP API: an Echo application that submits jobs
// (store.Create + store.Enqueue), reads them back from Redis in one round
// trip, long-polls and streams their changes (one Redis subscription per
// process, fanned out by the hub), cancels them, and serves the job page and
// the asynqmon dashboard. API keys and tenants are in auth.go, the
// Redis-backed rate limit in ratelimit.go, the Prometheus metrics in
// metrics.go and the OpenAPI description in openapi.json. Routes are
// registered in routes.go; each resource has its own file.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/staged-dev/staged/internal/catalog"
	"github.com/staged-dev/staged/internal/store"

	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/staged-dev/staged/tasks"
)

// Config defaults.
const (
	// MaxBodyDefault is the largest request body accepted (1 MiB).
	MaxBodyDefault int64 = 1 << 20
	// MaxWaitDefault caps ?wait on submit and get.
	MaxWaitDefault = 60 * time.Second
	// HeartbeatDefault is the interval of the SSE keep-alive comment.
	HeartbeatDefault = 15 * time.Second
	// RedisTimeoutDefault bounds each Redis call a handler makes, so that a
	// request answers (503) in bounded time when Redis is down.
	RedisTimeoutDefault = 2 * time.Second
	// WaitTimeoutDefault bounds the wait for replicas (Config.WaitReplicas).
	WaitTimeoutDefault = time.Second
	// ShutdownTimeoutDefault bounds how long Run drains in-flight requests.
	ShutdownTimeoutDefault = 10 * time.Second
)

// RedisPoolSize is the connection pool that staged api (and dev) give the
// API's Redis client (Config.Redis): at least 100 connections, or
// go-redis's default of 10 per CPU when that is more. Each request that
// reads or writes a job holds a connection for one round trip, and past
// the pool's size requests queue for one: every wait is a goroutine parked
// and woken again. With go-redis's default (20 connections on 2 CPUs) and
// 50 clients polling, that cost the API 11% more CPU per poll than a pool
// of 100 (bench/ab-http.sh, 4 rounds; peers/asynq-raw's Echo handlers use
// 100). Connections are opened on demand, so an idle API holds few.
func RedisPoolSize() int { return max(100, 10*runtime.GOMAXPROCS(0)) }

// HTTP server timeouts set by Run. There is no write timeout: streams and
// long polls run for as long as they need, and bound themselves.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	idleTimeout       = 2 * time.Minute
)

// Config configures a Server. The zero value of every optional field means
// its default.
type Config struct {
	// Redis is the client of the job store, the hub and the health checks.
	// Required.
	Redis redis.UniversalClient
	// RedisConnOpt connects the asynq client, inspector and asynqmon.
	// Required.
	RedisConnOpt asynq.RedisConnOpt
	// Registry, when set, holds pipelines this process runs itself
	// (staged dev, tests): New publishes their definitions in the pipeline
	// catalogue, so that their jobs are accepted before the first worker's
	// heartbeat. Optional: the API learns every job type, its stages and
	// its input schema from the catalogue the workers publish, and never
	// runs pipeline code to accept a job. staged api leaves it nil.
	Registry *tasks.Registry
	// CatalogRefresh is how often the API rereads the pipeline catalogue
	// besides the workers' change notifications; 0 means
	// catalog.RefreshDefault.
	CatalogRefresh time.Duration
	// Retention is how long a finished job stays readable when a submit
	// gives none; 0 means store.RetentionDefault.
	Retention time.Duration
	// MaxBody is the largest request body accepted, larger ones get 413;
	// 0 means MaxBodyDefault.
	MaxBody int64
	// MaxWait caps ?wait; 0 means MaxWaitDefault.
	MaxWait time.Duration
	// Heartbeat is the interval of the SSE keep-alive comment; 0 means
	// HeartbeatDefault.
	Heartbeat time.Duration
	// RedisTimeout bounds each Redis call of a handler; 0 means
	// RedisTimeoutDefault.
	RedisTimeout time.Duration
	// ShutdownTimeout bounds the drain in Run; 0 means
	// ShutdownTimeoutDefault.
	ShutdownTimeout time.Duration
	// Keys are the API keys. Empty means an open API: no key is needed and
	// every request sees every job. Otherwise every /v1 request needs one
	// of them as "Authorization: Bearer <secret>", a key's name is the
	// tenant that owns the jobs it submits, and the dashboard needs a key
	// with Admin set.
	Keys []Key
	// RateLimit is the requests per second allowed to each key (by name)
	// or, when the API is open, to each client IP, counted in Redis so that
	// every API process shares it; 0 means no limit.
	RateLimit float64
	// TenantMaxLive is how many live jobs (queued, running or waiting for
	// a retry) one tenant may have; a submit beyond it gets 429. 0 means
	// store.TenantMaxLiveDefault, a negative number no limit.
	TenantMaxLive int
	// WaitReplicas is how many replicas must have a new job before the
	// submit answers 202 (Redis WAIT, after the job's record and task are
	// written); 0 means none. WaitTimeout bounds that wait; 0 means
	// WaitTimeoutDefault. A submit whose job is not replicated in time
	// answers 503 (the job may still run; an Idempotency-Key tells).
	WaitReplicas int
	WaitTimeout  time.Duration
	// KeepAllEvents keeps every job's whole event stream, for tests and
	// debugging (see the worker's setting of the same name).
	KeepAllEvents bool
	// AuthFailures is how many requests with a wrong key one client
	// address may send in a burst, refilled at as many per minute; past
	// it, its requests that need a key get 429 with Retry-After. 0 means
	// AuthFailuresDefault.
	AuthFailures int
	// MaxStreamsPerKey caps the event streams one key (on an open API, one
	// client address) may hold open in this process; past it, 429 with
	// Retry-After. 0 means MaxStreamsPerKeyDefault, a negative number no cap.
	MaxStreamsPerKey int
	// MaxWaitsPerKey caps the long polls (?wait) one key may hold, like
	// MaxStreamsPerKey. 0 means MaxWaitsPerKeyDefault.
	MaxWaitsPerKey int
	// Queues are the asynq queues a submit may name, in the order error
	// messages list them; nil means just store.DefaultQueue. A submit that
	// names another queue gets 422, so that no job waits on a queue no
	// worker serves (give the workers the same queues) and asynq's
	// per-queue metrics stay bounded. A submit that names none goes to
	// store.DefaultQueue, and gets 422 when that is not one of them.
	// Each name is 1 to 64 characters of a-z, 0-9, _ and - (ValidQueueName).
	Queues []string
	// MonitoringWrite lets the dashboard change queues and tasks (delete,
	// archive, run, pause); false means read-only.
	MonitoringWrite bool
	// Metrics is where the API registers its Prometheus collectors (the
	// Go runtime and process collectors included, unless registered
	// there already) and what GET /metrics serves; nil means a private
	// registry.
	Metrics *prometheus.Registry
	// Logger receives the request log and errors; nil means slog.Default().
	Logger *slog.Logger
	// CheckRedis, when set, is asked by every /readyz after Redis answers
	// a PING: an error means the URL now reaches the wrong kind of node (a
	// replica, after a failover behind a plain URL), and /readyz answers
	// 503 with the error's message. staged api checks the node's role.
	CheckRedis func(ctx context.Context) error
}

func (c *Config) validate() error {
	switch {
	case c.Redis == nil:
		return errors.New("server: Config.Redis is required")
	case c.RedisConnOpt == nil:
		return errors.New("server: Config.RedisConnOpt is required")
	case c.Retention < 0, c.MaxBody < 0, c.MaxWait < 0, c.Heartbeat < 0, c.RedisTimeout < 0, c.ShutdownTimeout < 0:
		return errors.New("server: Config durations and sizes must not be negative")
	case !(c.RateLimit >= 0) || math.IsInf(c.RateLimit, 0):
		return errors.New("server: Config.RateLimit must be a number of requests per second ≥ 0")
	}
	if len(c.Queues) == 0 {
		c.Queues = []string{store.DefaultQueue}
	}
	seen := make(map[string]bool, len(c.Queues))
	for _, q := range c.Queues {
		switch {
		case !ValidQueueName(q):
			return fmt.Errorf("server: Config.Queues: %q is not 1 to %d characters of a-z, 0-9, _ and -", q, maxQueueName)
		case seen[q]:
			return fmt.Errorf("server: Config.Queues: %q appears twice", q)
		}
		seen[q] = true
	}
	c.Queues = slices.Clone(c.Queues) // the caller's slice may change
	if c.Retention == 0 {
		c.Retention = store.RetentionDefault
	}
	if c.MaxBody == 0 {
		c.MaxBody = MaxBodyDefault
	}
	if c.MaxWait == 0 {
		c.MaxWait = MaxWaitDefault
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = HeartbeatDefault
	}
	if c.MaxStreamsPerKey == 0 {
		c.MaxStreamsPerKey = MaxStreamsPerKeyDefault
	}
	if c.MaxWaitsPerKey == 0 {
		c.MaxWaitsPerKey = MaxWaitsPerKeyDefault
	}
	if c.AuthFailures <= 0 {
		c.AuthFailures = AuthFailuresDefault
	}
	if c.WaitTimeout <= 0 {
		c.WaitTimeout = WaitTimeoutDefault
	}
	if c.RedisTimeout == 0 {
		c.RedisTimeout = RedisTimeoutDefault
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = ShutdownTimeoutDefault
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Server is the HTTP API. It is safe for concurrent use.
type Server struct {
	cfg       Config
	log       *slog.Logger
	echo      *echo.Echo
	store     *store.Store
	hub       *hub
	keys      *keyring
	limiter   *rateLimiter // nil when there is no rate limit
	authFails *authFailures
	streams   *holdCap // event streams per key
	waits     *holdCap // long polls per key
	reads     *sharedReads
	metrics   *apiMetrics
	client    *asynq.Client
	waker     *store.Waker // wakes idle workers after each enqueue
	// submitDeadlines bound the submits' Redis calls (submitCtx).
	submitDeadlines *deadlines
	inspector       *asynq.Inspector
	catalog         *catalog.Cache
	monitor         *asynqmon.HTTPHandler
	health          healthCache
	noWorker        atomic.Pointer[noWorkerWarning] // the last one made (readSubmission)

	// newRequestID makes the id of a request that brings none (front).
	newRequestID func() string

	// stopping is closed when the server shuts down: streams and long polls
	// end at once so that the drain does not wait for them.
	stopping  chan struct{}
	stopOnce  sync.Once
	bg        sync.WaitGroup     // background work (task deletes) that Close waits for
	hook      func(point string) // tests only: see testHook
	closeOnce sync.Once
	closeErr  error
}

// New returns a Server for cfg, subscribed to job events. Close releases it.
func New(cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	keys, err := newKeyring(cfg.Keys)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:       cfg,
		log:       cfg.Logger,
		store:     newStore(cfg),
		keys:      keys,
		limiter:   newRateLimiter(cfg.Redis, cfg.RateLimit),
		authFails: newAuthFailures(cfg.AuthFailures),
		streams:   newHoldCap("event streams", cfg.MaxStreamsPerKey),
		waits:     newHoldCap("long polls (?wait)", cfg.MaxWaitsPerKey),
		client:    asynq.NewClient(cfg.RedisConnOpt),
		waker:     store.NewWaker(cfg.Redis),
		inspector: asynq.NewInspector(cfg.RedisConnOpt),
		stopping:  make(chan struct{}),

		submitDeadlines: newDeadlines(cfg.RedisTimeout),
	}
	if s.metrics, err = newMetrics(cfg.Metrics, s.inspector, cfg.Registry); err != nil {
		s.waker.Close()
		s.client.Close()
		s.inspector.Close()
		return nil, err
	}
	mon, err := newMonitor(cfg.RedisConnOpt, cfg.MonitoringWrite)
	if err != nil {
		s.waker.Close()
		s.client.Close()
		s.inspector.Close()
		return nil, err
	}
	s.monitor = mon
	// Group commit: the create scripts of concurrent submits (and the
	// store's other scripts) go to Redis in shared round trips.
	s.store.StartCombiner(context.Background())
	// Group read: the record reads of concurrent polls share round trips,
	// each bounded by RedisTimeout (so a handler's read needs no deadline
	// context of its own).
	s.store.StartReads(context.Background(), cfg.RedisTimeout)
	s.hub = newHub(cfg.Redis, cfg.Logger, cfg.RedisTimeout)
	s.catalog = catalog.NewCache(cfg.Redis, cfg.CatalogRefresh, cfg.Logger)
	if cfg.Registry != nil {
		ctx, cancel := context.WithTimeout(context.Background(), cfg.RedisTimeout)
		if err := catalog.PublishDefinitions(ctx, cfg.Redis, cfg.Registry, 0); err != nil {
			s.log.Warn("cannot publish this process's pipelines in the catalogue; the workers will", "err", err)
		}
		cancel()
	}
	s.reads = &sharedReads{read: s.store.GetOwned, seq: s.hub.seq, timeout: cfg.RedisTimeout, reads: map[string]*recordRead{}}
	s.echo = echo.New()
	s.echo.HideBanner, s.echo.HidePort = true, true
	s.echo.HTTPErrorHandler = s.handleError
	// The client's IP (for the open API's rate limit) is the peer's
	// address, never a header a client could set (behind a proxy, every
	// client shares the proxy's; with keys the limit is per key anyway).
	s.echo.IPExtractor = echo.ExtractIPDirect()
	s.routes()
	for _, r := range s.echo.Routes() {
		s.metrics.route(r.Path)
	}
	return s, nil
}

// Handler returns the HTTP handler (the Echo instance).
func (s *Server) Handler() http.Handler { return s.echo }

// Run serves HTTP on addr until ctx is done, then ends streams and long
// polls, drains in-flight requests for at most Config.ShutdownTimeout and
// returns nil. It returns an error if it cannot listen or serve.
func (s *Server) Run(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("server: listen %s: %w", addr, err)
	}
	hs := &http.Server{
		Handler:           s.echo,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	cctx, stopCatalog := context.WithCancel(ctx)
	defer stopCatalog()
	go s.catalog.Run(cctx)
	s.log.Info("api listening", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("server: serve %s: %w", addr, err)
	case <-ctx.Done():
	}
	s.stop()
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		s.log.Warn("api drain timed out; closing remaining connections", "err", err)
		hs.Close()
	}
	<-errc
	return nil
}

// stop ends streams and long polls.
func (s *Server) stop() { s.stopOnce.Do(func() { close(s.stopping) }) }

// Close stops the hub's subscription and closes the asynq client, the
// inspector and the dashboard's connections. It does not close
// Config.Redis, which the caller owns.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.stop()
		s.bg.Wait()
		s.waker.Close()
		s.closeErr = errors.Join(s.hub.close(), s.store.Close(), s.client.Close(), s.inspector.Close(), s.monitor.Close())
	})
	return s.closeErr
}

// redisCtx bounds a handler's Redis calls. When the rate limiter already
// found Redis unreachable for this request, the context is done at once:
// the request has spent its wait (see rateLimit).
func (s *Server) redisCtx(parent context.Context) (context.Context, context.CancelFunc) {
	if err := redisSpent(parent); err != nil {
		ctx, cancel := context.WithCancelCause(parent)
		cancel(err)
		return ctx, func() {}
	}
	return context.WithTimeout(parent, s.cfg.RedisTimeout)
}

// submitCtx is redisCtx for a submit: its context is shared with other
// submits (deadlines), which makes the hot path cheaper, and does not end
// with the request.
func (s *Server) submitCtx(parent context.Context) context.Context {
	if err := redisSpent(parent); err != nil {
		ctx, cancel := context.WithCancelCause(parent)
		cancel(err)
		return ctx
	}
	return s.submitDeadlines.get()
}

// redisSpent returns the rate limiter's error when it already found Redis
// unreachable for the request of ctx (see rateLimit), else nil: what
// redisCtx checks, for the reads the store bounds itself (StartReads).
func redisSpent(ctx context.Context) error {
	err, _ := ctx.Value(redisSpentKey{}).(error)
	return err
}

// tenantOf returns the tenant of the request: what the auth middleware put
// in the context, or "" (every job) when there is no auth.
func tenantOf(c echo.Context) string {
	t, _ := c.Get("tenant").(string)
	return t
}

// sameRedis reports whether asynq's connection options opt name the
// one-node Redis (or the Sentinel-followed primary) that rdb is a client of,
// as redisurl.Conn's NewClient and AsynqOpt make them from one URL. Other
// pairs, and Clusters, are "not known to be the same".
func sameRedis(rdb redis.UniversalClient, opt asynq.RedisConnOpt) bool {
	c, ok := rdb.(*redis.Client)
	if !ok {
		return false
	}
	o := c.Options()
	switch a := opt.(type) {
	case asynq.RedisClientOpt:
		return a.Addr == o.Addr && a.DB == o.DB
	case asynq.RedisFailoverClientOpt:
		return o.Addr == "FailoverClient" && a.DB == o.DB // go-redis's name of a FailoverClient's address
	}
	return false
}

// newStore returns the job store of cfg, with its per-tenant limit.
func newStore(cfg Config) *store.Store {
	st := store.NewStore(cfg.Redis)
	st.KeepAllEvents = cfg.KeepAllEvents
	// A submit's create script writes the job's first asynq task itself
	// (one round trip) only when asynq's Redis is known to be the store's.
	st.SplitEnqueue = !sameRedis(cfg.Redis, cfg.RedisConnOpt)
	switch {
	case cfg.TenantMaxLive == 0:
		st.TenantMaxLive = store.TenantMaxLiveDefault
	case cfg.TenantMaxLive > 0:
		st.TenantMaxLive = cfg.TenantMaxLive
	}
	return st
}
