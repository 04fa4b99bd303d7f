package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/internal/store"

	"github.com/hibiken/asynq"

	"github.com/staged-dev/staged/tasks"
)

// Why a run stops early: the causes of its context's cancellation.
var (
	errCanceled     = errors.New("the job was canceled")
	errFenced       = errors.New("another worker took the job over")
	errShutdown     = errors.New("the worker is shutting down")
	errJobTimeout   = errors.New("job timeout")
	errStageTimeout = errors.New("stage timeout")
	// errClosed is a write after the run's record was closed (terminal,
	// handed back, or fenced).
	errClosed = errors.New("the job's record is closed to this run")
)

// Job hash fields the worker keeps besides the record.
const (
	fieldRetriesLeft = store.FieldRetriesLeft
	fieldTakeovers   = store.FieldTakeovers
)

// handle is the asynq handler of every task type: one attempt at a job.
// It runs the attempt on a goroutine of the stage pool (stagepool.go),
// whose stack has grown already, not on asynq's new goroutine of the task;
// a panic goes on in handle's goroutine, to asynq, as if it were there.
func (w *Worker) handle(ctx context.Context, t *asynq.Task) error {
	c := &attemptCall{w: w, ctx: ctx, t: t}
	c.wg.Add(1)
	w.stages.run(c.run)
	c.wg.Wait()
	if c.panicked != nil {
		w.taskLog(ctx).Error("the job's attempt panicked outside its stages; asynq retries the task", "panic", fmt.Sprint(c.panicked), "stack", string(c.stack))
		panic(c.panicked)
	}
	return c.err
}

// attemptCall is one attempt handed by handle to a pooled goroutine, with
// what it returns: two allocations (the call and its func) where a
// closure, its captured results and a channel took five.
type attemptCall struct {
	w   *Worker
	ctx context.Context
	t   *asynq.Task
	wg  sync.WaitGroup // done when the fields below are set

	err      error
	panicked any
	stack    []byte
}

func (c *attemptCall) run() {
	defer c.wg.Done()
	defer func() {
		if x := recover(); x != nil {
			c.panicked, c.stack = x, debug.Stack()
		}
	}()
	c.err = c.w.attempt(c.ctx, c.t)
}

// taskLog is the worker's logger with the id of ctx's asynq task, and the
// id of its job when the task id names one: for what happens before the
// payload is decoded.
func (w *Worker) taskLog(ctx context.Context) *slog.Logger {
	log := w.log
	if tid, ok := asynq.GetTaskID(ctx); ok {
		log = log.With("task_id", tid)
		if ids := jobIDsIn(tid); len(ids) == 1 {
			log = log.With("job_id", ids[0])
		}
	}
	return log
}

// attempt is handle's work.
func (w *Worker) attempt(ctx context.Context, t *asynq.Task) error {
	defer w.waker.pf.finished() // a slot is free again (prefetch.go)
	tid, _ := asynq.GetTaskID(ctx)
	h, taken := w.waker.pf.claimed(tid)
	pl, err := store.DecodePayload(t.Payload())
	if err != nil {
		w.taskLog(ctx).Error("dropping a task with a bad payload", "task_type", t.Type(), "err", err)
		if taken {
			w.unclaim(h.t)
		}
		return fmt.Errorf("worker: bad payload in a %q task: %v: %w", t.Type(), err, asynq.SkipRetry)
	}
	log := w.jobLog(pl.ID)
	var c *store.Claim
	claimedAt := time.Now()
	if taken {
		// The dequeue claimed the job (prefetch.go), for the job and
		// generation its task id names: the payload's, unless the task was
		// made by hand.
		var ok bool
		if c, ok, err = h.t.Claim(pl.ID, pl.Gen); !ok {
			log.Warn("the task's id names another job than its payload; giving its claim back", "task_id", tid, "gen", pl.Gen)
			w.unclaim(h.t)
			taken = false
		}
		claimedAt = h.at
	}
	if !taken {
		w.claimTrips.Add(1)
		c, err = w.store.Claim(ctx, pl.ID, pl.Gen, w.cfg.Lease)
	}
	if err != nil {
		log.Warn("cannot claim the job; asynq will retry the task", "err", err)
		return infraError{fmt.Errorf("claim job %s: %w", pl.ID, err)}
	}
	if c.Outcome != store.ClaimOK {
		if c.Outcome == store.ClaimDone {
			// As when asynqmon's "run" is used on a finished job's task.
			log.Info("the job has finished; its task does not run it again (a failed or canceled job runs again with POST /v1/jobs/{id}/retry or staged retry ID)", "gen", pl.Gen)
		} else {
			log.Debug("nothing to do for this task", "outcome", string(c.Outcome), "gen", pl.Gen)
		}
		return nil
	}
	r := w.newRun(ctx, pl, c, t.Headers(), log)
	r.resultKey = taskResultKey(ctx)
	r.claimedAt = claimedAt
	return r.execute()
}

