package store

import (
	"context"
	"errors"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
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
// an entry gets one with the deadline of a new job's (OrphanAfter from
// now), as Create gives it: unless a claim replaces the entry first, the
// reconciler then makes sure the job's task exists and can still run it.
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
	states := make([]*redis.StringCmd, len(ids))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			states[i] = p.HGet(ctx, JobKey(id), "state")
		}
		return nil
	})
	st.Calls++
	if err != nil && err != redis.Nil {
		return err
	}
	st.Scanned += len(ids)
	var running []string // and queued, retrying
	for i, id := range ids {
		if unfinished(states[i].Val()) {
			running = append(running, id)
		}
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
