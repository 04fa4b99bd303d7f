package store

import "github.com/redis/go-redis/v9"

// Lua scripts. Each touches only one job's keys (one hash slot). The hash
// fields: rec (the record JSON), state, tenant, token (fencing token, bumped
// by every claim and takeover), gen (the asynq task generation that may run
// the job), cancel ("1" once canceled), handoff (gen of a continuation being
// enqueued), input, opts, out:K (stage K's checkpointed output), ls (the
// number of its lease-index shard, see claimLua).

// saveScript writes the record if the caller's token is current.
// KEYS: job, events, lease, and for a write that also completes the job's
// asynq task (single node only; see TaskEnd): asynq's active list, lease
// set, completed set, task hash, processed-today and processed counters.
// ARGV: token, rec, state, ttl_ms, terminal(0|1|2: finished, keeping the
// stream), maxlen, id (PUBLISHed on staged:events; on a Cluster "{id}",
// SPUBLISHed on the job's staged:ev:{id}), nf, nd, then nf extra
// field/value arguments (pairs),
// then nd checkpoint names that a succeeded write drops (nd = -1: unknown,
// the script looks for them), then with the asynq keys: task id, stats
// expiry (Unix s), completed-set score, the bytes that set the task
// message's completed_at, the task's result, and when the caller has the
// task's message (from its dequeue) the completed message (the message
// and those bytes: the script need not read it, as asynq's own
// MarkAsComplete is given it); with the task hash alone (KEYS[4]): the
// task's result.
// The event stream is trimmed exactly to maxlen entries (the caller picks
// it from the record's size). A finished job's stream is deleted: its last
// event is the record itself, and the hash keeps that event's id (field
// eid; see Events). A job that never had a stream gets the id a new
// stream's first entry would get (from TIME, after the job's last event
// id), without creating one; when its first owner (token 1) writes it and
// field ns is still there, the job never had a stream, without looking. A succeeded job's checkpoints (out:K) are
// dropped.
// Returns {event id, cancel flag, 1 when the job was counted among its
// tenant's live jobs (see LiveKey) and is no longer to be (a finished job
// admitted by its create: field live), its tenant, 1 when the asynq task
// was completed here}, or {-1} when fenced.
var saveScript = redis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'token', 'cancel', 'handoff', 'live', 'tenant', 'eid', 'ns')
if h[1] ~= ARGV[1] then return {-1} end
local state, term, nf, nd = ARGV[3], ARGV[5], tonumber(ARGV[8]), tonumber(ARGV[9])
-- ns: the job has had no stream (see claimScript); true only with token 1.
local ns = h[1] == '1' and h[7] == '1'
local eid
if term == '1' then
  if not ns and redis.call('EXISTS', KEYS[2]) == 1 then
    eid = redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[6], '*', 'rec', ARGV[2])
    redis.call('DEL', KEYS[2], KEYS[3])
  else
    -- The time in ms as digits: the seconds, then the first 3 of the
    -- microseconds' 6 (string.format costs Redis more than the rest).
    local t = redis.call('TIME')
    eid = t[1] .. string.sub('00000' .. t[2], -6, -4) .. '-0'
    if h[6] then
      local a, b = string.match(h[6], '^(%d+)-(%d+)$')
      a, b = tonumber(a), tonumber(b)
      if a and a >= tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) then
        eid = string.format('%.0f-%.0f', a, b + 1)
      end
    end
    redis.call('DEL', KEYS[3])
  end
