package store

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
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
	ob := optionsJSON(opts)
	if _, cluster := s.rdb.(*redis.ClusterClient); cluster {
		enqueue = false
		fields := []any{"rec", rec, "state", string(j.State), "tenant", tenant, "token", 0, "gen", 1,
			"input", []byte(input), "opts", ob, "type", j.Type, "queue", j.Queue}
		if s.TenantMaxLive > 0 {
			fields = append(fields, "live", "1") // counted by the admission; Save uncounts it
		}
		err = s.createSlots(ctx, j, tenant, ttl, fields)
	} else {
		err = s.createOne(ctx, j, tenant, ttl, rec, input, ob, enqueue, opts)
	}
	if err != nil {
		return nil, false, err
	}
	return rec, enqueue, nil
}

// createOne is Create's createScript, with the record rec and the
// encoded input and options. Its command is built with evalArgs, and its
// keys mostly come from caches (tenantKeysOf, queueKeysOf): a submit is
// the API's hot path.
func (s *Store) createOne(ctx context.Context, j *api.Job, tenant string, ttl time.Duration, rec, input, ob []byte, enqueue bool, opts api.Options) error {
	now := s.now()
	after := s.OrphanAfter
	if after <= 0 {
		after = OrphanAfterDefault
	}
	var q, id string
	var sadd bool
	nkeys := 4
	if enqueue {
		q = TaskQueue(j)
		id = TaskID(j.ID, 1)
		_, known := s.queues.Load(q)
		sadd = !known
		nkeys = 7
	}
	// The job's own keys and its index member in one string (one allocation).
	b := make([]byte, 0, 192)
	b = appendJobKey(b, j.ID)
	nJob := len(b)
	b = appendIndexMember(b, j.CreatedAt, j.ID)
	nMember := len(b)
	if enqueue {
		b = appendAsynqTaskKey(b, q, id)
	}
	own := string(b)
	tk := s.tenantKeysOf(tenant)

	a := newEvalArgs(createScript, nkeys)
	a.key(own[:nJob])
	a.key(tk.jobs)
	shard := leaseShard(j.ID)
	a.key(LeasesShardKey(shard))
	a.key(tk.live)
	if enqueue {
		a.key(own[nMember:])
		a.key(s.pendingKeyOf(q))
		a.key(asynqQueuesKey)
	}
	a.int(now.UnixMilli())
	a.int(int64(max(s.TenantMaxLive, 0)))
	a.int(now.Add(ttl).UnixMilli())
	a.str(j.ID)
	a.int((ttl + upkeepEvery).Milliseconds())
	a.str(own[nJob:nMember])
	if s.upkeepDue(tenant, now) {
		a.str(fmt.Sprintf("(%0*d", msDigits, now.Add(-IndexHorizon).UnixMilli()))
	} else {
		a.str("")
	}
	a.int(IndexHorizon.Milliseconds())
	a.int(now.Add(after).UnixMilli())
	a.int(ttl.Milliseconds())
	if enqueue {
		a.int(5)
		a.raw(taskMessage(j, 1, opts.MaxRetries, opts.Timeout, opts.Retention))
		a.str(id)
		a.int(now.UnixNano())
		a.str(q)
		a.str(boolArg(sadd))
	} else {
		a.int(0)
	}
	// The record's fields, in createScript's order.
	a.raw(rec)
	a.str(string(j.State))
	a.str(tenant)
	a.raw(input)
	a.raw(ob)
	a.str(j.Type)
	a.str(j.Queue)
	a.int(int64(shard))
	// Through the combiner when one runs (the API's): the creates of
	// concurrent submits share a round trip.
	cmd, err := s.evalArgv(ctx, createScript, a)
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

// tenantKeys are a tenant's keys that createScript writes.
type tenantKeys struct{ jobs, live string }

// tenantKeysOf returns tenant's keys, made once per tenant in this Store
// (the tenants are the configured API keys' names, or "").
func (s *Store) tenantKeysOf(tenant string) *tenantKeys {
	if v, ok := s.keyCache.Load(tenant); ok {
		return v.(*tenantKeys)
	}
	tk := &tenantKeys{jobs: TenantJobsKey(tenant), live: LiveKey(tenant)}
	s.keyCache.Store(tenant, tk)
	return tk
}

// pendingKeyOf returns asynq's pending list of queue q, made once per
// queue in this Store.
func (s *Store) pendingKeyOf(q string) string {
	if v, ok := s.pendingKeys.Load(q); ok {
		return v.(string)
	}
	k := asynqPendingKey(q)
	s.pendingKeys.Store(q, k)
	return k
}

// optionsJSON is json.Marshal(o), remembered for the last options seen:
// the submits of one pipeline mostly share theirs.
func optionsJSON(o api.Options) []byte {
	if c := lastOptions.Load(); c != nil && c.o == o {
		return c.json
	}
	b, _ := json.Marshal(o)
	lastOptions.Store(&encodedOptions{o: o, json: b})
	return b
}

type encodedOptions struct {
	o    api.Options
	json []byte // shared: never modified
}

var lastOptions atomic.Pointer[encodedOptions]

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
