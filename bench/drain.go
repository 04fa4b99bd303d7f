package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/staged-dev/staged/api"

	"github.com/staged-dev/staged/internal/catalog"
	"github.com/staged-dev/staged/internal/store"

	"github.com/staged-dev/staged/tasks"
)

// submitters is how many goroutines pre-submit jobs, as in the peers.
const submitters = 50

// sleepJob returns what the API would make of {"type": "sleep", "input":
// {"stages": stages, "ms": 0}}: the normalised input, the stage list and
// the options with the defaults resolved, on the bench queue.
func (e *env) sleepJob(stages int) (json.RawMessage, []tasks.Stage, api.Options, error) {
	p := e.reg.Get("sleep")
	if p == nil {
		return nil, nil, api.Options{}, fmt.Errorf("no sleep pipeline registered")
	}
	input, err := p.Input.Normalize(json.RawMessage(fmt.Sprintf(`{"stages":%d,"ms":0}`, stages)))
	if err != nil {
		return nil, nil, api.Options{}, err
	}
	st, err := p.StagesFor(input)
	if err != nil {
		return nil, nil, api.Options{}, err
	}
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = tasks.DefaultJobTimeout
	}
	return input, st, api.Options{Retention: retention, Timeout: timeout, MaxRetries: p.MaxRetries, Queue: benchQueue}, nil
}

// presubmit creates n sleep jobs the way the API's submit does
// (Store.CreateQueued: on one server the record, its admission and the
// first asynq task in one script; on a Cluster Store.Create's part, then
// store.Enqueue of generation 1), from 50 goroutines,
// and returns their ids.
func (e *env) presubmit(ctx context.Context, n, stages int) ([]string, time.Duration, error) {
	input, st, opts, err := e.sleepJob(stages)
	if err != nil {
		return nil, 0, err
	}
	rdb := e.clientWith(submitters + 4)
	defer rdb.Close()
	js := store.NewStore(rdb)
	js.TenantMaxLive = 1 << 30 // Create counts them among the tenant's live jobs, as the API's does (the worker uncounts them)
	ids := make([]string, n)
	next := make(chan int)
	errc := make(chan error, submitters)
	var wg sync.WaitGroup
	digest := e.reg.Get("sleep").Digest() // routes the jobs to the workers with this definition
	t0 := time.Now()
	for range submitters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				j := store.NewJobWith("sleep", st, opts.Queue, time.Now().UTC())
				j.Digest = digest
				_, enqueued, err := js.CreateQueued(ctx, j, "", input, opts)
				if err != nil {
					errc <- err
					return
				}
				if !enqueued { // a Cluster: the record alone, then asynq's enqueue, as the API
					if err := store.Enqueue(ctx, e.client, j, 1, opts.MaxRetries, opts.Timeout, opts.Retention); err != nil {
						errc <- err
						return
					}
				}
				ids[i] = j.ID
			}
		}()
	}
	var ferr error
feed:
	for i := range n {
		select {
		case next <- i:
		case ferr = <-errc:
			break feed
		}
	}
	close(next)
	wg.Wait()
	took := time.Since(t0)
	select {
	case ferr = <-errc:
	default:
	}
	if ferr != nil {
		return nil, 0, fmt.Errorf("pre-submitting: %w", ferr)
	}
	return ids, took, nil
}

