package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/staged-dev/staged/internal/redistest"
)

// TestCluster runs staged on a 3-master Redis Cluster through a
// redis+cluster:// URL: 1 api and 2 workers, 30 jobs of every built-in
// type with exact results, SSE with resume, cancel, a kill -9 takeover, and
// the jobs' keys spread over all three masters.
func TestCluster(t *testing.T) {
	binary(t)
	cluster := redistest.StartCluster(t, 3)
	s := &stack{t: t, redis: cluster.Nodes[0], rdb: cluster.Client(t), url: cluster.URL(),
		http: &http.Client{Timeout: 15 * time.Second}}
	s.startAPI()
	w1 := s.startWorker("STAGED_CONCURRENCY=8")

	// A job to take over: running stage 2 on worker1, which is killed.
	slow := s.submit(`{"type":"sleep","input":{"stages":3,"ms":1500}}`)
	s.waitJob(slow.ID, 20*time.Second, "running stage 2 on worker1", func(j *job) bool {
		return j.State == "running" && j.Stage.Index == 2
	})
	s.startWorker("STAGED_CONCURRENCY=8")
	before := s.mustGet(slow.ID)
	w1.kill()
	killed := time.Now()
	s.startWorker("STAGED_CONCURRENCY=8")

	checks := map[string]func(*testing.T, *job){}
	for i := range 30 {
		data := fmt.Sprintf("c%d", i)
		checks[s.submit(fmt.Sprintf(`{"type":"chain","input":{"data":%q,"stages":3}}`, data)).ID] = chainCheck(data, 3)
		checks[s.submit(`{"type":"sleep","input":{"stages":2,"ms":20}}`).ID] = sleepCheck(2, 20)
		in := fmt.Sprintf(`{"samples":200,"features":4,"epochs":5,"learning_rate":0.1,"seed":%d}`, i)
		checks[s.submit(`{"type":"train","input":`+in+`}`).ID] = trainCheck
	}

	// SSE with resume on a job with several writes.
	watched := s.submit(`{"type":"sleep","input":{"stages":3,"ms":300}}`)
	c := s.openEvents(watched.ID, "", false)
	first, _ := c.collect(streamLimit, func(ev sseEvent) bool { return strings.Contains(ev.data, `"stage2"`) })
	c.cancel()
	if len(first) == 0 {
		t.Fatalf("no SSE event from the watched job")
	}
	resumed := s.openEvents(watched.ID, first[len(first)-1].id, false)
	rest, closed := resumed.collect(streamLimit, nil)
	if !closed || len(rest) == 0 || !strings.Contains(rest[len(rest)-1].data, `"succeeded"`) {
		t.Fatalf("resumed SSE stream: %d events, closed %v; want it to end with the succeeded record", len(rest), closed)
	}
	resumedJobs := checkEvents(t, "resumed", watched.ID, rest)
	if !firstAfter(first[len(first)-1].id, rest[0].id) {
		t.Errorf("resumed stream starts at %s, not after %s", rest[0].id, first[len(first)-1].id)
	}
	// Each of its 3 stages (300 ms, written at start and end) was seen
	// running and succeeded, over the two streams: no write missed by the
	// job's shard channel subscription.
	seen := map[string]bool{}
	for _, j := range append(checkEvents(t, "first", watched.ID, first), resumedJobs...) {
		for k, st := range j.Stages {
			seen[fmt.Sprintf("%d %s", k, st.State)] = true
		}
	}
	for k := range 3 {
		for _, st := range []string{"running", "succeeded"} {
			if !seen[fmt.Sprintf("%d %s", k, st)] {
				t.Errorf("no SSE event shows stage %d %s; seen %v", k, st, seen)
			}
		}
	}

	// Cancel a running job.
	long := s.submit(`{"type":"sleep","input":{"stages":2,"ms":20000}}`)
	s.waitJob(long.ID, 20*time.Second, "running", func(j *job) bool { return j.State == "running" })
	if r := s.cancel(long.ID); r.status != http.StatusAccepted {
		t.Fatalf("cancel: status %d: %s", r.status, r.body)
	}
	s.waitJob(long.ID, 20*time.Second, "canceled", func(j *job) bool { return j.State == "canceled" })

	for id, check := range checks {
		j := s.waitSucceeded(id, 90*time.Second)
		checkSucceeded(t, j)
		check(t, j)
	}
	waitTakeover(s, before, killed, "takeover after kill -9 on a Cluster")
	j := s.waitSucceeded(slow.ID, 60*time.Second)
	sleepCheck(3, 1500)(t, j)

	// The jobs' keys are on all three masters.
	ctx := context.Background()
	perNode := map[string]int{}
	for id := range checks {
		for _, n := range cluster.Nodes {
			rdb := redis.NewClient(&redis.Options{Addr: n.Addr})
			if ok, _ := rdb.Exists(ctx, "staged:job:{"+id+"}").Result(); ok == 1 {
				perNode[n.Addr]++
			}
			rdb.Close()
		}
	}
	t.Logf("job hashes per master: %v", perNode)
	if len(perNode) != 3 {
		t.Errorf("job keys on %d masters, want all 3: %v", len(perNode), perNode)
	}

	// Pub/sub is sharded: record writes, cancels and wake-ups were
	// SPUBLISHed on every master; nobody subscribes to the plain channels,
	// and PUBLISH (broadcast to every node) carried only the catalogue's
	// few changes (a worker's start or stop).
	for _, n := range cluster.Nodes {
		rdb := redis.NewClient(&redis.Options{Addr: n.Addr})
		subs, err := rdb.PubSubNumSub(ctx, "staged:events", "staged:cancel", "staged:wake").Result()
		if err != nil {
			t.Fatal(err)
		}
		for ch, k := range subs {
			if k != 0 {
				t.Errorf("%s has %d subscribers on %s, want 0 on a Cluster", ch, k, n.Addr)
			}
		}
		spub, pub := redistest.CommandCalls(t, rdb, "spublish"), redistest.CommandCalls(t, rdb, "publish")
		rdb.Close()
		t.Logf("%s: %d SPUBLISH, %d PUBLISH", n.Addr, spub, pub)
		if spub == 0 || pub > 20 {
			t.Errorf("%s: %d SPUBLISH and %d PUBLISH; want some SPUBLISH and only the catalogue's PUBLISH", n.Addr, spub, pub)
		}
	}
}

func firstAfter(a, b string) bool {
	x, ok1 := parseStreamID(a)
	y, ok2 := parseStreamID(b)
	return ok1 && ok2 && x.less(y)
}
