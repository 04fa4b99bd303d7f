// Command bench measures staged against the bar of PRODUCT.md ("Where the
// bar is"): it starts the API and the workers in this process, against a
// private redis-server (or -redis ADDR), and runs the scenarios
//
//	drain    N pre-submitted 4-stage sleep jobs of 0 ms, drained by a worker started afterwards
//	submit   POST /v1/jobs, req/s and latency, -c keep-alive connections for -duration
//	poll     GET /v1/jobs/{id}, likewise
//	latency  submit-to-first-stage-start on an idle worker (server-side timestamps)
//	e2e      HTTP submits with a worker running: jobs finished per second
//	idle     Redis commands per second of an idle API and of an idle worker
//	exec     a no-op command stage (sh, python3) next to a no-op Go stage, ms per stage (exec.go)
//
// printing a table and one JSON line per scenario. The HTTP load comes from
// a child process ("bench loadgen"), so that it neither shares the API's Go
// runtime nor shows up in its CPU profile; bench/run.sh drives the peers'
// HTTP endpoints with the same generator.
//
// Subcommands used by bench/run.sh: "bench loadgen" (the HTTP load
// generator), "bench report FILE" (ratios against the targets of issue 14),
// "bench measure" (runs a peer and prints its Redis commands, Redis CPU and
// own CPU per job), "bench freeport".
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// Scenario names, in the order they run.
var allScenarios = []string{"drain", "submit", "poll", "latency", "e2e", "idle", "exec"}

// options are the command-line settings of a bench run.
type options struct {
	redisAddr string // -redis: host:port or a STAGED_REDIS_URL form
	flush     bool
	// replica starts a replica of the private redis-server; waitReplicas
	// is the API's WaitReplicas (-1: as staged api, 1 when the primary
	// has a replica).
	replica      bool
	waitReplicas int
	scenarios    []string
	n            int
	stages       int
	conns        int
	concurr      int
	duration     time.Duration
	warmup       time.Duration
	latencyN     int
	idleWindow   time.Duration
	pool         int
	jsonOnly     bool
	profileDir   string
	traceFile    string // -trace: the drain's execution trace
	// Levers under test, off by default (staged's defaults): the worker's
	// store client ("store") or all its Redis traffic ("all") through
	// go-redis's AutoPipeliner, and asynq's TaskCheckInterval.
	autopipeline string
	taskCheck    time.Duration
	// rateLimit is the API's rate limit per key (per IP here): on, as by
	// default, at a rate no scenario reaches, so nothing is rejected and
	// every request pays the limiter's check.
	rateLimit float64
}