// drain pre-submits N jobs, then starts a worker and times it until all
// are finished; it counts the Redis commands of the drain.
func drain(ctx context.Context, e *env) (*result, error) {
	n := e.o.n
	m0, err := readMeter(ctx, e.ctl)
	if err != nil {
		return nil, err
	}
	ids, took, err := e.presubmit(ctx, n, e.o.stages)
	if err != nil {
		return nil, err
	}
	base, err := e.processed(ctx)
	if err != nil {
		return nil, err
	}
	m1, err := readMeter(ctx, e.ctl)
	if err != nil {
		return nil, err
	}
	stopProf, err := profile(e.o.profileDir, "drain-worker.pprof")
	if err != nil {
		return nil, err
	}
	stopTrace, err := startTrace(e.o.traceFile)
	if err != nil {
		stopProf()
		return nil, err
	}
	t0 := time.Now()
	w, err := e.startWorker(e.o.concurr)
	if err != nil {
		stopProf()
		stopTrace()
		return nil, err
	}
	polls, werr := e.waitProcessed(ctx, base+int64(n), max(2*time.Minute, time.Duration(n)*5*time.Millisecond))
	elapsed := time.Since(t0)
	m2, err := readMeter(ctx, e.ctl)
	stopProf()
	if err := stopTrace(); err != nil {
		e.logf("trace: %v", err)
	}
	if serr := w.stop(); serr != nil {
		e.logf("worker stop: %v", serr)
	}
	if werr != nil {
		return nil, fmt.Errorf("%w (%s)", werr, e.diagnose(ctx, ids))
	}
	if err != nil {
		return nil, err
	}
	sub, dr := m1.since(m0), m2.since(m1)
	sub.cmds["get"]-- // the read of the processed count
	dr.cmds["get"] -= polls
	states, err := e.countStates(ctx, ids)
	if err != nil {
		return nil, err
	}

	per := float64(n)
	r := newResult("drain")
	r.set("jobs_per_s", per/elapsed.Seconds())
	r.set("n", n)
	r.set("stages", e.o.stages)
	r.set("concurrency", e.o.concurr)
	r.set("seconds", elapsed.Seconds())
	r.set("redis_cmds_per_job", float64(dr.cmds.total())/per)
	r.set("evalsha_per_job", float64(dr.cmds["evalsha"]+dr.cmds["eval"])/per)
	r.set("redis_cpu_us_per_job", dr.redisCPU*1e6/per)
	r.set("worker_cpu_us_per_job", dr.procCPU*1e6/per)
	r.set("worker_allocs_per_job", float64(dr.allocs)/per)
	r.set("worker_alloc_bytes_per_job", float64(dr.allocBytes)/per)
	r.set("top_cmds_per_job", dr.cmds.top(10, per))
	r.set("submit_per_s", per/took.Seconds())
	r.set("submit_redis_cmds_per_job", float64(sub.cmds.total())/per)
	r.set("submit_redis_cpu_us_per_job", sub.redisCPU*1e6/per)
	r.set("submit_client_cpu_us_per_job", sub.procCPU*1e6/per)
	// What Redis keeps per finished job (record, checkpoints, events,
	// asynq's completed task) until the retention expires.
	r.set("redis_bytes_per_job", float64(m2.memory-m0.memory)/per)
	// What the job's own keys hold (MEMORY USAGE of record hash, event
	// stream and lease), the measure of the targets of issue 12.
	if avg, most, err := e.jobKeyBytes(ctx, ids); err == nil {
		r.set("job_key_bytes_avg", avg)
		r.set("job_key_bytes_max", most)
	} else {
		e.logf("MEMORY USAGE: %v", err)
	}
	r.set("succeeded", states[api.StateSucceeded])
	if states[api.StateSucceeded] != n {
		r.set("states", fmt.Sprint(states))
		return r, fmt.Errorf("drain: only %d of %d jobs succeeded: %v", states[api.StateSucceeded], n, states)
	}
	return r, nil
}

// diagnose says where unfinished jobs are: their record states and the
// bench queue's asynq counts.
func (e *env) diagnose(ctx context.Context, ids []string) string {
	states, err := e.countStates(ctx, ids)
	if err != nil {
		return err.Error()
	}
	q := "asynq:{" + catalog.QueueName(benchQueue, "sleep", e.reg.Get("sleep").Digest()) + "}:"
	p := e.ctl.Pipeline()
	pend := p.LLen(ctx, q+"pending")
	act := p.LLen(ctx, q+"active")
	retry := p.ZCard(ctx, q+"retry")
	arch := p.ZCard(ctx, q+"archived")
	done := p.ZCard(ctx, q+"completed")
	p.Exec(ctx)
	return fmt.Sprintf("records %v; asynq pending %d active %d retry %d archived %d completed %d",
		states, pend.Val(), act.Val(), retry.Val(), arch.Val(), done.Val())
}

// jobKeyBytes returns the mean and the largest MEMORY USAGE (SAMPLES 0:
// exact) of the keys of up to 500 of the jobs ids: record hash, event
// stream and lease, those that exist.
func (e *env) jobKeyBytes(ctx context.Context, ids []string) (avg float64, most int64, err error) {
	ids = ids[:min(len(ids), 500)]
	cmds := make([][3]*redis.IntCmd, len(ids))
	_, err = e.ctl.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			for k, key := range []string{store.JobKey(id), store.EventsKey(id), store.LeaseKey(id)} {
				cmds[i][k] = p.MemoryUsage(ctx, key, 0)
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, 0, err
	}
	var total int64
	for _, c := range cmds {
		var b int64
		for _, cmd := range c {
			b += cmd.Val() // 0 for a key that does not exist
		}
		total += b
		most = max(most, b)
	}
	if len(ids) == 0 {
		return 0, 0, nil
	}
	return float64(total) / float64(len(ids)), most, nil
}