// unclaim gives back a claim made by the dequeue that no run will use.
func (w *Worker) unclaim(t store.Taken) {
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	if _, err := w.store.Unclaim(ctx, []store.Taken{t}); err != nil {
		id, _ := store.JobOfTask(t.TaskID)
		w.log.Warn("cannot give back a job's claim; it runs again once its lease lapses", "job_id", id, "err", err)
	}
}

// run is one attempt at one job, from its claim to its last write.
type run struct {
	w      *Worker
	log    *slog.Logger
	p      *tasks.Pipeline // nil when not registered here
	stages []tasks.Stage   // the job's stages: p.StagesFor(input)
	id     string
	token  int64
	claim  *store.Claim
	// claimedAt is when the claim was made (the lease's start).
	claimedAt time.Time
	opts      api.Options
	retried   int // asynq's retry count of this task
	maxRetry  int // the job's retries left when this task was enqueued (store.TaskRetries)
	timeout   time.Duration
	keeper    *leaseKeeper
	metrics   *typeMetrics // the job type's label children
	scratch   scratchDir   // the stages' scratch directory (tasks.StageInfo.Scratch)
	// scratchFn is StageInfo.Scratch for attempt scratchAttempt.
	scratchFn      func() (string, error)
	scratchAttempt int
	call           *stageCall  // hands the stages to the pool (runStage)
	finished       atomic.Bool // this run wrote the job's final record
	// resultKey is the asynq task's hash, whose result the job's final
	// write sets (result.go); "" for none.
	resultKey string

	// firstStart is set when this run starts the job for the first time
	// (no earlier attempt started it), at startedAt.
	firstStart bool
	startedAt  time.Time

	ctx    context.Context         // the attempt: job timeout, and stop's causes
	stop   context.CancelCauseFunc // cancels ctx: errCanceled, errFenced, errShutdown, a Permanent error
	cancel context.CancelFunc

	wmu     sync.Mutex        // serialises record writes; guards the fields below
	job     *api.Job          // the record, ahead of Redis while unsaved (write.go)
	closed  bool              // no more writes from this run
	unsaved bool              // job has changes not written yet
	fields  map[string][]byte // hash fields (checkpoints) for the next write
	written map[string]bool   // checkpoint fields this run sent (write.go)

	pmu       sync.Mutex // guards the progress fields; taken after wmu
	stage     int        // the stage reporting progress, -1 none
	frac      float64
	partial   json.RawMessage
	dirty     bool
	scheduled bool
	lastWrite time.Time   // the claim counts as a write
	timer     *time.Timer // the scheduled flush
}

// newRun makes the run of claim c by the task of payload pl and headers.
func (w *Worker) newRun(ctx context.Context, pl store.Payload, c *store.Claim, headers map[string]string, log *slog.Logger) *run {
	r := &run{w: w, log: log, id: pl.ID, token: c.Token, claim: c, opts: c.Options, job: c.Job, stage: -1, lastWrite: time.Now()}
	r.p = w.cfg.Registry.Get(c.Job.Type)
	r.metrics = w.metrics.forType(c.Job.Type)
	r.retried, _ = asynq.GetRetryCount(ctx)
	r.maxRetry, _ = asynq.GetMaxRetry(ctx)
	r.maxRetry = store.TaskRetries(headers, r.maxRetry)
	r.timeout = jobTimeout(c.Options, r.p)
	cctx, stop := context.WithCancelCause(ctx)
	r.ctx, r.cancel = context.WithTimeoutCause(cctx, r.timeout, errJobTimeout)
	r.stop = stop
	r.keeper = newLeaseKeeper(r)
	return r
}

