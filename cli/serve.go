package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/staged-dev/staged/builtin"
	"github.com/staged-dev/staged/internal/redisurl"
	"github.com/staged-dev/staged/pipefile"
	"github.com/staged-dev/staged/server"
	"github.com/staged-dev/staged/tasks"
	"github.com/staged-dev/staged/worker"
)

// runServe runs dev, api or worker until ctx is done.
func runServe(ctx context.Context, mode string, ps []*tasks.Pipeline, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	o, code, done := parseServe(mode, args, getenv, stdout, stderr)
	if done {
		return code
	}
	if mode != "worker" {
		// Before any banner: a taken port is the commonest start-up mistake.
		if err := addrFree(o.cfg.Addr); err != nil {
			printErr(stderr, "%v", err)
			return exitUsage
		}
	}
	log := newLogger(o.cfg.LogFormat, stderr)
	slog.SetDefault(log) // the standard logger too (asynq's x/metrics logs with it)
	redis.SetLogger(&redisLogger{l: log.With("component", "go-redis")})

	conn, code := o.connect(ctx, log, stderr)
	if conn == nil {
		return code
	}
	defer conn.close()

	reg, err := o.registry(ps, log)
	if err != nil {
		printErr(stderr, "%v", err)
		return exitUsage
	}

	// One Prometheus registry for the process: in dev the API's /metrics
	// serves the worker's metrics too.
	promReg := prometheus.NewRegistry()
	var parts []func(context.Context) error
	if mode != "worker" {
		srv, err := o.newServer(conn, reg, log, promReg)
		if err != nil {
			printErr(stderr, "%v", err)
			return exitFailed
		}
		defer srv.Close()
		parts = append(parts, func(ctx context.Context) error { return srv.Run(ctx, o.cfg.Addr) })
	}
	if mode != "api" {
		wparts, code := o.workerParts(conn, reg, log, promReg, stderr)
		if wparts == nil {
			return code
		}
		parts = append(parts, wparts...)
	}
	pipelines := any(reg.Names())
	if mode == "api" {
		pipelines = "from the catalogue the workers publish"
	}
	log.Info("staged starting", "mode", mode, "version", buildVersion(), "redis", conn.shown,
		"pipelines", pipelines, "queues", queueWeights(o.cfg.Queues))
	if mode == "dev" {
		devURLs(stderr, o.cfg.Addr, len(o.keys) > 0)
	}
	if err := runAll(ctx, parts...); err != nil {
		log.Error("staged stopped", "err", err)
		return exitFailed
	}
	log.Info("staged stopped", "mode", mode)
	return exitOK
}

// serveOpts is what dev, api and worker read from their flags and the
// environment.
type serveOpts struct {
	mode        string
	cfg         *Config
	keys        []server.Key
	metricsAddr string // staged worker's metrics listener; "" for none
	metricsSet  bool   // given, not the default
	// pf is the pipelines file of dev and worker; the API learns pipelines
	// from the workers.
	pf *pipefile.File
	// cat is the catalogue settings of dev and worker.
	cat catalogSettings
}

// parseServe reads mode's flags and settings. done means exit with code:
// help was shown, or the settings are invalid (and said so on stderr).
func parseServe(mode string, args []string, getenv func(string) string, stdout, stderr io.Writer) (o *serveOpts, code int, done bool) {
	synopsis := map[string]string{
		"dev":    "[flags]   API, worker and dashboard in one process",
		"api":    "[flags]   the HTTP API and the dashboard",
		"worker": "[flags]   a worker",
	}[mode]
	fs := newFlagSet(mode, synopsis, stderr)
	sts := []setting{setRedis, setLogFormat, setQueues}
	if mode != "worker" {
		sts = append(sts, setAddr, setRetention, setRateLimit, setAPIKeysFile, setMonWrite, setTenantLive, setMaxStreams, setMaxWaits)
	}
	if mode != "api" {
		sts = append(sts, setConcurrency, setPipelines, setOnly, setHeartbeat, setCatalogTTL, setOrphanAfter)
	}
	if mode == "worker" {
		sts = append(sts, setMetricsAddr)
	}
	addFlags(fs, flagHelp, sts...)
	pos, code, done := parseArgs(fs, args, stdout)
	if done {
		return nil, code, true
	}
	if len(pos) > 0 {
		printErr(stderr, "%s takes no arguments, got %q (see staged %s -h)", mode, pos, mode)
		return nil, exitUsage, true
	}
	logFormat := "json"
	if mode == "dev" {
		logFormat = "text"
	}
	src := newSource(fs, getenv)
	o = &serveOpts{mode: mode}
	var err error
	o.cfg, err = loadServe(src, logFormat)
	if err == nil && mode != "worker" {
		if err = loadKeysFile(src, o.cfg); err == nil {
			o.keys, err = serverKeys(o.cfg)
		}
	}
	if err == nil && mode == "worker" {
		o.metricsAddr, o.metricsSet, err = loadMetricsAddr(src)
	}
	if err == nil && mode != "api" {
		o.cat, err = loadCatalog(src)
	}
	if err != nil {
		printErr(stderr, "invalid settings:\n  %v", indentErrs(err))
		return nil, exitUsage, true
	}
	if mode != "api" {
		if o.pf, err = loadPipelines(src); err != nil {
			printErr(stderr, "%v", err)
			return nil, exitUsage, true
		}
	}
	return o, 0, false
}

