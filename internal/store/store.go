package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/tasks"

	"github.com/redis/go-redis/v9"
)

// Store defaults.
const (
	// LiveTTLDefault is the TTL of a job's keys while it is not finished,
	// refreshed on every write.
	LiveTTLDefault = 7 * 24 * time.Hour
	// RetentionDefault is how long a finished job stays readable.
	RetentionDefault = 24 * time.Hour
	// EventsMaxLenDefault caps the entries of a job's event stream.
	EventsMaxLenDefault = 1000
	// EventsBytesDefault caps the bytes of a live job's event stream: it
	// keeps as many entries as fit (at least 2), each a whole record.
	EventsBytesDefault = 24 << 10
	// IdempotencyTTL is how long an Idempotency-Key is remembered.
	IdempotencyTTL = 24 * time.Hour
	// OrphanAfterDefault is how long after its submit a job that no task
	// has claimed is checked by the reconciler: if its asynq task is
	// missing (the submit's enqueue failed and its clean-up could not
	// reach Redis either), the reconciler enqueues it.
	OrphanAfterDefault = time.Minute
)

// RetentionOr returns d, or RetentionDefault when d is 0.
func RetentionOr(d time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return RetentionDefault
}

// ErrFenced is returned by writes whose fencing token is no longer current:
// another worker owns the job now, and the caller must stop.
var ErrFenced = errors.New("fenced: another worker owns the job")

// Store reads and writes job records in Redis. It is safe for concurrent use.
type Store struct {
	rdb redis.UniversalClient
	// LiveTTL is the TTL of an unfinished job's keys; 0 means LiveTTLDefault.
	LiveTTL time.Duration
	// EventsMaxLen caps each job's event stream; 0 means EventsMaxLenDefault.
	EventsMaxLen int
	// OrphanAfter is how long after Create a job unclaimed by any task is
	// checked by the reconciler; 0 means OrphanAfterDefault.
	OrphanAfter time.Duration
	// EventsBytes caps the bytes of a live job's event stream; 0 means
	// EventsBytesDefault.
	EventsBytes int
	// TenantMaxLive is how many live jobs a tenant may have (Admit); 0
	// means no limit.
	TenantMaxLive int
	// KeepAllEvents keeps a job's whole event stream, up to EventsMaxLen
	// entries (no byte cap), also once it finished (instead of only its
	// final event), for tests that read every write a job made.
	// Production leaves it false.
	KeepAllEvents bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// SplitEnqueue makes CreateQueued leave the enqueue to its caller on
	// one node too, as on a Cluster (tests of that path).
	SplitEnqueue bool

	queues      sync.Map // asynq queues CreateQueued has added to asynq:queues
	keyCache    sync.Map // tenant → *tenantKeys (tenantKeysOf)
	pendingKeys sync.Map // asynq queue → its pending list's key (pendingKeyOf)
	upkeep      sync.Map // tenant → when its next upkeep is due (Unix ms; see upkeepDue)

	comb  atomic.Pointer[combiner] // set by StartCombiner
	reads atomic.Pointer[reader]   // set by StartReads
}

// NewStore returns a Store on rdb.
func NewStore(rdb redis.UniversalClient) *Store { return &Store{rdb: rdb} }

// cluster reports whether the store's Redis is a Cluster, whose scripts
// may only touch keys of one slot.
func (s *Store) cluster() bool {
	_, ok := s.rdb.(*redis.ClusterClient)
	return ok
}

func (s *Store) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

func (s *Store) liveTTL() time.Duration {
	if s.LiveTTL > 0 {
		return s.LiveTTL
	}
	return LiveTTLDefault
}

// maxLen is the number of entries a job's stream keeps after writing a
// record of recLen bytes: as many as fit in EventsBytes (2 at least, so a
// watcher one write behind loses nothing), at most EventsMaxLen.
func (s *Store) maxLen(recLen int) int {
	n, b := s.EventsMaxLen, s.EventsBytes
	if n <= 0 {
		n = EventsMaxLenDefault
	}
	if s.KeepAllEvents {
		return n
	}
	if b <= 0 {
		b = EventsBytesDefault
	}
	return max(2, min(n, b/max(recLen, 1)))
}

