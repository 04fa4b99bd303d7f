package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/tasks"
)

// createScript is Create on one node: the tenant's admission (admitScript's
// check, when ARGV[2] > 0), the listing index entry (indexJob), the lease
// index entry (indexOrphan) and the record, in one round trip; with
// CreateQueued, the job's first asynq task instead of the lease index
// entry, as asynq's own enqueue script writes it (its HSET and LPUSH; not
// its EXISTS: the task's id is the job's, made for this submit, so no task
// has it yet; SADD of the queue the first time this Store enqueues on it,
// as asynq's client does). A job enqueued in its own create needs no orphan
// check: its task exists from the moment the job does, and its claim
// enters the lease index.
// The tenant's live set gets its TTL when the script creates it and when
// the tenant's upkeep is due (see upkeepDue); its TTL is the live TTL plus
// upkeepEvery, so that it outlasts every entry's deadline between two
// refreshes. The listing index's entries older than IndexHorizon are
// dropped at the tenant's upkeep too (at most once a minute per Store, not
// at every submit; the listing skips and removes entries whose job has
// expired, whatever their age).
// KEYS: job, tenant index, lease index shard, tenant's live set, and with
// a task: asynq's task key, its queue's pending list, asynq:queues.
// ARGV: now_ms, limit (0: no admission), live deadline_ms, id, live set
// ttl_ms, index member, index trim bound ("(ms", or "" when the tenant's
// upkeep is not due), index ttl_ms, orphan deadline_ms,
// job ttl_ms, n (0, or 5 with a task), then with a task: its message, its
// id, now_ns, queue name, sadd (1|0); then the values of the record's
// fields rec, state, tenant, input, opts, type, queue, ls (the job's
// lease-index shard: see claimLua; token 0, gen 1, and live 1 when
// admitted, are the script's own: fewer arguments, less Lua work per
// call).
// Returns {1} when created, or {0, n} when the tenant has n ≥ limit live jobs
// (nothing written).
var createScript = redis.NewScript(`
local limit = tonumber(ARGV[2])
local due = ARGV[7] ~= ''
if limit > 0 then
  local n = redis.call('ZCARD', KEYS[4])
  if n >= limit then
    redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', ARGV[1])
    n = redis.call('ZCARD', KEYS[4])
    if n >= limit then return {0, n} end
  end
  redis.call('ZADD', KEYS[4], ARGV[3], ARGV[4])
  if n == 0 or due then redis.call('PEXPIRE', KEYS[4], ARGV[5]) end
end
redis.call('ZADD', KEYS[2], 0, ARGV[6])
if due then redis.call('ZREMRANGEBYLEX', KEYS[2], '-', ARGV[7]) end
redis.call('PEXPIRE', KEYS[2], ARGV[8])
local t = tonumber(ARGV[11])
if t == 0 then
  redis.call('ZADD', KEYS[3], ARGV[9], ARGV[4])
  redis.call('PEXPIRE', KEYS[3], ARGV[5])
end
local v = 12 + t
if limit > 0 then
  redis.call('HSET', KEYS[1], 'rec', ARGV[v], 'state', ARGV[v+1], 'tenant', ARGV[v+2], 'token', '0', 'gen', '1',
    'input', ARGV[v+3], 'opts', ARGV[v+4], 'type', ARGV[v+5], 'queue', ARGV[v+6], 'ls', ARGV[v+7], 'live', '1')
else
  redis.call('HSET', KEYS[1], 'rec', ARGV[v], 'state', ARGV[v+1], 'tenant', ARGV[v+2], 'token', '0', 'gen', '1',
    'input', ARGV[v+3], 'opts', ARGV[v+4], 'type', ARGV[v+5], 'queue', ARGV[v+6], 'ls', ARGV[v+7])
end
redis.call('PEXPIRE', KEYS[1], ARGV[10])
if t > 0 then
  redis.call('HSET', KEYS[5], 'msg', ARGV[12], 'state', 'pending', 'pending_since', ARGV[14])
  redis.call('LPUSH', KEYS[6], ARGV[13])
  if ARGV[16] == '1' then redis.call('SADD', KEYS[7], ARGV[15]) end
end
return {1}
`)