// execute runs the job's remaining stages and returns what asynq should
// know: nil when the job finished, was canceled, handed back or taken over;
// an error wrapping asynq.SkipRetry when it failed for good; another error
// for asynq to retry the task.
func (r *run) execute() error {
	w := r.w
	w.runs.add(r)
	defer w.runs.remove(r)
	w.canceler.watch(r.id)
	defer w.canceler.unwatch(r.id)
	r.keeper.start(&w.wg)
	defer r.keeper.shutdown()
	defer r.stop(context.Canceled)
	defer r.cancel()
	defer func() {
		if err := r.scratch.remove(); err != nil {
			r.log.Warn("cannot remove the job's scratch directory", "err", err)
		}
	}()

	if r.claim.CancelRequested {
		return r.finishCanceled()
	}
	if err := r.prepare(); err != nil {
		return r.fail(-1, err)
	}
	in, k := r.resumePoint()
	if k == 0 && r.p.Input != nil {
		// The API checked the input against the published schema; the
		// pipeline's own checks (one field against another) run here.
		var err error
		if in, err = r.p.Input.Normalize(in); err != nil {
			return r.fail(-1, tasks.Permanent(fmt.Errorf("the pipeline refuses the input: %s", tasks.ErrorMessage(err))))
		}
	}
	long := false // the last stage ran FlushInterval or longer
	for first := true; k < len(r.stages); k, first = k+1, false {
		if cause := r.interrupted(); cause != nil {
			return r.interrupt(k, cause)
		}
		// The start of this stage is written with the end of the last one:
		// at once after a long stage, else within FlushInterval (write.go).
		if long {
			res, err := r.commit(r.startStage(k, first), 0, r.startFields(first), false)
			if err != nil {
				return r.writeFailed(err)
			}
			if res.CancelRequested {
				r.stop(errCanceled)
			}
		} else if err := r.note(r.startStage(k, first), r.startFields(first)); err != nil {
			return r.writeFailed(err)
		}
		if r.firstStart {
			r.firstStart = false
			r.metrics.jobStarted(r.job.CreatedAt, r.startedAt)
		}
		out, took, err := r.runStage(k, in)
		if err != nil {
			if cause := context.Cause(r.ctx); cause != nil && !errors.Is(cause, errJobTimeout) && !tasks.IsPermanent(cause) {
				return r.interrupt(k, cause)
			}
			return r.fail(k, err)
		}
		r.endStage(k, out)
		long = took >= r.w.cfg.FlushInterval
		in = out
	}
	switch cause := context.Cause(r.ctx); {
	case errors.Is(cause, errFenced):
		return r.fenced()
	case errors.Is(cause, errCanceled):
		return r.finishCanceled()
	}
	return r.succeed(in)
}

// resumePoint returns the first stage to run, skipping those that
// succeeded in an earlier attempt, and its input.
func (r *run) resumePoint() (json.RawMessage, int) {
	in := r.claim.Input
	if len(in) == 0 {
		in = json.RawMessage(`{}`)
	}
	k := 0
	for ; k < len(r.stages) && r.job.Stages[k].State == api.StateSucceeded; k++ {
		out, ok := r.claim.Outputs[k]
		if !ok {
			break
		}
		in = out
	}
	if k > 0 {
		r.log.Info("resuming the job after its completed stages", "stage", r.stages[min(k, len(r.stages)-1)].Name, "skipped", k)
	}
	return in, k
}

// interrupted returns why the run must not start another stage, or nil.
func (r *run) interrupted() error {
	if cause := context.Cause(r.ctx); cause != nil {
		return cause
	}
	if r.w.draining.Load() {
		return errShutdown
	}
	return nil
}

// interrupt ends a run stopped by cause before or during stage k.
func (r *run) interrupt(k int, cause error) error {
	switch {
	case errors.Is(cause, errFenced):
		return r.fenced()
	case errors.Is(cause, errCanceled):
		return r.finishCanceled()
	case errors.Is(cause, errJobTimeout):
		return r.fail(k, r.jobTimeoutError(k))
	case tasks.IsPermanent(cause):
		return r.fail(k, cause)
	default: // shutting down, or asynq stopped the task
		return r.handBack(k)
	}
}

