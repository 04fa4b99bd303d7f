package worker

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// taskEnds is a go-redis hook on the asynq server's client (like the
// waker): it sends the scripts with which asynq ends the tasks of the
// handlers that return at the same moment (Done, MarkAsComplete, Retry,
// Archive, Requeue: the scripts whose first key is a queue's active list)
// in one pipelined round trip, as the store's combiner does for the record
// writes: group commit, with no timer. Each script keeps its own reply and
// error; asynq sees no difference but the round trips it did not make.
//
// It also answers asynq's MarkAsComplete of the tasks that a job's final
// write already completed (store.TaskEnd, on a single node): asynq needs
// only its nil error, and the script would find the task gone.
type taskEnds struct {
	rdb   redis.UniversalClient
	mu    sync.Mutex
	done  map[string]time.Time // task hash keys completed by a final write, when
	swept time.Time
	// answered counts the MarkAsCompletes answered without a round trip.
	answered atomic.Int64
	running  atomic.Bool
	reqs     chan *endReq // unbuffered: a request is either taken or still the caller's
	quit     chan struct{}
	stopped  chan struct{}
	once     sync.Once
}

type endReq struct {
	cmd  redis.Cmder
	done chan struct{}
}

// endsMax caps the scripts one pipeline carries.
const endsMax = 128

// newTaskEnds returns the hook for rdb, the client it is added to. Until
// start and after stop, it lets every command through.
func newTaskEnds(rdb redis.UniversalClient) *taskEnds {
	return &taskEnds{rdb: rdb, reqs: make(chan *endReq), quit: make(chan struct{}), stopped: make(chan struct{}), done: map[string]time.Time{}}
}

// start starts two senders: while one waits for Redis, the next batch
// gathers.
func (te *taskEnds) start() {
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(te.loop)
	}
	go func() { wg.Wait(); close(te.stopped) }()
	te.running.Store(true)
}

// stop stops the senders; the scripts after that go one by one. Call it
// once, after start.
func (te *taskEnds) stop() {
	te.once.Do(func() { close(te.quit) })
	<-te.stopped
	te.running.Store(false)
}

// DialHook implements redis.Hook.
func (te *taskEnds) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessPipelineHook implements redis.Hook.
func (te *taskEnds) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// ProcessHook implements redis.Hook: asynq's task-ending scripts go to a
// sender, everything else straight on.
func (te *taskEnds) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if te.answer(cmd) {
			return nil
		}
		if !te.running.Load() || !endsTask(cmd) {
			return next(ctx, cmd)
		}
		r := &endReq{cmd: cmd, done: make(chan struct{})}
		select {
		case te.reqs <- r:
		case <-te.stopped:
			return next(ctx, cmd)
		}
		// The sender writes cmd's reply: wait for it, whatever ctx says
		// (its pipeline has a deadline of its own).
		<-r.done
		return cmd.Err()
	}
}

func (te *taskEnds) loop() {
	batch := make([]*endReq, 0, endsMax)
	for {
		batch = batch[:0]
		select {
		case r := <-te.reqs:
			batch = append(batch, r)
		case <-te.quit:
			return
		}
	more:
		for len(batch) < endsMax {
			select {
			case r := <-te.reqs:
				batch = append(batch, r)
			default:
				break more
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
		p := te.rdb.Pipeline()
		for _, r := range batch {
			_ = p.Process(ctx, r.cmd)
		}
		_, _ = p.Exec(ctx) // each command keeps its own error
		cancel()
		for _, r := range batch {
			close(r.done)
		}
		clear(batch)
	}
}

// completedMax is how long a completed task waits for asynq's
// MarkAsComplete: asynq sends none when the task's lease has lapsed, and
// its entry goes at the next sweep.
const completedMax = 10 * time.Minute

// completed records that the job's final write completed the asynq task
// whose hash is key, asynq:{queue}:t:id (store.SaveResult.TaskCompleted),
// for answer.
func (te *taskEnds) completed(key string) {
	now := time.Now()
	te.mu.Lock()
	defer te.mu.Unlock()
	te.done[key] = now
	if now.Sub(te.swept) > completedMax {
		te.swept = now
		for k, t := range te.done {
			if now.Sub(t) > completedMax {
				delete(te.done, k)
			}
		}
	}
}

// answer answers cmd itself, with the script's reply OK, when it is
// asynq's MarkAsComplete of a task that a final write completed.
func (te *taskEnds) answer(cmd redis.Cmder) bool {
	a := cmd.Args()
	// evalsha SHA 6 active lease completed t:ID processed:DAY processed ID ...
	if len(a) < 10 || !endsTask(cmd) {
		return false
	}
	if n, ok := a[2].(int); !ok || n != 6 {
		return false
	}
	c, ok := cmd.(*redis.Cmd)
	done, _ := a[5].(string)
	task, _ := a[6].(string)
	if !ok || !strings.HasSuffix(done, "}:completed") {
		return false
	}
	te.mu.Lock()
	_, ok = te.done[task]
	delete(te.done, task)
	te.mu.Unlock()
	if ok {
		c.SetVal("OK")
		te.answered.Add(1)
	}
	return ok
}

// endsTask reports whether cmd is one of asynq's scripts that end an
// active task: EVALSHA/EVAL whose first key is asynq:{Q}:active.
func endsTask(cmd redis.Cmder) bool {
	a := cmd.Args()
	if len(a) < 4 {
		return false
	}
	if name, _ := a[0].(string); name != "evalsha" && name != "eval" {
		return false
	}
	k, _ := a[3].(string)
	return strings.HasPrefix(k, "asynq:{") && strings.HasSuffix(k, "}:active")
}