// Create admits a new queued job among its tenant's live jobs
// (TenantMaxLive, see Admit: tasks.ERATELIMITED, and nothing written, when
// the tenant is at its limit), writes its record with its normalised input
// and options, and returns the record as written. With the record, the job
// enters the tenant's listing index and the lease index, with a deadline
// OrphanAfter away, as if a lease had been taken: the claim of its task
// replaces that deadline, and should the task never be enqueued (an outage
// between Create and Enqueue), the reconciler finds the job lapsed, queued
// and unowned, and enqueues it (Handoff answers HandoffEnqueue). A submit
// is thus never left half-done for good.
//
// On one node all of it is one script, one round trip, atomic. On a
// Cluster the keys are in different slots: admission, then the listing
// index, then the lease index, then the record (MULTI: HSET + PEXPIRE), so
// that no job exists that the listing cannot find (an index entry whose
// job was never written is dropped by the next listing).
//
// The job's generation is 1, token 0. The event stream starts with the
// first worker write: a watcher of a queued job is sent the record itself
// (see LatestEvent). A failed Create leaves no admission behind: the
// script either ran whole or not at all (when its reply was lost, the job
// exists and is live, and the reconciler enqueues it), and on a Cluster a
// failed write undoes the admission.
func (s *Store) Create(ctx context.Context, j *api.Job, tenant string, input json.RawMessage, opts api.Options) ([]byte, error) {
	rec, _, err := s.create(ctx, j, tenant, input, opts, false)
	return rec, err
}

// CreateQueued is Create, and on one node also the enqueue of the job's
// first task (generation 1, with opts' retries, timeout and retention: what
// Enqueue would write), in the same script: one round trip, and the job is
// recorded and enqueued, or neither. Such a job has no lease-index entry
// (no orphan check) until its claim: its task cannot be missing. It reports whether it enqueued the
// task; when it did not (on a Cluster, where asynq's keys are in another
// slot than the job's, or with SplitEnqueue), the caller enqueues it
// (Enqueue), as after Create.
func (s *Store) CreateQueued(ctx context.Context, j *api.Job, tenant string, input json.RawMessage, opts api.Options) (rec []byte, enqueued bool, err error) {
	return s.create(ctx, j, tenant, input, opts, !s.SplitEnqueue)
}

func (s *Store) create(ctx context.Context, j *api.Job, tenant string, input json.RawMessage, opts api.Options, enqueue bool) ([]byte, bool, error) {
	ttl := s.liveTTL()
	j.ExpiresAt = j.UpdatedAt.Add(ttl)
	rec, err := api.Marshal(j)
	if err != nil {
		return nil, false, &tasks.Error{Code: tasks.EINTERNAL, Message: "internal error", Err: err}
	}
	ob, _ := json.Marshal(opts)
	// The record's fields, in createScript's order.
	vals := []any{rec, string(j.State), tenant, []byte(input), ob, j.Type, j.Queue, leaseShard(j.ID)}
	if _, cluster := s.rdb.(*redis.ClusterClient); cluster {
		enqueue = false
		fields := []any{"rec", vals[0], "state", vals[1], "tenant", vals[2], "token", 0, "gen", 1,
			"input", vals[3], "opts", vals[4], "type", vals[5], "queue", vals[6]}
		if s.TenantMaxLive > 0 {
			fields = append(fields, "live", "1") // counted by the admission; Save uncounts it
		}
		err = s.createSlots(ctx, j, tenant, ttl, fields)
	} else {
		err = s.createOne(ctx, j, tenant, ttl, vals, enqueue, opts)
	}
	if err != nil {
		return nil, false, err
	}
	return rec, enqueue, nil
}

