package store

import (
	"context"
	"errors"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/staged-dev/staged/internal/catalog"
)

// Redis replication is asynchronous: after a failover (or a restart that
// reloads an older snapshot) a running job's record may say running while
// the claim's or a renewal's entry in the lease index is gone. The
// reconciler only reads the index, so such a job whose worker also died
// would stay running for ever. Likewise a queued job whose claim and
// final write were lost while asynq's completion of its task was not (the
// worker's store client still read the old master, asynq's already wrote
// to the new one) has neither an entry nor a task that will run it. The
// functions here find those jobs: the
// workers watch each master's identity (NodeIdentities) and, once per new
// identity (ClaimReindex), one of them scans the job records
// (ReindexRunning).

// reindexMarkerPrefix names the marker that a master identity's job
// records have been (or are being) scanned.
const reindexMarkerPrefix = keyPrefix + "reindexed:"

// NodeIdentities returns one string per master that changes whenever the
// master is another server or the same one restarted: its run_id (new at
// every start) and its master_replid (new when a replica is promoted). One
// master on a plain or Sentinel client; every master of a Cluster; none
// for a server without INFO's sections (miniredis).
func (s *Store) NodeIdentities(ctx context.Context) ([]string, error) {
	var (
		mu  sync.Mutex
		ids []string
	)
	one := func(ctx context.Context, c *redis.Client) error {
		var srv, repl *redis.StringCmd
		_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			srv, repl = p.Info(ctx, "server"), p.Info(ctx, "replication")
			return nil
		})
		var reply redis.Error
		if errors.As(err, &reply) {
			return nil // no INFO sections (the embedded miniredis of staged dev): nothing to watch
		}
		if err != nil {
			return err
		}
		id := infoField(srv.Val(), "run_id") + ":" + infoField(repl.Val(), "master_replid")
		mu.Lock()
		ids = append(ids, id)
		mu.Unlock()
		return nil
	}
	if err := forEachMaster(ctx, s.rdb, one); err != nil {
		return nil, redisErr("store.NodeIdentities", err)
	}
	sort.Strings(ids)
	return ids, nil
}

// ClaimReindex reports whether the caller is the first to see master
// identity id, and so must scan the job records (ReindexRunning). The
// marker lasts for ttl: a scan that did not finish (its worker died) is
// started again by another worker once it expires; after a finished scan
// the caller calls it again with the long TTL (renew=true) that also
// makes a scan come back every ttl as a safety net.
func (s *Store) ClaimReindex(ctx context.Context, id string, ttl time.Duration, renew bool) (bool, error) {
	if renew {
		err := s.rdb.Set(ctx, reindexMarkerPrefix+id, "done", ttl).Err()
		return err == nil, redisErr("store.ClaimReindex", err)
	}
	ok, err := s.rdb.SetNX(ctx, reindexMarkerPrefix+id, "scanning", ttl).Result()
	return ok, redisErr("store.ClaimReindex", err)
}

// ReindexStats counts what ReindexRunning did.
type ReindexStats struct {
	Scanned   int      // job records looked at
	Calls     int      // Redis calls (round trips) made
	Reindexed []string // ids of the running jobs put back into the lease index
	Waiting   []string // ids of the queued or retrying jobs put into it
}

