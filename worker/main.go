package worker

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/staged-dev/staged/tasks"
)

// RedisURLDefault is the Redis Main uses when STAGED_REDIS_URL is unset.
const RedisURLDefault = "redis://127.0.0.1:6379/0"

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
// It reads STAGED_REDIS_URL (redis:// or rediss://; default
// RedisURLDefault) and STAGED_CONCURRENCY (default ConcurrencyDefault), and
// logs with slog.Default().
func Main(reg *tasks.Registry) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := configFromEnv(os.Getenv)
	if err != nil {
		return err
	}
	cfg.Registry = reg
	rdb, ok := cfg.RedisConnOpt.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		return fmt.Errorf("worker: STAGED_REDIS_URL: unsupported Redis connection")
	}
	defer rdb.Close()
	cfg.Redis = rdb
	w, err := New(cfg)
	if err != nil {
		return err
	}
	return w.Run(ctx)
}

// configFromEnv reads the worker's environment variables.
func configFromEnv(getenv func(string) string) (Config, error) {
	var cfg Config
	u := getenv("STAGED_REDIS_URL")
	if u == "" {
		u = RedisURLDefault
	}
	opt, err := asynq.ParseRedisURI(u)
	if err != nil {
		return cfg, fmt.Errorf("worker: STAGED_REDIS_URL: %v", err)
	}
	cfg.RedisConnOpt = opt
	if s := getenv("STAGED_CONCURRENCY"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return cfg, fmt.Errorf("worker: STAGED_CONCURRENCY must be a positive integer, not %q", s)
		}
		cfg.Concurrency = n
	}
	return cfg, nil
}
