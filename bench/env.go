package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/internal/redisurl"
	"github.com/staged-dev/staged/internal/store"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/staged-dev/staged/builtin"
	"github.com/staged-dev/staged/server"
	"github.com/staged-dev/staged/tasks"
	"github.com/staged-dev/staged/worker"
)

// benchQueue is the asynq queue of every job the bench submits, so that a
// shared Redis's own queues are left alone.
const benchQueue = "bench"

// retention keeps finished bench jobs readable for a while, then Redis
// forgets them.
const retention = 10 * time.Minute

// env is what the scenarios share: the Redis, a control client for the
// bench's own reads (never the API's or the worker's), the registry, and
// the options.
type env struct {
	o      *options
	conn   *redisurl.Conn // from -redis
	addr   string         // the primary's host:port, for MONITOR
	wait   int            // the API's WaitReplicas
	ctl    *redis.Client
	reg    *tasks.Registry
	log    *slog.Logger
	logf   func(format string, args ...any)
	client *asynq.Client // the bench's own, for pre-submitting drain jobs
}

func newEnv(ctx context.Context, o *options, addr string, log *slog.Logger, logf func(string, ...any)) (*env, error) {
	e := &env{o: o, log: log, logf: logf, reg: tasks.NewRegistry()}
	builtin.Register(e.reg)
	raw := addr
	if !strings.Contains(raw, "://") {
		raw = "redis://" + addr // the old host:port form (bench/run.sh)
	}
	conn, err := redisurl.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("-redis: %w", err)
	}
	if conn.Kind == redisurl.Cluster {
		return nil, errors.New("-redis: the bench meters one Redis server (INFO, MONITOR, MEMORY); for a Cluster use bench/scaling.sh")
	}
	e.conn = conn
	e.ctl = e.clientWith(0)
	if err := e.ctl.Ping(ctx).Err(); err != nil {
		e.ctl.Close()
		return nil, fmt.Errorf("redis %s: %w", conn.Shown, err)
	}
	e.addr = e.ctl.Options().Addr
	if conn.Kind == redisurl.Sentinel { // the primary's address, for MONITOR
		sc := redis.NewSentinelClient(&redis.Options{Addr: conn.Options.Addrs[0], Password: conn.Options.SentinelPassword})
		a, err := sc.GetMasterAddrByName(ctx, conn.Options.MasterName).Result()
		sc.Close()
		if err != nil {
			e.ctl.Close()
			return nil, fmt.Errorf("sentinel %s: %w", conn.Options.Addrs[0], err)
		}
		e.addr = a[0] + ":" + a[1]
	}
	topo, err := redisurl.Check(ctx, conn, e.ctl)
	if err != nil {
		e.ctl.Close()
		return nil, err
	}
	if e.wait = o.waitReplicas; e.wait < 0 {
		e.wait = min(topo.Replicas, 1)
	}
	logf("redis %s (%s), %d replicas; the API waits for %d (-wait-replicas)", conn.Shown, conn.Kind, topo.Replicas, e.wait)
	e.client = asynq.NewClientFromRedisClient(e.clientWith(64))
	return e, nil
}

// clientWith returns a client of -redis with a pool of that size (0: the
// go-redis default).
func (e *env) clientWith(pool int) *redis.Client {
	c := *e.conn
	c.Options.PoolSize = pool
	return c.NewClient().(*redis.Client) // a Client or a FailoverClient: never a Cluster here
}

func (e *env) close() {
	e.client.Close()
	e.ctl.Close()
}

// reset gives a scenario a clean Redis: FLUSHALL when allowed, else the
// bench queue is deleted.
func (e *env) reset(ctx context.Context) error {
	if e.o.flush {
		return e.ctl.FlushAll(ctx).Err()
	}
	ins := asynq.NewInspectorFromRedisClient(e.ctl)
	qs, err := e.benchQueues(ctx)
	if err != nil {
		return err
	}
	for _, q := range qs {
		err := ins.DeleteQueue(q, true)
		if err != nil && !errors.Is(err, asynq.ErrQueueNotFound) {
			return fmt.Errorf("deleting queue %s: %w", q, err)
		}
	}
	return nil
}

// benchQueues returns the asynq queues of the bench queue: one per
// pipeline and definition ("bench:sleep:1a2b3c4d", catalog.QueueName).
func (e *env) benchQueues(ctx context.Context) ([]string, error) {
	all, err := e.ctl.SMembers(ctx, "asynq:queues").Result()
	if err != nil {
		return nil, err
	}
	var qs []string
	for _, q := range all {
		if q == benchQueue || strings.HasPrefix(q, benchQueue+":") {
			qs = append(qs, q)
		}
	}
	return qs, nil
}

// productClient returns a go-redis client as staged's commands make one:
// go-redis defaults, unless -pool.
func (e *env) productClient() *redis.Client { return e.clientWith(e.o.pool) }

// apiClient returns the API's go-redis client as staged api makes it: a
// pool of server.RedisPoolSize connections, unless -pool.
func (e *env) apiClient() *redis.Client {
	if e.o.pool != 0 {
		return e.clientWith(e.o.pool)
	}
	return e.clientWith(server.RedisPoolSize())
}

