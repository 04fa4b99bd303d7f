package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The claiming dequeue (one node only). A worker's prefetch (the worker's
// prefetch.go) answers asynq's dequeue with a script that takes up to k
// tasks of a queue, as asynq's dequeue takes one; on one node takeScript
// also claims the job of each task it takes, with claimScript's claim
// (fencing token, lease, lease-index entry, state), so the task's handler
// starts with its claim made: one round trip less per job. On a Cluster a
// job's keys are in another slot than its queue's, and the handler claims
// as before (Store.Claim).
//
// A task's job and generation come from its asynq task id (TaskID: the job
// id, with "-gN" for generation N > 1), as the handler's payload would give
// them; the handler checks that they agree (Taken.Claim).

// TakesClaims reports whether the dequeue may claim the jobs of the tasks
// it takes (TakeArgs): on one node, not on a Cluster.
func (s *Store) TakesClaims() bool { return !s.cluster() }

// dequeueLua is asynq v0.26's dequeueCmd for up to ARGV[3] tasks: the
// worker's prefetch script (PrefetchLua) as it is, and the claiming
// dequeue's (takeLua) with the claim of each task's job after --claim.
// KEYS: asynq:{q}:pending, :paused, :active, :lease.
// ARGV: asynq's lease deadline (Unix s), task key prefix, count, and for
// takeLua the claim's lease_ms, lease deadline (Unix ms), lease-index
// ttl_ms.
// Returns nil (none) or {task id, msg, task id, msg, ...}; takeLua
// {task id, msg, claim, ...}, where claim is claimScript's answer, with
// {'state', the state before} appended to an 'ok'.
const dequeueLua = `
if redis.call("EXISTS", KEYS[2]) == 1 then return nil end
local r = {}
for i = 1, tonumber(ARGV[3]) do
  local tid = redis.call("RPOPLPUSH", KEYS[1], KEYS[3])
  if not tid then break end
  local key = ARGV[2] .. tid
  redis.call("HSET", key, "state", "active")
  redis.call("HDEL", key, "pending_since")
  redis.call("ZADD", KEYS[4], ARGV[1], tid)
  r[#r + 1] = tid
  r[#r + 1] = redis.call("HGET", key, "msg")
  --claim
end
if #r == 0 then return nil end
return r`

// PrefetchLua is the worker's prefetch script on a Cluster: dequeueLua,
// no claims.
var PrefetchLua = strings.Replace(dequeueLua, "--claim", "-- (no claim)", 1)

// takeLua is dequeueLua with the claims, after shardLua and claimLua.
var takeLua = shardLua + claimLua + strings.Replace(dequeueLua, "--claim", `
  local id, gen = tid, "1"
  if string.find(tid, "-g", 1, true) then
    id, gen = string.match(tid, "^(.+)%-g(%d+)$")
    if not id then id, gen = tid, "1" end
  end
  local job = "`+keyPrefix+`job:{" .. id .. "}"
  local c, was = claim(job, job .. ":lease", true, gen, ARGV[4], ARGV[5], ARGV[6], id)
  if was then
    c[#c + 1] = "state"
    c[#c + 1] = was
  end
  r[#r + 1] = c`, 1)

// shardLua defines leaseShard(id), the number of id's lease-index shard
// (leaseShard: FNV-1a, 32 bits, mod LeaseShards), for takeLua, without
// Redis's bit library (miniredis, the embedded server of staged dev, has
// none). With 16 shards only the low 4 bits of the hash count, and they
// depend only on the low 4 bits of each step: (h xor b) mod 16 is
// (h mod 16) xor (b mod 16), and (x * 16777619) mod 16 is
// ((x mod 16) * 3) mod 16. So h4 starts at 2166136261 mod 16 = 5 and each
// byte b takes it to shardNext[h4 * 16 + b mod 16 + 1]. The bytes come in
// one call when the id is short. The table is built by the first call of
// a script run that needs it (only for jobs created without field ls, see
// claimLua).
var shardLua = `
local shardNext
local function leaseShard(id)
  if not shardNext then shardNext = {` + shardNext() + `} end
  local h = 5
  if #id <= 64 then
    for _, b in ipairs({string.byte(id, 1, -1)}) do h = shardNext[h * 16 + b % 16 + 1] end
  else
    for i = 1, #id do h = shardNext[h * 16 + string.byte(id, i) % 16 + 1] end
  end
  return h
end
`

// shardNext is the Lua table of shardLua's steps: ((h xor n) * 3) mod 16
// for h, n < 16, at h * 16 + n + 1.
func shardNext() string {
	var b strings.Builder
	for h := range 16 {
		for n := range 16 {
			if h+n > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Itoa(((h ^ n) * 3) % 16))
		}
	}
	return b.String()
}

// The shard's arithmetic above holds for 16 shards.
var _ = [1]struct{}{}[LeaseShards-16]

var takeScript = redis.NewScript(takeLua)