func (r *run) startStage(k int, first bool) func(*api.Job, time.Time) {
	return func(j *api.Job, now time.Time) {
		if first {
			j.State = api.StateRunning
			j.Attempt++
			if j.StartedAt == nil {
				j.StartedAt = &now
				r.firstStart, r.startedAt = true, now
			}
			j.Error, j.NextAttemptAt, j.CancelRequested = nil, nil, false
		}
		st := &j.Stages[k]
		st.State, st.StartedAt, st.FinishedAt = api.StateRunning, &now, nil
		st.Attempts++
		j.Stage = api.StageRef{Index: k + 1, Name: r.stages[k].Name, Total: len(r.stages)}
		j.Progress = stagesProgress(r.stages, k, 0)
	}
}

func (r *run) startFields(first bool) map[string][]byte {
	if !first {
		return nil
	}
	return map[string][]byte{fieldRetriesLeft: []byte(strconv.Itoa(r.maxRetry - r.retried))}
}

// runStage runs stage k on in and returns its output as JSON and how long
// the stage ran. Timeouts, panics and oversized outputs come back as errors
// naming the stage.
func (r *run) runStage(k int, in json.RawMessage) (out json.RawMessage, took time.Duration, err error) {
	st := r.stages[k]
	ctx, cancel := r.ctx, context.CancelFunc(func() {})
	if st.Timeout > 0 {
		ctx, cancel = context.WithTimeoutCause(r.ctx, st.Timeout, errStageTimeout)
	}
	defer cancel()
	r.setStage(k)
	defer r.setStage(-1)
	ctx = tasks.WithStageInfo(ctx, r.stageInfo(k))

	c := r.call
	if c == nil {
		c = &stageCall{r: r, done: make(chan stageResult, 1), progress: make([]stageProgress, len(r.stages))}
		for i := range c.progress {
			c.progress[i] = stageProgress{r: r, k: i}
		}
		c.fn = c.run
		r.call = c
	}
	c.ctx, c.k, c.in = ctx, k, in
	start := time.Now()
	r.w.stages.run(c.fn) // on a goroutine of its own (stagepool.go)
	var res stageResult
	select {
	case res = <-c.done:
	case <-ctx.Done():
		t := time.NewTimer(abandonAfter)
		select {
		case res = <-c.done:
			t.Stop()
		case <-t.C:
			r.log.Error("stage did not return after its context ended; abandoning it", "stage", st.Name, "cause", context.Cause(ctx))
			res.err = context.Cause(ctx)
			r.call = nil // the abandoned stage still has this one
		}
	}
	took = time.Since(start)
	if res.err != nil {
		switch cause := context.Cause(ctx); {
		case errors.Is(cause, errStageTimeout):
			return nil, took, fmt.Errorf("stage %s exceeded its %s timeout", st.Name, fmtDuration(st.Timeout))
		case errors.Is(cause, errJobTimeout):
			return nil, took, r.jobTimeoutError(k)
		case tasks.IsPermanent(cause):
			return nil, took, cause
		}
		return nil, took, res.err
	}
	r.metrics.stage(st.Name).Observe(took.Seconds())
	out, err = api.Marshal(res.v)
	if err != nil {
		return nil, took, tasks.Permanent(fmt.Errorf("stage %s returned an output that is not JSON: %v", st.Name, err))
	}
	if len(out) > r.w.cfg.MaxPayload {
		what := "an output"
		if k == len(r.stages)-1 {
			what = "a result"
		}
		return nil, took, tasks.Permanent(fmt.Errorf("stage %s returned %s of %d bytes (as JSON), over the %d-byte limit%s",
			st.Name, what, len(out), r.w.cfg.MaxPayload, payloadHint))
	}
	return out, took, nil
}

// stageCall hands the stages of one run, one at a time, to the pooled
// goroutines that run them: the run makes it once, with its result
// channel, its func and the stages' Progress values, instead of those for
// every stage. A stage that is abandoned keeps it (runStage makes another
// should the run go on).
type stageCall struct {
	r        *run
	fn       func() // run, as the func the pool takes
	done     chan stageResult
	progress []stageProgress // stage k's Progress is &progress[k]

	// The stage to run next, set before fn is handed to the pool.
	ctx context.Context
	k   int
	in  json.RawMessage
}

type stageResult struct {
	v   any
	err error
}