// registry returns the built-in pipelines, ps and the pipelines file's,
// or those of them named by STAGED_PIPELINES_ONLY.
func (o *serveOpts) registry(ps []*tasks.Pipeline, log *slog.Logger) (*tasks.Registry, error) {
	reg := &tasks.Registry{}
	builtin.Register(reg)
	for _, p := range ps {
		if err := reg.Register(p); err != nil {
			return nil, err
		}
	}
	if err := registerPipelines(o.pf, reg, log); err != nil {
		return nil, err
	}
	return restrict(reg, o.cat.only)
}

// serveConn is the process's Redis: the client, asynq's view of it, and
// the embedded server dev starts when no Redis is given.
type serveConn struct {
	rdb      redis.UniversalClient
	connOpt  asynq.RedisConnOpt
	embedded *embeddedRedis
	shown    string // the URL for logs, password redacted
	replicas int    // replicas of the primary seen at start
	conn     *redisurl.Conn
}

func (c *serveConn) close() {
	c.rdb.Close()
	if c.embedded != nil {
		c.embedded.Close()
	}
}

// connect opens the Redis client (starting the embedded Redis for dev
// without STAGED_REDIS_URL), logs whether it answers and warns about the
// API's settings. A nil conn means exit with code.
func (o *serveOpts) connect(ctx context.Context, log *slog.Logger, stderr io.Writer) (*serveConn, int) {
	cfg := o.cfg
	c := &serveConn{}
	switch {
	case o.mode == "dev" && !cfg.RedisSet:
		var err error
		if c.embedded, err = startEmbeddedRedis(); err != nil {
			printErr(stderr, "cannot start the embedded Redis: %v", err)
			return nil, exitFailed
		}
		cfg.RedisURL = c.embedded.URL()
		c.embedded.banner(stderr)
	case !cfg.RedisSet:
		cfg.RedisURL = RedisURLDefault
	}
	conn, err := redisurl.Parse(cfg.RedisURL)
	if err != nil { // validated already; only the default could get here
		if c.embedded != nil {
			c.embedded.Close()
		}
		printErr(stderr, "STAGED_REDIS_URL: %v", err)
		return nil, exitUsage
	}
	if o.mode != "worker" { // the API's client: see server.RedisPoolSize
		conn.Options.PoolSize = server.RedisPoolSize()
	}
	c.rdb = conn.NewClient()
	c.connOpt = conn.AsynqOpt()
	c.shown, c.conn = conn.Shown, conn
	if c.embedded != nil {
		c.shown = "embedded " + c.shown
	}
	topo, err := checkRedis(ctx, conn, c.rdb, log, c.shown)
	c.replicas = topo.Replicas
	if err != nil {
		c.close()
		printErr(stderr, "STAGED_REDIS_URL: %v", err)
		return nil, exitFailed
	}
	if o.mode != "worker" {
		warnKeys(log, stderr, o.keys, cfg)
		if !hasDefaultQueue(cfg.Queues) {
			log.Warn("STAGED_QUEUES has no \"default\" queue: a submit that names no queue is refused (422)",
				"queues", queueNames(cfg.Queues))
		}
	}
	return c, exitOK
}