func (e *env) connOpt() asynq.RedisConnOpt {
	switch o := e.conn.AsynqOpt().(type) {
	case asynq.RedisClientOpt:
		o.PoolSize = e.o.pool
		return o
	case asynq.RedisFailoverClientOpt:
		o.PoolSize = e.o.pool
		return o
	default:
		return o
	}
}

// apiServer is an API server running in this process on a real listener.
type apiServer struct {
	url  string
	srv  *server.Server
	rdb  *redis.Client
	stop func() error
}

// startAPI starts the API on a free port of 127.0.0.1, its logger at warn
// level, and waits until /healthz answers.
func (e *env) startAPI(ctx context.Context) (*apiServer, error) {
	untune := worker.TuneGC() // as staged api does (unless GOGC is set), while it runs
	rdb := e.apiClient()
	srv, err := server.New(server.Config{Redis: rdb, RedisConnOpt: e.connOpt(), Registry: e.reg,
		Retention: retention, Queues: []string{benchQueue}, Logger: e.log, RateLimit: e.o.rateLimit,
		// The per-tenant live-job limit stays on (each submit pays its
		// check, as by default), at a count no scenario reaches: submit
		// leaves every job queued, far beyond the default 10,000.
		TenantMaxLive: 1 << 30, WaitReplicas: e.wait})
	if err != nil {
		untune()
		rdb.Close()
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		untune()
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(rctx, addr) }()
	a := &apiServer{url: "http://" + addr, srv: srv, rdb: rdb}
	a.stop = func() error {
		cancel()
		err := <-done
		untune()
		return errors.Join(err, srv.Close(), rdb.Close())
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(a.url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return a, nil
			}
		}
		select {
		case err := <-done:
			a.stop = func() error { untune(); return errors.Join(srv.Close(), rdb.Close()) }
			a.stop()
			return nil, fmt.Errorf("api did not start: %v", err)
		case <-ctx.Done():
			a.stop()
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			a.stop()
			return nil, errors.New("api did not answer /healthz within 10s")
		}
	}
}

// runningWorker is a worker running in this process.
type runningWorker struct {
	stop func() error
}

// startWorker starts a worker on the bench queue with staged's defaults,
// except concurrency when it is not 0. With -autopipeline the worker's
// store client is go-redis's (experimental) AutoPipeliner, which batches
// the commands of concurrent jobs into shared round trips ("store"), and
// with "all" asynq's server uses it too.
func (e *env) startWorker(concurrency int) (*runningWorker, error) {
	untune := worker.TuneGC() // as staged worker and staged dev do (unless GOGC is set), while it runs
	rdb := e.productClient()
	cfg := worker.Config{RedisConnOpt: e.connOpt(), Redis: rdb, Registry: e.reg,
		Concurrency: concurrency, Queues: map[string]int{benchQueue: 1}, Logger: e.log,
		TaskCheckInterval: e.o.taskCheck}
	if e.o.autopipeline != "" {
		ap, err := rdb.AutoPipeline()
		if err != nil {
			untune()
			rdb.Close()
			return nil, err
		}
		cfg.Redis = ap
		if e.o.autopipeline == "all" {
			cfg.RedisConnOpt = nil
		}
	}
	w, err := worker.New(cfg)
	if err != nil {
		untune()
		rdb.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	return &runningWorker{stop: func() error {
		cancel()
		err := <-done
		untune()
		return errors.Join(err, rdb.Close())
	}}, nil
}

// processed returns asynq's count of tasks of the bench queue that have
// finished (successfully or not): one GET. The worker acks a task only
// after the job's terminal record is written.
func (e *env) processed(ctx context.Context) (int64, error) {
	qs, err := e.benchQueues(ctx)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, q := range qs {
		n, err := e.ctl.Get(ctx, "asynq:{"+q+"}:processed").Int64()
		if err != nil && !errors.Is(err, redis.Nil) {
			return 0, err
		}
		total += n
	}
	return total, nil
}

// waitProcessed polls processed every few milliseconds until it reaches
// target, and returns how many GETs it sent (to subtract from command
// counts).
func (e *env) waitProcessed(ctx context.Context, target int64, limit time.Duration) (polls int64, err error) {
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		n, err := e.processed(ctx)
		polls++
		if err != nil {
			return polls, err
		}
		if n >= target {
			return polls, nil
		}
		if time.Now().After(deadline) {
			return polls, fmt.Errorf("only %d of %d jobs finished within %s", n, target, limit)
		}
		select {
		case <-ctx.Done():
			return polls, ctx.Err()
		case <-tick.C:
		}
	}
}

// countStates reads the state of each job with pipelined HGETs, after the
// measurement, and counts them.
func (e *env) countStates(ctx context.Context, ids []string) (map[api.State]int, error) {
	counts := map[api.State]int{}
	for i := 0; i < len(ids); i += 1000 {
		chunk := ids[i:min(i+1000, len(ids))]
		cmds, err := e.ctl.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, id := range chunk {
				p.HGet(ctx, store.JobKey(id), "state")
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, err
		}
		for _, c := range cmds {
			counts[api.State(c.(*redis.StringCmd).Val())]++
		}
	}
	return counts, nil
}