// TakeArgs returns the EVALSHA and the EVAL command arguments of the
// claiming dequeue of up to k tasks, in place of asynq's dequeue of one
// with arguments dequeue (EVALSHA sha 4 pending paused active lease
// deadline prefix): the claims take a lease of the given length.
func (s *Store) TakeArgs(dequeue []any, k int, lease time.Duration) (evalsha, eval []any) {
	tail := make([]any, 0, 12)
	tail = append(tail, 4)
	tail = append(tail, dequeue[3:9]...)
	tail = append(tail, k, lease.Milliseconds(), s.now().Add(lease).UnixMilli(), s.liveTTL().Milliseconds())
	evalsha = append([]any{"evalsha", takeScript.Hash()}, tail...)
	eval = append([]any{"eval", takeLua}, tail...)
	return evalsha, eval
}

// Taken is a task the claiming dequeue took, with the claim of its job.
type Taken struct {
	TaskID, Msg string
	claim       []string
	canceled    bool // a cancel was published since the claim (Canceled)
}

// ParseTaken decodes the claiming dequeue's answer (nil for none).
func ParseTaken(v any) ([]Taken, error) {
	a, ok := v.([]any)
	if !ok || len(a)%3 != 0 {
		return nil, fmt.Errorf("store: a claiming dequeue answered %T", v)
	}
	ts := make([]Taken, 0, len(a)/3)
	for i := 0; i < len(a); i += 3 {
		tid, _ := a[i].(string)
		msg, _ := a[i+1].(string)
		c, _ := a[i+2].([]any)
		t := Taken{TaskID: tid, Msg: msg, claim: make([]string, len(c))}
		for j, x := range c {
			t.claim[j], _ = x.(string)
		}
		ts = append(ts, t)
	}
	return ts, nil
}

// JobOfTask returns the job and the generation of asynq task tid (the
// inverse of TaskID).
func JobOfTask(tid string) (id string, gen int64) {
	// As takeLua's match: "-g" and digits at the end.
	if i := strings.LastIndex(tid, "-g"); i > 0 && i+2 < len(tid) && strings.Trim(tid[i+2:], "0123456789") == "" {
		if g, err := strconv.ParseInt(tid[i+2:], 10, 64); err == nil {
			return tid[:i], g
		}
	}
	return tid, 1
}

// Owns reports whether the claim made the taker the job's owner, and with
// which token.
func (t *Taken) Owns() (token string, ok bool) {
	if len(t.claim) < 2 || t.claim[0] != string(ClaimOK) {
		return "", false
	}
	return t.claim[1], true
}

// Cancel records a cancel of the job published after the claim (the
// canceler had no run of it to stop): the claim handed to the handler
// carries it, as a claim made after the cancel would.
func (t *Taken) Cancel() { t.canceled = true }

// Canceled reports whether Cancel was called.
func (t *Taken) Canceled() bool { return t.canceled }

// Claim returns the claim for the handler of the task of job id,
// generation gen, and ok=false when the task was not that job's (then
// the handler claims by itself, after Unclaim).
func (t *Taken) Claim(id string, gen int64) (c *Claim, ok bool, err error) {
	if tid := TaskID(id, gen); tid != t.TaskID {
		return nil, false, nil
	}
	c, err = decodeClaim(id, t.claim)
	if err == nil {
		c.TaskMsg = t.Msg
		if t.canceled {
			c.CancelRequested = true
		}
	}
	return c, true, err
}

// unclaimScript gives back claims no handler took: for each job, the lease
// goes, and the lease-index entry, if the lease is still the claim's; the
// state before the claim comes back if the token is still the claim's.
// KEYS: job, lease, shard, per claim. ARGV: token, state, id, per claim.
// Returns how many leases were given back.
var unclaimScript = redis.NewScript(`
local n = 0
for i = 1, #KEYS, 3 do
  if redis.call('GET', KEYS[i + 1]) == ARGV[i] then
    redis.call('DEL', KEYS[i + 1])
    redis.call('ZREM', KEYS[i + 2], ARGV[i + 2])
    n = n + 1
  end
  if ARGV[i + 1] ~= '' and redis.call('HGET', KEYS[i], 'token') == ARGV[i] then
    redis.call('HSET', KEYS[i], 'state', ARGV[i + 1])
  end
end
return n`)

// Unclaim gives back the claims of tasks taken by the claiming dequeue
// that no handler took (they go back to their queue), so that the next
// dequeue of each, here or on another worker, claims its job at once.
// Claims the dequeue did not make are skipped. It returns how many leases
// were given back.
func (s *Store) Unclaim(ctx context.Context, ts []Taken) (int64, error) {
	var keys []string
	var args []any
	for i := range ts {
		tok, ok := ts[i].Owns()
		if !ok {
			continue
		}
		id, _ := JobOfTask(ts[i].TaskID)
		state := ""
		if c := ts[i].claim; len(c) >= 4 && c[len(c)-2] == "state" {
			state = c[len(c)-1]
		}
		keys = append(keys, JobKey(id), LeaseKey(id), LeasesKey(id))
		args = append(args, tok, state, id)
	}
	if len(keys) == 0 {
		return 0, nil
	}
	n, err := unclaimScript.Run(ctx, s.rdb, keys, args...).Int64()
	return n, redisErr("store.Unclaim", err)
}