// redisErr wraps a Redis failure as tasks.EUNAVAILABLE (connection trouble,
// time-outs, a dropped connection, a server still loading or failing over)
// or tasks.EINTERNAL (anything else), naming the operation. It is the one
// place that decides which Redis failures a client should retry.
func redisErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if msg := err.Error(); strings.HasPrefix(msg, "READONLY") || strings.Contains(msg, ": READONLY") {
		return &tasks.Error{Code: tasks.EUNAVAILABLE, Message: readOnlyMessage, Err: fmt.Errorf("%s: %w", op, err)}
	}
	if Unavailable(err) {
		return &tasks.Error{Code: tasks.EUNAVAILABLE, Message: "the job store (Redis) is unavailable; try again shortly", Err: fmt.Errorf("%s: %w", op, err)}
	}
	return &tasks.Error{Code: tasks.EINTERNAL, Message: "internal error", Err: fmt.Errorf("%s: %w", op, err)}
}

// readOnlyMessage answers a write that reached a read-only replica: during
// a Sentinel failover for a moment, for good behind a plain URL whose node
// a failover turned into a replica.
const readOnlyMessage = "the job store (Redis) is a read-only replica: during a failover, try again shortly; " +
	"if it lasts, STAGED_REDIS_URL names a node that is no longer the primary: point it at the primary, " +
	"or use redis-sentinel://SENTINEL:26379,.../0?master=NAME so that staged follows failovers"

// RedisError is redisErr for the callers of Redis outside the store (the
// asynq inspector, the rate limiter): err as a tasks.Error naming op.
func RedisError(op string, err error) error { return redisErr(op, err) }

