package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/staged-dev/staged/builtin"
	"github.com/staged-dev/staged/server"
	"github.com/staged-dev/staged/tasks"
	"github.com/staged-dev/staged/worker"
)

// runServe runs dev, api or worker until ctx is done.
func runServe(ctx context.Context, mode string, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	synopsis := map[string]string{
		"dev":    "[flags]   API, worker and dashboard in one process",
		"api":    "[flags]   the HTTP API and the dashboard",
		"worker": "[flags]   a worker",
	}[mode]
	fs := newFlagSet(mode, synopsis, stderr)
	sts := []setting{setRedis, setLogFormat}
	if mode != "worker" {
		sts = append(sts, setAddr, setRetention, setRateLimit)
	}
	if mode != "api" {
		sts = append(sts, setConcurrency)
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
	cfg, err := loadServe(newSource(fs, getenv), logFormat)
	if err != nil {
		printErr(stderr, "invalid settings:\n  %v", indentErrs(err))
		return exitUsage
	}
	log := newLogger(cfg.LogFormat, stderr)
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
	ropts, err := redisOptions(cfg.RedisURL)
	if err != nil { // validated already; only the default could get here
		printErr(stderr, "STAGED_REDIS_URL: %v", err)
		return exitUsage
	}
	rdb := redis.NewClient(ropts)
	defer rdb.Close()
	connOpt := asynqOpt(ropts)
	redisShown := redactString(cfg.RedisURL)
	if embedded != nil {
		redisShown = "embedded " + redisShown
	}
	checkRedis(ctx, rdb, log, redisShown)
	if len(cfg.APIKeys) > 0 || len(cfg.AdminKeys) > 0 {
		// The keys are parsed and validated; the server does not enforce
		// them yet, and must not look as if it did.
		log.Warn("STAGED_API_KEYS/STAGED_ADMIN_KEYS are set but this build does not enforce API keys yet: the API is open",
			"api_keys", len(cfg.APIKeys), "admin_keys", len(cfg.AdminKeys))
	}

	reg := &tasks.Registry{}
	builtin.Register(reg)

	var parts []func(context.Context) error
	if mode != "worker" {
		srv, err := server.New(server.Config{
			Redis: rdb, RedisConnOpt: connOpt, Registry: reg, Retention: cfg.Retention, Logger: log,
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
		})
		if err != nil {
			printErr(stderr, "%v", err)
			return exitFailed
		}
		parts = append(parts, w.Run)
	}
	log.Info("staged starting", "mode", mode, "version", buildVersion(), "redis", redisShown,
		"pipelines", reg.Names())
	if mode == "dev" {
		devURLs(stderr, cfg.Addr)
	}
	if err := runAll(ctx, parts...); err != nil {
		log.Error("staged stopped", "err", err)
		return exitFailed
	}
	log.Info("staged stopped", "mode", mode)
	return exitOK
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

// checkRedis logs whether Redis answers. It is not fatal: the API answers
// 503 (and /readyz says so) and the worker waits until Redis is back.
func checkRedis(ctx context.Context, rdb *redis.Client, log *slog.Logger, shown string) {
	ctx, cancel := context.WithTimeout(ctx, RedisTimeout)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		log.Warn("Redis does not answer yet; the API answers 503 until it does", "redis", shown, "err", err)
	}
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

// redactString returns a URL for printing, its password replaced.
func redactString(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<invalid URL>"
	}
	return u.Redacted()
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

// devURLs prints where to find things in dev mode.
func devURLs(w io.Writer, addr string) {
	base := "http://" + localHost(addr)
	fmt.Fprintf(w, `
  staged dev is starting
    API        %[1]s/v1/pipelines
    dashboard  %[1]s/monitoring/
    try:       curl -s -X POST %[1]s/v1/jobs -H 'Content-Type: application/json' -d '{"type":"chain","input":{"data":"x"}}'
               staged submit sleep --wait%[2]s

`, base, serverHint(base))
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