// newServer returns the API server of api and dev.
func (o *serveOpts) newServer(c *serveConn, reg *tasks.Registry, log *slog.Logger, promReg *prometheus.Registry) (*server.Server, error) {
	cfg := o.cfg
	if o.mode == "api" {
		reg = nil // the API learns every pipeline from the catalogue the workers publish
		// An API allocates per request around a small live heap, as a
		// worker per job: the same tuning (dev has it from workerParts).
		worker.TuneGC() // unless GOGC is set; for the life of the process
	} // dev: the API knows this process's pipelines before the worker's first heartbeat
	wait := cfg.WaitReplicas
	if wait < 0 { // auto: one replica when the primary has any
		wait = min(c.replicas, 1)
	}
	if wait > 0 {
		log.Info("a submit answers 202 once a replica has the job (STAGED_REDIS_WAIT_REPLICAS)", "replicas", wait, "timeout", cfg.WaitTimeout)
	}
	return server.New(server.Config{
		WaitReplicas: wait, WaitTimeout: cfg.WaitTimeout,
		Redis: c.rdb, RedisConnOpt: c.connOpt, Registry: reg, Retention: cfg.Retention, Logger: log,
		Keys: o.keys, RateLimit: cfg.RateLimit, MonitoringWrite: cfg.MonitoringWrite, Metrics: promReg,
		Queues: queueNames(cfg.Queues), TenantMaxLive: cfg.TenantMaxLive,
		MaxStreamsPerKey: cfg.MaxStreamsPerKey, MaxWaitsPerKey: cfg.MaxWaitsPerKey, KeepAllEvents: cfg.KeepAllEvents,
		CheckRedis: func(ctx context.Context) error {
			// The node may have become a replica since the start (a failover
			// behind a plain URL): /readyz says so, with the URL to use.
			_, err := redisurl.Check(ctx, c.conn, c.rdb)
			var misuse *redisurl.MisuseError
			if errors.As(err, &misuse) {
				return misuse
			}
			return nil
		},
	})
}

// workerParts returns the worker of worker and dev, and for staged worker
// its metrics listener. nil means exit with code (said on stderr).
func (o *serveOpts) workerParts(c *serveConn, reg *tasks.Registry, log *slog.Logger, promReg *prometheus.Registry, stderr io.Writer) ([]func(context.Context) error, int) {
	worker.TuneGC() // unless GOGC is set; for the life of the process
	w, err := worker.New(worker.Config{
		RedisConnOpt: c.connOpt, Redis: c.rdb, Registry: reg, Concurrency: o.cfg.Concurrency, Logger: log,
		Metrics: promReg, Queues: queueWeights(o.cfg.Queues), // asynq's StrictPriority stays off
		KeepAllEvents: o.cfg.KeepAllEvents,
		Heartbeat:     o.cat.heartbeat, DefinitionTTL: o.cat.definitionTTL, OrphanAfter: o.cat.orphanAfter,
	})
	if err != nil {
		printErr(stderr, "%v", err)
		return nil, exitFailed
	}
	parts := []func(context.Context) error{w.Run}
	if o.metricsAddr == "" {
		return parts, exitOK
	}
	// staged worker: its own listener, with the Go runtime's metrics.
	promReg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// A taken default port (another worker on this machine) is not worth
	// refusing to run jobs for; a chosen address is.
	switch ln, err := net.Listen("tcp", o.metricsAddr); {
	case err == nil:
		parts = append(parts, func(ctx context.Context) error { return w.ServeMetrics(ctx, ln) })
	case o.metricsSet:
		printErr(stderr, "cannot serve the worker's metrics on %s (STAGED_METRICS_ADDR, --metrics-addr; off for none): %v",
			o.metricsAddr, err)
		return nil, exitFailed
	default:
		log.Warn("cannot serve the worker's metrics on the default address; running without them: "+
			"give each worker on this machine its own STAGED_METRICS_ADDR, or off", "addr", o.metricsAddr, "err", err)
	}
	return parts, exitOK
}

