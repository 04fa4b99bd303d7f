package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

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
	synopsis := map[string]string{
		"dev":    "[flags]   API, worker and dashboard in one process",
		"api":    "[flags]   the HTTP API and the dashboard",
		"worker": "[flags]   a worker",
	}[mode]
	fs := newFlagSet(mode, synopsis, stderr)
	sts := []setting{setRedis, setLogFormat, setQueues}
	if mode != "worker" {
		sts = append(sts, setAddr, setRetention, setRateLimit, setAPIKeysFile, setMonWrite)
	}
	if mode != "api" {
		sts = append(sts, setConcurrency, setPipelines)
	}
	if mode == "worker" {
		sts = append(sts, setMetricsAddr)
	}
	addFlags(fs, flagHelp, sts...)
	pos, code, done := parseArgs(fs, args, stdout)
	if done {
		return code
	}
	if len(pos) > 0 {
		printErr(stderr, "%s takes no arguments, got %q (see staged %s -h)", mode, pos, mode)
		return exitUsage
	}
	logFormat := "json"
	if mode == "dev" {
		logFormat = "text"
	}
	src := newSource(fs, getenv)
	cfg, err := loadServe(src, logFormat)
	var keys []server.Key
	if err == nil && mode != "worker" {
		if err = loadKeysFile(src, cfg); err == nil {
			keys, err = serverKeys(cfg)
		}
	}
	var metricsAddr string // staged worker's metrics listener; "" for none
	var metricsSet bool    // given, not the default
	if err == nil && mode == "worker" {
		metricsAddr, metricsSet, err = loadMetricsAddr(src)
	}
	if err != nil {
		printErr(stderr, "invalid settings:\n  %v", indentErrs(err))
		return exitUsage
	}
	var pf *pipefile.File // the pipelines file of dev and worker; the API learns pipelines from the workers
	if mode != "api" {
		if pf, err = loadPipelines(src); err != nil {
			printErr(stderr, "%v", err)
			return exitUsage
		}
	}
	log := newLogger(cfg.LogFormat, stderr)
	slog.SetDefault(log) // the standard logger too (asynq's x/metrics logs with it)
	redis.SetLogger(&redisLogger{l: log.With("component", "go-redis")})

	var embedded *embeddedRedis
	switch {
	case mode == "dev" && !cfg.RedisSet:
		if embedded, err = startEmbeddedRedis(); err != nil {
			printErr(stderr, "cannot start the embedded Redis: %v", err)
			return exitFailed
		}
		defer embedded.Close()
		cfg.RedisURL = embedded.URL()
		embedded.banner(stderr)
	case !cfg.RedisSet:
		cfg.RedisURL = RedisURLDefault
	}
	conn, err := redisurl.Parse(cfg.RedisURL)
	if err != nil { // validated already; only the default could get here
		printErr(stderr, "STAGED_REDIS_URL: %v", err)
		return exitUsage
	}
	rdb := conn.NewClient()
	defer rdb.Close()
	connOpt := conn.AsynqOpt()
	redisShown := conn.Shown
	if embedded != nil {
		redisShown = "embedded " + redisShown
	}
	if err := checkRedis(ctx, conn, rdb, log, redisShown); err != nil {
		printErr(stderr, "STAGED_REDIS_URL: %v", err)
		return exitFailed
	}
	if mode != "worker" {
		warnKeys(log, stderr, keys, cfg)
		if !hasDefaultQueue(cfg.Queues) {
			log.Warn("STAGED_QUEUES has no \"default\" queue: a submit that names no queue is refused (422)",
				"queues", queueNames(cfg.Queues))
		}
	}

	reg := &tasks.Registry{}
	builtin.Register(reg)
	for _, p := range ps {
		if err := reg.Register(p); err != nil {
			printErr(stderr, "%v", err)
			return exitUsage
		}
	}
	if err := registerPipelines(pf, reg, log); err != nil {
		printErr(stderr, "%v", err)
		return exitUsage
	}

	// One Prometheus registry for the process: in dev the API's /metrics
	// serves the worker's metrics too.
	promReg := prometheus.NewRegistry()
	var parts []func(context.Context) error
	if mode != "worker" {
		srv, err := server.New(server.Config{
			Redis: rdb, RedisConnOpt: connOpt, Registry: reg, Retention: cfg.Retention, Logger: log,
			Keys: keys, RateLimit: cfg.RateLimit, MonitoringWrite: cfg.MonitoringWrite, Metrics: promReg,
			Queues: queueNames(cfg.Queues),
		})
		if err != nil {
			printErr(stderr, "%v", err)
			return exitFailed
		}
		defer srv.Close()
		parts = append(parts, func(ctx context.Context) error { return srv.Run(ctx, cfg.Addr) })
	}
	if mode != "api" {
		w, err := worker.New(worker.Config{
			RedisConnOpt: connOpt, Redis: rdb, Registry: reg, Concurrency: cfg.Concurrency, Logger: log,
			Metrics: promReg, Queues: queueWeights(cfg.Queues), // asynq's StrictPriority stays off
		})
		if err != nil {
			printErr(stderr, "%v", err)
			return exitFailed
		}
		parts = append(parts, w.Run)
		if metricsAddr != "" { // staged worker: its own listener, with the Go runtime's metrics
			promReg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
			// A taken default port (another worker on this machine) is
			// not worth refusing to run jobs for; a chosen address is.
			switch ln, err := net.Listen("tcp", metricsAddr); {
			case err == nil:
				parts = append(parts, func(ctx context.Context) error { return w.ServeMetrics(ctx, ln) })
			case metricsSet:
				printErr(stderr, "cannot serve the worker's metrics on %s (STAGED_METRICS_ADDR, --metrics-addr; off for none): %v",
					metricsAddr, err)
				return exitFailed
			default:
				log.Warn("cannot serve the worker's metrics on the default address; running without them: "+
					"give each worker on this machine its own STAGED_METRICS_ADDR, or off", "addr", metricsAddr, "err", err)
			}
		}
	}
	log.Info("staged starting", "mode", mode, "version", buildVersion(), "redis", redisShown,
		"pipelines", reg.Names(), "queues", queueWeights(cfg.Queues))
	if mode == "dev" {
		devURLs(stderr, cfg.Addr, len(keys) > 0)
	}
	if err := runAll(ctx, parts...); err != nil {
		log.Error("staged stopped", "err", err)
		return exitFailed
	}
	log.Info("staged stopped", "mode", mode)
	return exitOK
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
func checkRedis(ctx context.Context, conn *redisurl.Conn, rdb redis.UniversalClient, log *slog.Logger, shown string) error {
	ctx, cancel := context.WithTimeout(ctx, RedisTimeout)
	defer cancel()
	topo, err := redisurl.Check(ctx, conn, rdb)
	var misuse *redisurl.MisuseError
	switch {
	case errors.As(err, &misuse):
		return err
	case err != nil:
		log.Warn("Redis does not answer yet; the API answers 503 until it does", "redis", shown, "err", err)
	default:
		log.Info("Redis answers", "redis", shown, "kind", conn.Kind.String(), "replicas", topo.Replicas)
	}
	return nil
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

// devURLs prints where to find things in dev mode; with keys, the
// examples send one from $STAGED_API_KEY.
func devURLs(w io.Writer, addr string, keyed bool) {
	base := "http://" + localHost(addr)
	auth, dash := "", ""
	if keyed {
		auth = ` -H "Authorization: Bearer $STAGED_API_KEY"`
		dash = " (an admin key as the password)"
	}
	fmt.Fprintf(w, `
  staged dev is starting
    API        %[1]s/v1/pipelines
    dashboard  %[1]s/monitoring/%[4]s
    try:       curl -s -X POST %[1]s/v1/jobs%[3]s -H 'Content-Type: application/json' -d '{"type":"chain","input":{"data":"x"}}'
               staged submit sleep --wait%[2]s

`, base, serverHint(base), auth, dash)
}

// localHost turns a listen address into one to browse to: ":8080" and
// "0.0.0.0:8080" become "localhost:8080".
func localHost(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	switch host {
	case "", "0.0.0.0", "::", "[::]":
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

// serverHint is the --server flag the CLI needs for base, if not the default.
func serverHint(base string) string {
	if base == ServerDefault {
		return ""
	}
	return " --server " + base
}