// ReindexRunning scans every job record (SCAN, batch keys at a time on
// each master, with a pause of pace after each batch) and puts each running
// job that has no lease-index entry back into the index with a lapsed
// deadline: the next reconcile pass looks at its lease, leaves it alone if
// its owner still holds it (the owner's renewal then sets the right
// deadline) and takes it over if not. Each queued or retrying job without
// an entry whose task (of the job's generation) is not waiting on its
// queue — completed, archived, missing, or active — gets one with the
// deadline of a new job's (OrphanAfter from now), as Create gives it:
// unless a claim replaces the entry first, the reconciler then makes sure
// the job's task exists and can still run it. A job whose task is pending,
// scheduled or retry gets none: that task runs it (one HGET per such job,
// where an entry was four commands).
//
// What that leaves: a job whose task the scan read pending, dequeued
// afterwards by a worker whose store client still reads the old master
// (its claim finds the job done there, asynq's client completes the task
// on the new one), stays queued. That needs another worker's store
// client to lag behind the store client of the worker that scans (which
// has seen the new master) by more than the scan's start: the skew
// between two clients' switches. An entry given at the scan covered that
// case only until the reconciler read the task, OrphanAfter later.
func (s *Store) ReindexRunning(ctx context.Context, batch int64, pace time.Duration) (ReindexStats, error) {
	var (
		mu  sync.Mutex
		all ReindexStats
	)
	err := forEachMaster(ctx, s.rdb, func(ctx context.Context, node *redis.Client) error {
		var st ReindexStats
		defer func() {
			mu.Lock()
			all.Scanned, all.Calls = all.Scanned+st.Scanned, all.Calls+st.Calls
			all.Reindexed = append(all.Reindexed, st.Reindexed...)
			all.Waiting = append(all.Waiting, st.Waiting...)
			mu.Unlock()
		}()
		var cursor uint64
		for {
			keys, next, err := node.Scan(ctx, cursor, keyPrefix+"job:{*}", batch).Result()
			st.Calls++
			if err != nil {
				return err
			}
			if err := s.reindexBatch(ctx, keys, &st); err != nil {
				return err
			}
			if cursor = next; cursor == 0 {
				return nil
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(pace):
			}
		}
	})
	return all, redisErr("store.ReindexRunning", err)
}

// reindexBatch re-indexes the running, queued and retrying jobs among
// keys (job hash keys).
func (s *Store) reindexBatch(ctx context.Context, keys []string, st *ReindexStats) error {
	if len(keys) == 0 {
		return nil
	}
	ids := make([]string, 0, len(keys))
	for _, k := range keys {
		id := strings.TrimSuffix(strings.TrimPrefix(k, keyPrefix+"job:{"), "}")
		if id != "" && !strings.ContainsAny(id, "{}") {
			ids = append(ids, id)
		}
	}
	// The states first, then the index entries of the unfinished jobs only
	// (the others need none): one command per finished job.
	// A claim indexes its job in the same script as it makes it running
	// (one node), so running and not indexed, twice, is lost.
	fields := make([]*redis.SliceCmd, len(ids))
	var queues *redis.StringSliceCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			fields[i] = p.HMGet(ctx, JobKey(id), "state", "gen", "queue", "type")
		}
		queues = p.SMembers(ctx, asynqQueuesKey)
		return nil
	})
	st.Calls++
	if err != nil && err != redis.Nil {
		return err
	}
	st.Scanned += len(ids)
	var running []string // and the queued and retrying jobs whose task may not run them
	var waits []waitingJob
	for i, id := range ids {
		v := fields[i].Val()
		state := hmString(v, 0)
		switch {
		case state == "running":
			running = append(running, id)
		case unfinished(state):
			waits = append(waits, waitingJob{id: id, fields: v})
		}
	}
	if len(waits) > 0 {
		ended, err := s.tasksEnded(ctx, waits, queues.Val())
		st.Calls++
		if err != nil {
			return err
		}
		running = append(running, ended...)
	}
	if len(running) == 0 {
		return nil
	}
	// The entry, then the state again: a job that finished meanwhile (its
	// final write drops the entry after it sets the state) is not lost.
	scores := make([]*redis.FloatCmd, len(running))
	again := make([]*redis.StringCmd, len(running))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range running {
			scores[i] = p.ZScore(ctx, LeasesKey(id), id)
			again[i] = p.HGet(ctx, JobKey(id), "state")
		}
		return nil
	})
	st.Calls++
	if err != nil && err != redis.Nil {
		return err
	}
	after := s.OrphanAfter
	if after <= 0 {
		after = OrphanAfterDefault
	}
	now := s.now()
	lapsed, orphan := float64(now.UnixMilli()), float64(now.Add(after).UnixMilli())
	var lost, waiting []string
	for i, id := range running {
		if scores[i].Err() != redis.Nil {
			continue
		}
		switch state := again[i].Val(); {
		case state == "running":
			lost = append(lost, id)
		case unfinished(state):
			waiting = append(waiting, id)
		}
	}
	if len(lost)+len(waiting) == 0 {
		return nil
	}
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, id := range lost {
			p.ZAddNX(ctx, LeasesKey(id), redis.Z{Score: lapsed, Member: id})
			p.Expire(ctx, LeasesKey(id), s.liveTTL())
		}
		for _, id := range waiting {
			p.ZAddNX(ctx, LeasesKey(id), redis.Z{Score: orphan, Member: id})
			p.Expire(ctx, LeasesKey(id), s.liveTTL())
		}
		return nil
	})
	st.Calls++
	if err != nil {
		return err
	}
	st.Reindexed = append(st.Reindexed, lost...)
	st.Waiting = append(st.Waiting, waiting...)
	return nil
}

