package store

import "github.com/redis/go-redis/v9"

// Lua scripts. Each touches only one job's keys (one hash slot). The hash
// fields: rec (the record JSON), state, tenant, token (fencing token, bumped
// by every claim and takeover), gen (the asynq task generation that may run
// the job), cancel ("1" once canceled), handoff (gen of a continuation being
// enqueued), input, opts, out:K (stage K's checkpointed output).

// saveScript writes the record if the caller's token is current.
// KEYS: job, events, lease. ARGV: token, rec, state, ttl_ms, terminal(0|1|2:
// finished, keeping the stream), maxlen, id, extra field/value pairs...
// The event stream is trimmed exactly to maxlen entries (the caller picks
// it from the record's size). A finished job's stream is deleted: its last
// event is the record itself, and the hash keeps that event's id (field
// eid; see Events). A succeeded job's checkpoints (out:K) are dropped. Returns {event id, cancel flag}, plus the tenant when a
// finished job was counted among its tenant's live jobs (see LiveKey), or
// {-1} when fenced.
var saveScript = redis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'token', 'cancel', 'handoff', 'live', 'tenant')
if h[1] ~= ARGV[1] then return {-1} end
if #ARGV > 7 then
  redis.call('HSET', KEYS[1], 'rec', ARGV[2], 'state', ARGV[3], unpack(ARGV, 8))
else
  redis.call('HSET', KEYS[1], 'rec', ARGV[2], 'state', ARGV[3])
end
if h[3] and ARGV[3] == 'running' then redis.call('HDEL', KEYS[1], 'handoff') end
local live = false
if ARGV[5] ~= '0' then
  redis.call('DEL', KEYS[3])
  if ARGV[3] == 'succeeded' then
    for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
      if string.sub(f, 1, 4) == 'out:' then redis.call('HDEL', KEYS[1], f) end
    end
  end
  if h[4] then
    redis.call('HDEL', KEYS[1], 'live')
    live = true
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
local eid = redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[6], '*', 'rec', ARGV[2])
if ARGV[5] == '1' then
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'eid', eid)
else
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
redis.call('PUBLISH', 'staged:events', ARGV[7])
if live then return {eid, h[2] or '', h[5] or ''} end
return {eid, h[2] or ''}
`)

// claimScript lets generation gen of the job's task start running it.
// KEYS: job, lease. ARGV: gen, lease_ms.
// Returns {'missing'|'done'|'superseded'|'busy'} or {'ok', token, field, value, ...}.
var claimScript = redis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'state', 'gen')
if not h[1] then return {'missing'} end
if h[2] ~= ARGV[1] then return {'superseded'} end
if h[1] == 'succeeded' or h[1] == 'failed' or h[1] == 'canceled' then return {'done'} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {'busy'} end
local t = redis.call('HINCRBY', KEYS[1], 'token', 1)
redis.call('SET', KEYS[2], t, 'PX', ARGV[2])
-- The owner is running it from now on: if it dies before its first write,
-- the reconciler sees a running job with a lapsed lease and takes it over.
redis.call('HSET', KEYS[1], 'state', 'running')
local r = {'ok', tostring(t)}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all do r[#r + 1] = all[i] end
return r
`)

// renewScript extends the lease of the token holder; a lapsed lease is taken
// again while nobody has taken the job over.
// KEYS: lease, job. ARGV: token, lease_ms.
// Returns -1 fenced, 0 ok, 1 ok and cancel requested.
var renewScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur ~= ARGV[1] then
  if cur or redis.call('HGET', KEYS[2], 'token') ~= ARGV[1] then return -1 end
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if redis.call('HGET', KEYS[2], 'cancel') == '1' then return 1 end
return 0
`)

// handoffScript moves a job to a new task generation. With ARGV[1] = ”
// (takeover) it acts only if the lease has lapsed; with a token (voluntary
// hand-back) only if the token is current.
// KEYS: job, lease. ARGV: token or ”.
// Returns {'alive'|'missing'|'done'|'fenced'}, {'enqueue', gen} when a
// hand-off is already under way, or {'handoff', token, gen, rec, cancel}.
var handoffScript = redis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'state', 'token', 'gen', 'rec', 'cancel', 'handoff')
if not h[4] then return {'missing'} end
if h[1] == 'succeeded' or h[1] == 'failed' or h[1] == 'canceled' then return {'done'} end
if ARGV[1] == '' then
  if redis.call('EXISTS', KEYS[2]) == 1 then return {'alive'} end
  if h[1] ~= 'running' then return {'enqueue', h[3]} end
elseif h[2] ~= ARGV[1] then
  return {'fenced'}
end
local t = redis.call('HINCRBY', KEYS[1], 'token', 1)
local g = redis.call('HINCRBY', KEYS[1], 'gen', 1)
redis.call('HSET', KEYS[1], 'state', 'retrying', 'handoff', g)
redis.call('DEL', KEYS[2])
return {'handoff', tostring(t), tostring(g), h[4], h[5] or ''}
`)

// cancelScript marks a job canceled-requested.
// KEYS: job. ARGV: tenant (” = any), id.
// Returns {'missing'}, {'finished', rec}, or {'running'|'idle', token, rec, opts, gen}.
var cancelScript = redis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'state', 'token', 'rec', 'tenant', 'opts', 'gen')
if not h[3] then return {'missing'} end
if ARGV[1] ~= '' and h[4] ~= ARGV[1] then return {'missing'} end
if h[1] == 'succeeded' or h[1] == 'failed' or h[1] == 'canceled' then return {'finished', h[3]} end
redis.call('HSET', KEYS[1], 'cancel', '1')
if h[1] == 'running' then
  redis.call('PUBLISH', 'staged:cancel', ARGV[2])
  return {'running', h[2], h[3], h[5] or '{}', h[6]}
end
return {'idle', h[2], h[3], h[5] or '{}', h[6]}
`)

// releaseScript deletes the lease if the caller's token still holds it.
// KEYS: lease. ARGV: token. Returns 1 if released, 0 if not held.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)