func main() {
	if handled, err := subcommand(os.Args[1:], os.Stdout); handled {
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, o, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// subcommand runs "loadgen", "report", "measure" or "freeport" when args name one.
func subcommand(args []string, stdout io.Writer) (handled bool, err error) {
	if len(args) == 0 {
		return false, nil
	}
	switch args[0] {
	case "loadgen":
		return true, loadgenMain(args[1:], stdout)
	case "report":
		return true, reportMain(args[1:], stdout)
	case "measure":
		return true, measureMain(args[1:], stdout)
	case "freeport":
		p, err := freePort()
		if err == nil {
			fmt.Fprintln(stdout, p)
		}
		return true, err
	}
	return false, nil
}

func parseFlags(args []string) (*options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	o := &options{}
	var scen string
	fs.StringVar(&o.redisAddr, "redis", "", "Redis to use: host:port, or a URL as STAGED_REDIS_URL takes (redis://, rediss://, redis-sentinel://; not a Cluster, whose nodes the meters cannot add up: see bench/scaling.sh). Default: start a private redis-server, killed at exit")
	fs.BoolVar(&o.replica, "replica", false, "start a replica of the private redis-server (for -wait-replicas)")
	fs.IntVar(&o.waitReplicas, "wait-replicas", -1, "the API's STAGED_REDIS_WAIT_REPLICAS: replicas that must have a job before 202 (-1: 1 when the primary has a replica, as staged api; 0: off)")
	fs.BoolVar(&o.flush, "flush", false, "FLUSHALL that Redis between scenarios (always done on the private one)")
	fs.StringVar(&scen, "scenarios", strings.Join(allScenarios, ","), "comma-separated scenarios: "+strings.Join(allScenarios, ","))
	fs.IntVar(&o.n, "n", 20000, "drain: number of jobs")
	fs.IntVar(&o.stages, "stages", 4, "drain, e2e: stages per sleep job (0 ms each)")
	fs.IntVar(&o.conns, "c", 50, "submit, poll, e2e: HTTP connections")
	fs.IntVar(&o.concurr, "concurrency", 50, "drain, e2e: worker concurrency")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "submit, poll, e2e: measured load duration")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "submit, poll, e2e: load before the measured duration")
	fs.IntVar(&o.latencyN, "latency-n", 40, "latency: number of jobs")
	fs.DurationVar(&o.idleWindow, "idle-window", 5*time.Second, "idle: measurement window of each part")
	fs.IntVar(&o.pool, "pool", 0, "Redis pool size of the API's and the worker's clients (0: as staged uses: server.RedisPoolSize for the API's, go-redis/asynq defaults otherwise)")
	fs.BoolVar(&o.jsonOnly, "json", false, "print only the JSON lines")
	fs.StringVar(&o.profileDir, "cpuprofile", "", "directory to write CPU profiles to: drain-worker.pprof, submit-api.pprof, poll-api.pprof, e2e.pprof (the API and the worker of e2e)")
	fs.StringVar(&o.profileDir, "pprof", "", "same as -cpuprofile")
	fs.StringVar(&o.traceFile, "trace", "", "file to write the drain's execution trace to (go tool trace), from the worker's start to the last job's end")
	fs.StringVar(&o.autopipeline, "autopipeline", "", "lever: give the worker go-redis's AutoPipeliner as its store client (store), and asynq's server too (all)")
	fs.DurationVar(&o.taskCheck, "task-check-interval", 0, "lever: the worker's TaskCheckInterval (0: staged's default)")
	fs.Float64Var(&o.rateLimit, "rate-limit", 1e6, "the API's rate limit per key (here per IP), requests/s; on by default as in staged, at a rate the load never reaches; 0 = off")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (flags only)", fs.Arg(0))
	}
	known := map[string]bool{}
	for _, s := range allScenarios {
		known[s] = true
	}
	for _, s := range strings.Split(scen, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !known[s] {
			return nil, fmt.Errorf("-scenarios: unknown scenario %q (have %s)", s, strings.Join(allScenarios, ","))
		}
		o.scenarios = append(o.scenarios, s)
	}
	switch {
	case len(o.scenarios) == 0:
		return nil, errors.New("-scenarios: none given")
	case o.n < 1, o.conns < 1, o.concurr < 1, o.latencyN < 1, o.stages < 1:
		return nil, errors.New("-n, -c, -concurrency, -latency-n and -stages must be at least 1")
	case o.autopipeline != "" && o.autopipeline != "store" && o.autopipeline != "all":
		return nil, errors.New("-autopipeline: store or all")
	case o.duration <= 0 || o.idleWindow <= 0 || o.warmup < 0:
		return nil, errors.New("-duration and -idle-window must be positive, -warmup not negative")
	}
	return o, nil
}

// run runs the selected scenarios one after the other and prints each
// result as it comes.
func run(ctx context.Context, o *options, stdout, stderr io.Writer) error {
	logf := func(format string, args ...any) {
		if !o.jsonOnly {
			fmt.Fprintf(stderr, "bench: "+format+"\n", args...)
		}
	}
	addr := o.redisAddr
	if addr == "" {
		rs, err := startRedis(ctx)
		if err != nil {
			return err
		}
		defer rs.stop()
		addr, o.flush = rs.addr, true
		logf("private redis-server %s on %s (dir %s)", rs.version, addr, rs.dir)
		if o.replica {
			rep, err := startReplica(ctx, rs)
			if err != nil {
				return err
			}
			defer rep.stop()
			logf("private replica on %s", rep.addr)
		}
	} else if o.replica {
		return errors.New("-replica starts a replica of the private redis-server: not with -redis")
	} else if !o.flush {
		logf("using %s without -flush: jobs go to bench queues, which are deleted after each scenario; job keys expire by their TTL", addr)
	}
	if o.profileDir != "" {
		if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
			return err
		}
	}
	env, err := newEnv(ctx, o, addr, slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})), logf)
	if err != nil {
		return err
	}
	defer env.close()
	logf("machine: %s", machine(ctx, env.ctl))

	var results []*result
	for _, name := range o.scenarios {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := env.reset(ctx); err != nil {
			return err
		}
		logf("scenario %s ...", name)
		t0 := time.Now()
		res, err := scenario(ctx, env, name)
		if err != nil {
			return fmt.Errorf("scenario %s: %w", name, err)
		}
		logf("scenario %s done in %s", name, time.Since(t0).Round(time.Millisecond))
		results = append(results, res)
		if !o.jsonOnly {
			res.printTable(stdout)
		}
		b, _ := json.Marshal(res)
		fmt.Fprintln(stdout, string(b))
	}
	return nil
}

func scenario(ctx context.Context, env *env, name string) (*result, error) {
	switch name {
	case "drain":
		return drain(ctx, env)
	case "submit":
		return submit(ctx, env)
	case "poll":
		return poll(ctx, env)
	case "latency":
		return latency(ctx, env)
	case "e2e":
		return e2e(ctx, env)
	case "idle":
		return idle(ctx, env)
	case "exec":
		return execScenario(ctx, env)
	}
	return nil, fmt.Errorf("unknown scenario %q", name)
}