// waitingJob is a queued or retrying job seen by the scan: its id and its
// hash's state, gen, queue and type (HMGET's values).
type waitingJob struct {
	id     string
	fields []any
}

// tasksEnded returns the jobs among waits whose task of their generation
// may not run them: its asynq state is other than pending, scheduled or
// retry (active, completed, archived), or it is not found. Those are the
// jobs the scan looks at further (their lease-index entry, their state
// again); a job whose task waits on its queue is run by it, and needs
// nothing (so a backlog of queued jobs costs the scan one HGET each, not
// an entry each). The task's queue is the job's TaskQueue: its queue and
// pipeline as the job's hash has them and the definition's digest, which
// only the record has, so every queue of asynq's (queues) that can be
// it is looked at; a job for which none can is looked at further.
func (s *Store) tasksEnded(ctx context.Context, waits []waitingJob, queues []string) ([]string, error) {
	type cand struct {
		job  int
		cmds []*redis.StringCmd
	}
	cands := make([]cand, len(waits))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, w := range waits {
			cands[i].job = i
			gen, err := strconv.ParseInt(hmString(w.fields, 1), 10, 64)
			if err != nil {
				continue
			}
			tid := TaskID(w.id, gen)
			for _, q := range taskQueues(hmString(w.fields, 2), hmString(w.fields, 3), queues) {
				cands[i].cmds = append(cands[i].cmds, p.HGet(ctx, asynqTaskKey(q, tid), "state"))
			}
		}
		return nil
	})
	if err != nil && err != redis.Nil {
		return nil, err
	}
	var ended []string
	for _, c := range cands {
		waiting := false
		for _, cmd := range c.cmds {
			switch cmd.Val() {
			case "pending", "scheduled", "retry":
				waiting = true
			}
		}
		if !waiting {
			ended = append(ended, waits[c.job].id)
		}
	}
	return ended, nil
}

// taskQueues returns the asynq queues among queues that a job on queue
// (the job hash's; "" is DefaultQueue) of pipeline typ can have its tasks
// on (TaskQueue): catalog.QueueName's of that queue and pipeline with any
// digest, or if there is none, the queue itself (a job without a digest).
// A job without a digest whose pipeline also has such queues is not found
// on them, and so looked at further: a cost, not a miss.
func taskQueues(queue, typ string, queues []string) []string {
	if queue == "" {
		queue = DefaultQueue
	}
	prefix := catalog.QueueName(queue, typ, "")
	var out []string
	plain := false
	for _, q := range queues {
		switch {
		case q == queue:
			plain = true
		case strings.HasPrefix(q, prefix) && !strings.Contains(q[len(prefix):], ":"):
			out = append(out, q)
		}
	}
	if len(out) == 0 && plain {
		out = append(out, queue)
	}
	return out
}

// hmString returns HMGET's value i as a string ("" when nil).
func hmString(v []any, i int) string {
	if i < len(v) {
		if s, ok := v[i].(string); ok {
			return s
		}
	}
	return ""
}

// unfinished reports whether a job in state (a record's state field) is
// still to run or running.
func unfinished(state string) bool {
	return state == "running" || state == "queued" || state == "retrying"
}

// forEachMaster calls fn with a client of each master: every master of a
// Cluster, concurrently; the one server of a plain or Sentinel client.
func forEachMaster(ctx context.Context, rdb redis.UniversalClient, fn func(context.Context, *redis.Client) error) error {
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		return c.ForEachMaster(ctx, fn)
	case *redis.Client:
		return fn(ctx, c)
	default:
		return nil
	}
}

// infoField returns the value of field name in an INFO reply.
func infoField(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