end
if nf > 0 then
  local f = {'rec', ARGV[2], 'state', state}
  if eid then f[5], f[6] = 'eid', eid end
  for i = 10, 9 + nf do f[#f + 1] = ARGV[i] end
  redis.call('HSET', KEYS[1], unpack(f))
elseif eid then redis.call('HSET', KEYS[1], 'rec', ARGV[2], 'state', state, 'eid', eid)
else redis.call('HSET', KEYS[1], 'rec', ARGV[2], 'state', state) end
local del, live = {}, 0
if h[3] and state == 'running' then del[1] = 'handoff' end
if term ~= '0' then
  if term == '2' then redis.call('DEL', KEYS[3]) end
  -- A finished job is claimed no more (a rerun's claim computes its
  -- shard): ls goes, with live (the job leaves its tenant's live jobs)
  -- and ns, so that the finished hash holds only what is read.
  del[#del + 1] = 'ls'
  if h[4] then
    del[#del + 1] = 'live'
    live = 1
  end
  if state == 'succeeded' then
    if nd < 0 then
      for _, k in ipairs(redis.call('HKEYS', KEYS[1])) do
        if string.sub(k, 1, 4) == 'out:' then del[#del + 1] = k end
      end
    else
      for i = 10 + nf, 9 + nf + nd do del[#del + 1] = ARGV[i] end
    end
  end
end
-- The stream is made below: ns goes. A finished job's goes with the
-- HDEL above (a lone ns would be harmless: only token 1 reads it).
if h[7] and (term ~= '1' or #del > 0) then del[#del + 1] = 'ns' end
if #del > 0 then redis.call('HDEL', KEYS[1], unpack(del)) end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if term ~= '1' then
  eid = redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[6], '*', 'rec', ARGV[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
if string.byte(ARGV[7]) == 123 then redis.call('SPUBLISH', 'staged:ev:' .. ARGV[7], ARGV[7])
else redis.call('PUBLISH', 'staged:events', ARGV[7]) end
local done = 0
local a = 10 + nf + math.max(nd, 0)
if #KEYS > 4 then
  -- asynq's MarkAsComplete (v0.26), for a task still active.
  local tid, msg = ARGV[a], ARGV[a + 5]
  if not msg then
    msg = redis.call('HGET', KEYS[7], 'msg')
    if msg then msg = msg .. ARGV[a + 3] end
  end
  -- LREM from the tail: RPOPLPUSH put the task at the head when it was
  -- dequeued, so it has moved toward the tail since, with the tasks
  -- dequeued after it in front (asynq's LREM 0 reads the whole list; a
  -- task is in it once, so -1 removes the same).
  if msg and redis.call('LREM', KEYS[4], -1, tid) > 0 then
    redis.call('ZREM', KEYS[5], tid)
    redis.call('ZADD', KEYS[6], ARGV[a + 2], tid)
    redis.call('HSET', KEYS[7], 'msg', msg, 'state', 'completed', 'result', ARGV[a + 4])
    if redis.call('INCR', KEYS[8]) == 1 then redis.call('EXPIREAT', KEYS[8], ARGV[a + 1]) end
    local n = redis.pcall('INCR', KEYS[9])
    if type(n) == 'table' then redis.call('SET', KEYS[9], 1) end
    done = 1
  else
    -- Not active: only an existing task gets its result.
    local st = redis.call('HGET', KEYS[7], 'state')
    if st then
      redis.call('HSET', KEYS[7], 'result', ARGV[a + 4])
      -- A write sent again after a lost reply finds its own completion.
      if st == 'completed' then done = 1 end
    end
  end
elseif #KEYS == 4 and redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('HSET', KEYS[4], 'result', ARGV[a])
end
return {eid, h[2] or '', live, h[5] or '', done}
`)

// claimScript lets generation gen of the job's task start running it.
// KEYS: job, lease, and on one node the job's lease-index shard.
// ARGV: gen, lease_ms, and with the shard: the lease deadline (Unix ms),
// the shard's ttl_ms, the job's id.
// Returns {'missing'|'done'|'superseded'|'busy'} or {'ok', token, field, value, ...}
// (the hash as it was before the claim, but for state and token).
// The claim itself is the Lua function claimLua, which the dequeue that
// claims (takeScript, take.go) calls too.
var claimScript = redis.NewScript(claimLua + `
return (claim(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]))
`)

// claimLua defines claim(job, lease, shard, gen, lease_ms, deadline,
// shard_ttl_ms, id): claimScript's work on the keys and arguments given
// (shard nil: no index entry; shard true: the job's shard, see below),
// returning claimScript's answer and the job's state before the claim.
// One read of the hash (HGETALL) decides and answers; the new token is
// the old one + 1, written with the state in one HSET, and SET NX takes
// the lease only while nobody holds it. A successful claim enters the
// lease index in the same script: no moment when the job is running and
// not indexed.
// The claiming dequeue (takeLua) knows a job only by its id: the number
// of its lease-index shard comes from the hash's field ls, which the
// job's create wrote (leaseShard, what LeasesKey uses), so that the
// dequeue need not hash the id in Lua (shardLua: a loop over its 36
// bytes, about as much Redis CPU as the rest of a claim's Lua). A job
// created without it (by a version before ls) gets it from shardLua's
// leaseShard, which takeLua defines before claimLua (shard true comes
// only from takeLua).
const claimLua = `
local function claim(job, lease, shard, gen_arg, lease_ms, deadline, shard_ttl, id)
  local all = redis.call('HGETALL', job)
  local state, gen, tok, ls
  for i = 1, #all, 2 do
    local k = all[i]
    if k == 'state' then state = all[i + 1]
    elseif k == 'gen' then gen = all[i + 1]
    elseif k == 'token' then tok = all[i + 1]
    elseif k == 'ls' then ls = all[i + 1] end
  end
  if not state then return {'missing'} end
  if gen ~= gen_arg then return {'superseded'} end
  if state == 'succeeded' or state == 'failed' or state == 'canceled' then return {'done'} end
  -- A job's first claim without string.format (its Redis CPU shows).
  local t = '1'
  if tok and tok ~= '0' then t = string.format('%.0f', (tonumber(tok) or 0) + 1) end
  if not redis.call('SET', lease, t, 'NX', 'PX', lease_ms) then return {'busy'} end
  -- The owner is running it from now on: if it dies before its first write,
  -- the reconciler sees a running job with a lapsed lease and takes it over.
  -- The first claim (token 1) marks the job as one without an event stream
  -- (ns): the save script knows it so without looking, until a write of
  -- this owner makes the stream (and drops ns). Other tokens never read it.
  if t == '1' then redis.call('HSET', job, 'token', t, 'state', 'running', 'ns', '1')
  else redis.call('HSET', job, 'token', t, 'state', 'running') end
  if shard then
    if shard == true then shard = '` + keyPrefix + `leases:{l' .. (ls or leaseShard(id)) .. '}' end
    redis.call('ZADD', shard, deadline, id)
    redis.call('PEXPIRE', shard, shard_ttl)
  end
  local r = {'ok', t}
  for i = 1, #all, 2 do
    local k = all[i]
    if k ~= 'state' and k ~= 'token' and k ~= 'ls' then
      r[#r + 1] = k
      r[#r + 1] = all[i + 1]
    end
  end
  return r, state
end
`

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
// KEYS: job. ARGV: tenant (” = any), id (PUBLISHed on staged:cancel; on a
// Cluster "{id}", SPUBLISHed on the job's staged:cancel:{id}).
// Returns {'missing'}, {'finished', rec}, or {'running'|'idle', token, rec, opts, gen}.
var cancelScript = redis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'state', 'token', 'rec', 'tenant', 'opts', 'gen')
if not h[3] then return {'missing'} end
if ARGV[1] ~= '' and h[4] ~= ARGV[1] then return {'missing'} end
if h[1] == 'succeeded' or h[1] == 'failed' or h[1] == 'canceled' then return {'finished', h[3]} end
redis.call('HSET', KEYS[1], 'cancel', '1')
if h[1] == 'running' then
  if string.byte(ARGV[2]) == 123 then redis.call('SPUBLISH', 'staged:cancel:' .. ARGV[2], ARGV[2])
  else redis.call('PUBLISH', 'staged:cancel', ARGV[2]) end
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
