package store

import (
	"crypto/sha256"
	"encoding/hex"
	"hash/fnv"
	"strconv"
)

// The Redis key schema. Every key staged writes has a TTL. All of one job's
// keys share the hash tag {id}, so they live in one Redis Cluster slot and
// the Lua scripts that touch them are Cluster-safe.
const (
	keyPrefix = "staged:"
	// LeaseShards is the number of shards of the lease index (LeasesKey).
	LeaseShards = 16
	// EventsChannel carries "id" on every record write, for watchers.
	EventsChannel = keyPrefix + "events"
	// CancelChannel carries "id" when a running job is canceled.
	CancelChannel = keyPrefix + "cancel"
	// WakeChannel carries a queue's name after a job was enqueued on it, so
	// idle workers dequeue at once instead of at their next poll.
	WakeChannel = keyPrefix + "wake"
)

// JobKey is the hash holding the record and its bookkeeping fields.
func JobKey(id string) string { return keyPrefix + "job:{" + id + "}" }

// appendJobKey appends JobKey(id) to b.
func appendJobKey(b []byte, id string) []byte {
	b = append(b, keyPrefix+"job:{"...)
	b = append(b, id...)
	return append(b, '}')
}

// EventsKey is the job's event stream: one entry per record write.
func EventsKey(id string) string { return keyPrefix + "job:{" + id + "}:events" }

// LeaseKey holds the fencing token of the worker running the job, with a
// short TTL that the worker keeps renewing.
func LeaseKey(id string) string { return keyPrefix + "job:{" + id + "}:lease" }

// IdempotencyKey maps a tenant's Idempotency-Key to the job it created.
func IdempotencyKey(tenant, key string) string {
	sum := sha256.Sum256([]byte(key))
	return keyPrefix + "idem:" + tenant + ":" + hex.EncodeToString(sum[:16])
}

// TaskID is the asynq task id of generation gen of job id: the job id itself
// for the first, so asynqmon shows the job's id.
func TaskID(id string, gen int64) string {
	if gen <= 1 {
		return id
	}
	return id + "-g" + strconv.FormatInt(gen, 10)
}

// TenantJobsKey is the tenant's job index: a sorted set whose members are
// "<created Unix ms, 13 digits>:<id>", all with score 0, so that the
// lexicographic order is the creation order and ranges are ZRANGE BYLEX.
// The hash tag is the tenant: the index lives in its own slot, apart from
// the jobs' keys, and each tenant's index in a slot of its own (no key
// that every job touches).
func TenantJobsKey(tenant string) string { return keyPrefix + "tenant:{" + tenant + "}:jobs" }

// Job hash fields the worker keeps besides the record (see scripts.go for
// the others).
const (
	// FieldRetriesLeft is how many retries the job's current task has
	// left, so a continuation generation enqueued after a takeover keeps the
	// budget instead of starting afresh.
	FieldRetriesLeft = "retries_left"
	// FieldTakeovers counts the takeovers after lapsed leases.
	FieldTakeovers = "takeovers"
)

// LeasesKey is the shard of the lease index holding job id: a sorted set of
// running (and just submitted) job ids scored by lease deadline (Unix ms);
// the reconciler reads the lapsed ones of every shard. Each shard has its
// own hash tag, so that on a Cluster the index spreads over the masters and
// no single key is touched by every claim and renewal.
func LeasesKey(id string) string { return LeasesShardKey(leaseShard(id)) }

// LeasesShardKey is shard n (0 ≤ n < LeaseShards) of the lease index.
func LeasesShardKey(n int) string {
	if n >= 0 && n < LeaseShards {
		return leasesShardKeys[n]
	}
	return leasesShardKey(n)
}

func leasesShardKey(n int) string { return keyPrefix + "leases:{l" + strconv.Itoa(n) + "}" }

// leasesShardKeys are the LeaseShards keys, made once: every submit and
// every claim names one.
var leasesShardKeys = func() (ks [LeaseShards]string) {
	for i := range ks {
		ks[i] = leasesShardKey(i)
	}
	return ks
}()

// LeasesKeys are all the shards of the lease index.
func LeasesKeys() []string {
	ks := make([]string, LeaseShards)
	for i := range ks {
		ks[i] = LeasesShardKey(i)
	}
	return ks
}

func leaseShard(id string) int {
	h := fnv.New32a()
	h.Write([]byte(id))
	return int(h.Sum32() % LeaseShards)
}
