package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/staged-dev/staged/internal/redisurl"
	"github.com/staged-dev/staged/tasks"
)

// RedisURLDefault is the Redis Main uses when STAGED_REDIS_URL is unset.
const RedisURLDefault = redisurl.Default

// MetricsAddrDefault is where Main (and staged worker) serve the worker's
// Prometheus metrics, at /metrics, when STAGED_METRICS_ADDR is unset.
const MetricsAddrDefault = ":9090"

// Main runs a worker for the pipelines in reg until SIGINT or SIGTERM, then
// shuts it down gracefully. It is the whole main function of a program that
// runs its own pipelines:
//
//	func main() {
//		if err := worker.Main(tasks.NewRegistry(myPipeline)); err != nil {
//			log.Fatal(err)
//		}
//	}
//
// It reads STAGED_REDIS_URL (redis://, rediss://, redis-sentinel:// or
// redis+cluster://, as staged worker does; default RedisURLDefault), STAGED_CONCURRENCY (default ConcurrencyDefault) and
// STAGED_METRICS_ADDR (where to serve /metrics: the worker's metrics and
// the Go runtime's; default MetricsAddrDefault, "off" for none), and logs
// with slog.Default().
func Main(reg *tasks.Registry) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, conn, err := configFromEnv(os.Getenv)
	if err != nil {
		return err
	}
	cfg.Registry = reg
	rdb := conn.NewClient()
	defer rdb.Close()
	cfg.Redis = rdb
	cctx, cancel := context.WithTimeout(ctx, redisurl.Timeout)
	_, err = redisurl.Check(cctx, conn, rdb)
	cancel()
	var misuse *redisurl.MisuseError
	if errors.As(err, &misuse) {
		return fmt.Errorf("worker: STAGED_REDIS_URL: %v", err)
	}
	var ln net.Listener
	if addr, set := metricsAddrFromEnv(os.Getenv); addr != "" {
		promReg := prometheus.NewRegistry()
		promReg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		cfg.Metrics = promReg
		// A taken default port (another worker on this machine) is not
		// worth refusing to run jobs for; a chosen address is.
		if ln, err = net.Listen("tcp", addr); err != nil {
			if set {
				return fmt.Errorf("worker: STAGED_METRICS_ADDR: %v (set another address, or off)", err)
			}
			slog.Warn("cannot serve the worker's metrics on the default address; running without them: "+
				"give each worker on this machine its own STAGED_METRICS_ADDR, or off", "addr", addr, "err", err)
		}
	}
	w, err := New(cfg)
	if err != nil {
		if ln != nil {
			ln.Close()
		}
		return err
	}
	if ln == nil {
		return w.Run(ctx)
	}
	serveErr := make(chan error, 1)
	sctx, stopServe := context.WithCancel(ctx)
	defer stopServe()
	go func() { serveErr <- w.ServeMetrics(sctx, ln) }()
	err = w.Run(ctx)
	stopServe()
	return errors.Join(err, <-serveErr)
}

// metricsAddrFromEnv is STAGED_METRICS_ADDR: MetricsAddrDefault when
// unset (set false), "" when "off".
func metricsAddrFromEnv(getenv func(string) string) (addr string, set bool) {
	switch v := strings.TrimSpace(getenv("STAGED_METRICS_ADDR")); v {
	case "":
		return MetricsAddrDefault, false
	case "off":
		return "", true
	default:
		return v, true
	}
}

// configFromEnv reads the worker's environment variables.
func configFromEnv(getenv func(string) string) (Config, *redisurl.Conn, error) {
	var cfg Config
	u := strings.TrimSpace(getenv("STAGED_REDIS_URL"))
	if u == "" {
		u = RedisURLDefault
	}
	conn, err := redisurl.Parse(u)
	if err != nil {
		return cfg, nil, fmt.Errorf("worker: STAGED_REDIS_URL: %v", err)
	}
	cfg.RedisConnOpt = conn.AsynqOpt()
	if s := getenv("STAGED_CONCURRENCY"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return cfg, nil, fmt.Errorf("worker: STAGED_CONCURRENCY must be a positive integer, not %q", s)
		}
		cfg.Concurrency = n
	}
	return cfg, conn, nil
}