// run runs the stage set in c and sends its result.
func (c *stageCall) run() {
	r, ctx, k, in, done := c.r, c.ctx, c.k, c.in, c.done
	st := r.stages[k]
	defer func() {
		if x := recover(); x != nil {
			r.log.Error("stage panicked", "stage", st.Name, "panic", fmt.Sprint(x), "stack", string(debug.Stack()))
			done <- stageResult{err: fmt.Errorf("panic in stage %s: %v", st.Name, x)}
		}
	}()
	v, err := st.Run(ctx, in, &c.progress[k])
	done <- stageResult{v, err}
}

// stageInfo describes the run of stage k to the stage.
func (r *run) stageInfo(k int) tasks.StageInfo {
	r.wmu.Lock()
	attempt := r.job.Attempt
	r.wmu.Unlock()
	if r.scratchFn == nil || r.scratchAttempt != attempt {
		// One func for the run's stages: the attempt is set by the first
		// stage's start.
		r.scratchFn, r.scratchAttempt = func() (string, error) { return r.scratch.get(r.id, attempt) }, attempt
	}
	return tasks.StageInfo{
		JobID: r.id, Stage: r.stages[k].Name, Index: k + 1, Total: len(r.stages), Attempt: attempt,
		Scratch: r.scratchFn,
	}
}

// payloadHint ends the message of a payload over MaxPayload.
const payloadHint = "; keep large data elsewhere and pass a reference to it"

func (r *run) jobTimeoutError(k int) error {
	return fmt.Errorf("job exceeded its %s timeout in stage %s", fmtDuration(r.timeout), r.stages[k].Name)
}

func withField(m map[string][]byte, k string, v []byte) map[string][]byte {
	if m == nil {
		m = map[string][]byte{}
	}
	m[k] = v
	return m
}

// jobTimeout is the per-attempt timeout: the submit's, else the pipeline's,
// else tasks.DefaultJobTimeout.
func jobTimeout(o api.Options, p *tasks.Pipeline) time.Duration {
	switch {
	case o.Timeout > 0:
		return o.Timeout
	case p != nil && p.Timeout > 0:
		return p.Timeout
	}
	return tasks.DefaultJobTimeout
}

// maxRetries is the job's retry budget: the submit's, else the pipeline's.
func maxRetries(o api.Options, p *tasks.Pipeline) int {
	if o.MaxRetries > 0 || p == nil {
		return o.MaxRetries
	}
	return p.MaxRetries
}

// fmtDuration prints d without zero minutes and seconds: 1h, 2m, 1m30s, 200ms.
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// prepare finds the job's pipeline and stage list, or returns the
// permanent error that fails the job: a job runs only with the definition
// it was accepted under, never resuming a checkpoint into another stage list.
func (r *run) prepare() error {
	if r.p == nil {
		return tasks.Permanent(fmt.Errorf("pipeline %q is not run by this worker (it runs %s)",
			r.job.Type, strings.Join(r.w.cfg.Registry.Names(), ", ")))
	}
	if d, mine := r.job.Digest, r.w.digests[r.p.Name]; d != "" && d != mine {
		return tasks.Permanent(fmt.Errorf("the job was accepted under definition %.8s of pipeline %q and this worker runs definition %.8s; "+
			"running it here could resume it in a different stage list", d, r.p.Name, mine))
	}
	stages, err := r.p.StagesFor(r.claim.Input)
	if err != nil {
		return tasks.Permanent(fmt.Errorf("pipeline %q cannot build its stages: %s", r.p.Name, tasks.ErrorMessage(err)))
	}
	r.stages = stages
	if len(r.job.Stages) == 0 && r.p.Build != nil {
		// The API does not run Build: the worker that starts the job
		// writes its stage list, with the first stage's start.
		r.wmu.Lock()
		r.job.Stages = make([]api.StageStatus, len(stages))
		for i, st := range stages {
			r.job.Stages[i] = api.StageStatus{Name: st.Name, State: api.StatePending}
		}
		r.job.Stage.Total = len(stages)
		r.wmu.Unlock()
	}
	if len(r.job.Stages) != len(r.stages) {
		return tasks.Permanent(fmt.Errorf("pipeline %q has %d stages now; the job was created with %d",
			r.p.Name, len(r.stages), len(r.job.Stages)))
	}
	return nil
}