// createOne is Create's createScript.
func (s *Store) createOne(ctx context.Context, j *api.Job, tenant string, ttl time.Duration, vals []any, enqueue bool, opts api.Options) error {
	now := s.now()
	after := s.OrphanAfter
	if after <= 0 {
		after = OrphanAfterDefault
	}
	keys := []string{JobKey(j.ID), TenantJobsKey(tenant), LeasesKey(j.ID), LiveKey(tenant)}
	trim := ""
	if s.upkeepDue(tenant, now) {
		trim = fmt.Sprintf("(%0*d", msDigits, now.Add(-IndexHorizon).UnixMilli())
	}
	args := append(make([]any, 0, 16+len(vals)),
		now.UnixMilli(), max(s.TenantMaxLive, 0), now.Add(ttl).UnixMilli(), j.ID, (ttl + upkeepEvery).Milliseconds(),
		indexMember(j.CreatedAt, j.ID), trim,
		IndexHorizon.Milliseconds(), now.Add(after).UnixMilli(), ttl.Milliseconds())
	var q string
	var sadd bool
	if enqueue {
		q = TaskQueue(j)
		id := TaskID(j.ID, 1)
		_, known := s.queues.Load(q)
		sadd = !known
		keys = append(keys, asynqTaskKey(q, id), asynqPendingKey(q), asynqQueuesKey)
		args = append(args, 5, taskMessage(j, 1, opts.MaxRetries, opts.Timeout, opts.Retention), id, now.UnixNano(), q, boolArg(sadd))
	} else {
		args = append(args, 0)
	}
	args = append(args, vals...)
	// Through the combiner when one runs (the API's): the creates of
	// concurrent submits share a round trip.
	cmd, err := s.evalWith(ctx, createScript, keys, args, nil)
	if err != nil {
		return redisErr("store.Create "+j.ID, err)
	}
	res, _ := cmd.Int64Slice()
	if len(res) == 2 && res[0] == 0 {
		return s.overLimit(tenant, res[1])
	}
	if sadd {
		s.queues.Store(q, true)
	}
	return nil
}

// upkeepEvery is how often a Store's creates trim a tenant's listing
// index and refresh the TTL of its live set (createScript).
const upkeepEvery = time.Minute

// upkeepDue reports whether tenant's upkeep is due at now in this Store,
// and if so counts it as done. Concurrent callers may both see it due.
func (s *Store) upkeepDue(tenant string, now time.Time) bool {
	ms, every := now.UnixMilli(), upkeepEvery.Milliseconds()
	if v, ok := s.upkeep.Load(tenant); ok {
		// Not due before the next time, unless the clock went back.
		if next := v.(int64); ms < next && ms >= next-every {
			return false
		}
	}
	s.upkeep.Store(tenant, ms+every)
	return true
}

func boolArg(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// unadmitTimeout bounds createSlots' undoing of an admission.
const unadmitTimeout = 2 * time.Second

// createSlots is Create on a Cluster: one round trip per slot. When a
// write after the admission fails, the admission is undone, with a context
// of its own (ctx may be spent).
func (s *Store) createSlots(ctx context.Context, j *api.Job, tenant string, ttl time.Duration, fields []any) (err error) {
	if err := s.Admit(ctx, tenant, j.ID); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unadmitTimeout)
			defer cancel()
			_ = s.Unadmit(uctx, tenant, j.ID)
		}
	}()
	key := JobKey(j.ID)
	_, err = s.rdb.TxPipelined(ctx, s.indexJob(ctx, j, tenant))
	if err == nil {
		_, err = s.rdb.Pipelined(ctx, s.indexOrphan(ctx, j.ID))
	}
	if err == nil {
		_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.HSet(ctx, key, fields...)
			p.PExpire(ctx, key, ttl)
			return nil
		})
	}
	return redisErr("store.Create "+j.ID, err)
}