// warnKeys says how the API is protected: loudly when it is open (no
// keys: with text logs also a box, which would break a JSON log stream),
// and when the dashboard can change things. It never shows a secret.
func warnKeys(log *slog.Logger, stderr io.Writer, keys []server.Key, cfg *Config) {
	admins := 0
	for _, k := range keys {
		if k.Admin {
			admins++
		}
	}
	switch {
	case len(keys) == 0:
		if cfg.LogFormat == "text" {
			fmt.Fprint(stderr, `
  ***************************************************************************
  *  NO API KEYS: the API and the dashboard are OPEN to anyone who can
  *  reach this address, and every client sees every job.
  *  Set STAGED_API_KEYS (name=secret,...) or STAGED_API_KEYS_FILE, and
  *  STAGED_ADMIN_KEYS for the dashboard, before exposing it.
  ***************************************************************************
`)
		}
		log.Warn("no API keys configured: the API is open, every client sees every job")
	case admins == 0:
		log.Info("API keys required", "keys", len(keys))
		log.Warn("no admin key configured: nobody can open the dashboard (set STAGED_ADMIN_KEYS or mark a key admin in the keys file)")
	default:
		log.Info("API keys required", "keys", len(keys), "admin_keys", admins)
	}
	if cfg.MonitoringWrite {
		log.Warn("the dashboard can change queues and tasks (STAGED_MONITORING_WRITE)")
	}
}

// runAll runs the parts until ctx is done. When one fails the others are
// stopped; the first error is returned after all have returned.
func runAll(ctx context.Context, parts ...func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(parts))
	var wg sync.WaitGroup
	for i, p := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errs[i] = p(ctx); errs[i] != nil {
				cancel()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// checkRedis logs whether Redis answers. Not answering is not fatal: the
// API answers 503 (and /readyz says so) and the worker waits until Redis
// is back. A URL that reaches the wrong kind of node (a Cluster node through
// redis://, a read-only replica) is: the error says which URL to use.
func checkRedis(ctx context.Context, conn *redisurl.Conn, rdb redis.UniversalClient, log *slog.Logger, shown string) (redisurl.Topology, error) {
	ctx, cancel := context.WithTimeout(ctx, RedisTimeout)
	defer cancel()
	topo, err := redisurl.Check(ctx, conn, rdb)
	var misuse *redisurl.MisuseError
	switch {
	case errors.As(err, &misuse):
		return topo, err
	case err != nil:
		log.Warn("Redis does not answer yet; the API answers 503 until it does", "redis", shown, "err", err)
	default:
		log.Info("Redis answers", "redis", shown, "kind", conn.Kind.String(), "replicas", topo.Replicas)
	}
	return topo, nil
}

// redisLogger sends go-redis's own messages (pool dial failures) to the
// structured log instead of the standard logger, a repeated message at most
// once per redisLogEvery, so that an outage does not flood the log.
type redisLogger struct {
	l          *slog.Logger
	mu         sync.Mutex
	last       string
	at         time.Time
	suppressed int
}

const redisLogEvery = 10 * time.Second

func (r *redisLogger) Printf(ctx context.Context, format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	r.mu.Lock()
	if msg == r.last && time.Since(r.at) < redisLogEvery {
		r.suppressed++
		r.mu.Unlock()
		return
	}
	n := 0
	if msg == r.last {
		n = r.suppressed // times it came since it was last logged
	}
	r.last, r.at, r.suppressed = msg, time.Now(), 0
	r.mu.Unlock()
	if n > 0 {
		r.l.Warn(msg, "repeated", n)
		return
	}
	r.l.Warn(msg)
}

// indentErrs puts each of a joined error's lines on its own indented line.
func indentErrs(err error) string {
	var je interface{ Unwrap() []error }
	if !errors.As(err, &je) {
		return err.Error()
	}
	s := ""
	for i, e := range je.Unwrap() {
		if i > 0 {
			s += "\n  "
		}
		s += e.Error()
	}
	return s
}

// addrFree checks that the API can listen on addr, and says which setting
// changes it when it cannot.
func addrFree(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("cannot listen on %s: the address is already in use (another staged?); "+
				"choose another with STAGED_ADDR or --addr, e.g. --addr :8081 (and STAGED_SERVER=http://localhost:8081 for the CLI)", addr)
		}
		return fmt.Errorf("cannot listen on %s (STAGED_ADDR, --addr): %v", addr, err)
	}
	return ln.Close()
}