// unavailableReplies are the prefixes of Redis error replies that mean "not
// now" rather than "wrong".
var unavailableReplies = []string{"LOADING", "READONLY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "BUSY "}

// Unavailable reports whether err means Redis could not be reached or
// could not answer in time: a refused, reset or dropped connection (io.EOF
// mid-command), a time-out, a closed client, or a reply saying the server
// is loading or failing over. Such errors are worth a retry.
func Unavailable(err error) bool {
	if err == nil {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, redis.ErrClosed) || errors.Is(err, redis.ErrPoolTimeout) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED) {
		return true
	}
	// Some wrappers (asynq's) keep only the text.
	msg := err.Error()
	for _, s := range []string{"connection refused", "connection reset", "broken pipe", "i/o timeout", "use of closed network connection", "redis: client is closed"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	if msg == "EOF" || strings.HasSuffix(msg, ": EOF") || strings.HasSuffix(msg, "unexpected EOF") {
		return true
	}
	for _, p := range unavailableReplies {
		if strings.HasPrefix(msg, p) || strings.Contains(msg, ": "+p) {
			return true
		}
	}
	return false
}

// Delete removes a job's keys; used when a submit could not be enqueued.
func (s *Store) Delete(ctx context.Context, id string) error {
	// Its index entry, if any, is dropped by the next listing that meets it.
	return redisErr("store.Delete "+id, s.rdb.Del(ctx, JobKey(id), EventsKey(id), LeaseKey(id)).Err())
}

// GetRaw returns the record JSON of job id in one round trip. tenant ""
// reads any job; otherwise another tenant's job is tasks.ENOTFOUND, as are unknown
// and expired ones.
func (s *Store) GetRaw(ctx context.Context, id, tenant string) ([]byte, error) {
	rec, err := s.GetRecord(ctx, id, tenant)
	if err != nil {
		return nil, err
	}
	return []byte(rec), nil
}

// GetRecord is GetRaw with the record as Redis returned it, a string, not
// copied once more into a []byte: for a caller that only writes it out.
func (s *Store) GetRecord(ctx context.Context, id, tenant string) (string, error) {
	rec, owner, err := s.getOwned(ctx, id)
	if err == nil && tenant != "" && owner != tenant {
		return "", tasks.Errorf(tasks.ENOTFOUND, "no job with id %s (unknown, expired, or not yours)", id)
	}
	return rec, err
}

// GetOwned returns the record JSON of job id and its tenant, for any
// tenant, in one round trip (one read shared by the long polls of several
// tenants); unknown and expired jobs are tasks.ENOTFOUND.
func (s *Store) GetOwned(ctx context.Context, id string) (rec []byte, tenant string, err error) {
	r, owner, err := s.getOwned(ctx, id)
	if err != nil {
		return nil, "", err
	}
	return []byte(r), owner, nil
}

func (s *Store) getOwned(ctx context.Context, id string) (rec, tenant string, err error) {
	if !api.ValidID(id) {
		return "", "", tasks.Errorf(tasks.ENOTFOUND, "no job with id %q", id)
	}
	rec, tenant, err = s.readRecord(ctx, JobKey(id))
	if err != nil {
		return "", "", redisErr("store.Get "+id, err)
	}
	if rec == "" {
		return "", "", tasks.Errorf(tasks.ENOTFOUND, "no job with id %s (unknown, expired, or not yours)", id)
	}
	return rec, tenant, nil
}

// Get returns the decoded record of job id; see GetRaw.
func (s *Store) Get(ctx context.Context, id, tenant string) (*api.Job, error) {
	b, err := s.GetRaw(ctx, id, tenant)
	if err != nil {
		return nil, err
	}
	return api.DecodeJob(b)
}

// SaveArgs are the optional parts of a Save.
type SaveArgs struct {
	// TTL of the job's keys after this write; 0 means LiveTTL, or for a
	// terminal state the job's retention must be given.
	TTL time.Duration
	// Fields are extra hash fields to set in the same write (checkpoints).
	Fields map[string][]byte
	// Live says that the job counts among Tenant's live jobs (Claim.Live):
	// a terminal write then removes it from them in the same round trip.
	// Without it, a terminal write that finds the job counted removes it
	// with a round trip of its own.
	Live   bool
	Tenant string
	// Checkpoints names the checkpoint fields (out:K) the job may hold,
	// which a succeeded write drops; nil means unknown: the write looks
	// for them.
	Checkpoints []string
	// Task is the asynq task whose run wrote the job's final record: the
	// terminal write sets its result, and completes it when Task.Complete
	// says so and Redis is a single node (see TaskEnd).
	Task *TaskEnd
}

// TaskEnd is the asynq task (v0.26 key layout) of a terminal write.
type TaskEnd struct {
	Queue, ID string
	// Result is the task's result, what asynq's ResultWriter would write
	// (asynqmon shows it).
	Result []byte
	// Complete asks for the task to be completed in the same script as
	// asynq's MarkAsComplete would (the handler is about to return nil),
	// with the task's Retention. On a single node only: on a Cluster the
	// task's keys are in another slot, and asynq completes it itself.
	Complete  bool
	Retention time.Duration
	// Msg is the task's message as its dequeue answered it
	// (Claim.TaskMsg), "" when unknown: with it the completion does not
	// read it from Redis.
	Msg string
}

// SaveResult says what a Save learned.
type SaveResult struct {
	EventID         string
	CancelRequested bool
	// TaskCompleted: the write completed the asynq task (SaveArgs.Task):
	// asynq's own MarkAsComplete of it must not run (it would find the
	// task gone from the active list).
	TaskCompleted bool
}

// statsTTL is how long asynq keeps its daily processed counters.
const statsTTL = 90 * 24 * time.Hour

// Save writes j (UpdatedAt and ExpiresAt set here) if token is still the
// job's fencing token: one round trip that also appends the event, refreshes
// the TTLs, releases the lease on a terminal state and notifies watchers.
// Returns ErrFenced when another owner has taken over.
func (s *Store) Save(ctx context.Context, j *api.Job, token int64, a SaveArgs) (SaveResult, error) {
	ttl := a.TTL
	if ttl <= 0 {
		ttl = s.liveTTL()
	}
	now := s.now()
	j.UpdatedAt, j.ExpiresAt = now, now.Add(ttl)
	rec, err := api.Marshal(j)
	if err != nil {
		return SaveResult{}, &tasks.Error{Code: tasks.EINTERNAL, Message: "internal error", Err: err}
	}
	term := "0"
	if j.State.Terminal() {
		term = "1"
		if s.KeepAllEvents {
			term = "2"
		}
	}
	pub, err := s.shardArg(ctx, j.ID)
	if err != nil {
		return SaveResult{}, err
	}
	nd := -1
	if a.Checkpoints != nil {
		nd = len(a.Checkpoints)
	}
	task := a.Task
	if !j.State.Terminal() {
		task = nil
	}
	// On one node the task's result, and its completion, go in the script:
	// its keys (asynq's) follow the job's.
	_, cluster := s.rdb.(*redis.ClusterClient)
	inScript, complete := task != nil && !cluster, false
	secs := int64(0)
	numKeys := 3
	if inScript {
		secs = int64(task.Retention / time.Second)
		complete = task.Complete && secs > 0
		numKeys += 1
		if complete {
			numKeys += 5
		}
	}
	// The command is built without boxing its values (evalArgs): a final
	// write has 30 or so.
	ea := newEvalArgs(saveScript, numKeys)
	ea.key(JobKey(j.ID))
	ea.key(EventsKey(j.ID))
	ea.key(LeaseKey(j.ID))
	if inScript {
		q := "asynq:{" + task.Queue + "}:"
		if complete {
			ea.key(q + "active")
			ea.key(q + "lease")
			ea.key(q + "completed")
			ea.key(q + "t:" + task.ID)
			ea.key(q + "processed:" + now.Format("2006-01-02"))
			ea.key(q + "processed")
		} else {
			ea.key(q + "t:" + task.ID)
		}
	}
	ea.int(token)
	ea.raw(rec)
	ea.str(string(j.State))
	ea.int(ttl.Milliseconds())
	ea.str(term)
	ea.int(int64(s.maxLen(len(rec))))
	ea.str(pub)
	ea.int(int64(2 * len(a.Fields)))
	ea.int(int64(nd))
	for k, v := range a.Fields {
		ea.str(k)
		ea.raw(v)
	}
	for _, k := range a.Checkpoints {
		ea.str(k)
	}
	if inScript {
		if complete {
			// The task message gets completed_at (field 13, a varint) as
			// asynq sets it: appended, a later field wins in protobuf.
			completedAt := binary.AppendUvarint([]byte{13 << 3}, uint64(now.Unix()))
			ea.str(task.ID)
			ea.int(now.Add(statsTTL).Unix())
			ea.int(now.Unix() + secs)
			ea.raw(completedAt)
			ea.raw(task.Result)
			if task.Msg != "" {
				ea.raw(append([]byte(task.Msg), completedAt...))
			}
		} else {
			ea.raw(task.Result)
		}
		task = nil
	}
	r := batchReq{script: saveScript, argv: ea.Argv()}
	if j.State.Terminal() {
		// The lease index entry goes in the same round trip. Should the
		// save turn out fenced, the new owner's next renewal adds it back.
		r.extra = func(p redis.Pipeliner) {
			p.ZRem(ctx, LeasesKey(j.ID), j.ID)
			if a.Live {
				p.ZRem(ctx, LiveKey(a.Tenant), j.ID)
			}
			if task != nil { // a Cluster: the task's slot is not the job's
				p.HSet(ctx, "asynq:{"+task.Queue+"}:t:"+task.ID, "result", task.Result)
			}
		}
	}
	cmd, err := s.eval(ctx, r)
	if err != nil && r.extra != nil && cmd != nil && cmd.Err() == nil {
		err = nil // the write is done; the other commands are best effort
	}
	if err != nil {
		return SaveResult{}, redisErr("store.Save "+j.ID, err)
	}
	res, err := cmd.Slice()
	if err != nil {
		return SaveResult{}, redisErr("store.Save "+j.ID, err)
	}
	if n, ok := res[0].(int64); ok && n == -1 {
		return SaveResult{}, ErrFenced
	}
	if len(res) < 5 {
		return SaveResult{}, redisErr("store.Save "+j.ID, fmt.Errorf("unexpected reply %v", res))
	}
	eid, _ := res[0].(string)
	c, _ := res[1].(string)
	if n, _ := res[2].(int64); n == 1 && !a.Live {
		// The job finished: it no longer counts against its tenant.
		// Should this fail, the entry is dropped when its live TTL runs
		// out (admitScript).
		tenant, _ := res[3].(string)
		_ = s.Unadmit(ctx, tenant, j.ID)
	}
	done, _ := res[4].(int64)
	return SaveResult{EventID: eid, CancelRequested: c == "1", TaskCompleted: done == 1}, nil
}

// evalWith runs script and the commands extra adds in one pipelined round
// trip, loading the script once if Redis does not have it (after a restart
// or on a new server). With a combiner running (StartCombiner), the round
// trip is shared with the other calls waiting at the same moment.
func (s *Store) evalWith(ctx context.Context, script *redis.Script, keys []string, args []any, extra func(redis.Pipeliner)) (*redis.Cmd, error) {
	return s.eval(ctx, batchReq{script: script, keys: keys, args: args, extra: extra})
}

// evalArgv is evalWith for a script call built with evalArgs (and no
// extra commands).
func (s *Store) evalArgv(ctx context.Context, script *redis.Script, a *evalArgs) (*redis.Cmd, error) {
	return s.eval(ctx, batchReq{script: script, argv: a.Argv()})
}

// eval runs the call of req (its script, keys and args or argv, extra).
func (s *Store) eval(ctx context.Context, req batchReq) (*redis.Cmd, error) {
	if c := s.comb.Load(); c != nil {
		return c.do(ctx, s, req)
	}
	return s.evalDirect(ctx, &req)
}

// evalDirect is evalWith on a pipeline of its own.
func (s *Store) evalDirect(ctx context.Context, r *batchReq) (*redis.Cmd, error) {
	for try := 0; ; try++ {
		p := s.rdb.Pipeline()
		cmd := r.evalSha(ctx, p)
		if r.extra != nil {
			r.extra(p)
		}
		_, err := p.Exec(ctx)
		if try == 0 && redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
			if err := r.script.Load(ctx, s.rdb).Err(); err != nil {
				return nil, err
			}
			continue
		}
		if err == nil {
			err = cmd.Err()
		}
		return cmd, err
	}
}
