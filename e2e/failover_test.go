package e2e

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/staged-dev/staged/internal/redistest"
)

// TestSentinelFailover: a primary, a replica and three sentinels; staged
// (1 apiProc, 2 workers) uses the redis-sentinel:// URL. Jobs are submitted
// continuously while SENTINEL FAILOVER runs: every job answered 202
// finishes, none stays running, and no submit answers 500.
func TestSentinelFailover(t *testing.T) {
	binary(t)
	st := redistest.StartSentinel(t)
	rdb := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: st.Master, SentinelAddrs: sentinelAddrs(st)})
	t.Cleanup(func() { rdb.Close() })
	s := &stack{t: t, redis: st.Primary, rdb: rdb, url: st.URL(), http: &http.Client{Timeout: 15 * time.Second}}
	apiProc := s.startAPI()
	s.startWorker()
	s.startWorker()
	if !logSays(apiProc, "a replica has the job") {
		t.Errorf("the api does not say it waits for a replica")
	}

	var mu sync.Mutex
	var accepted []string
	statuses := map[int]int{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			r, err := s.do(http.MethodPost, "/v1/jobs", "application/json", []byte(`{"type":"sleep","input":{"stages":2,"ms":100}}`))
			mu.Lock()
			if err == nil {
				statuses[r.status]++
				if r.status == http.StatusAccepted {
					accepted = append(accepted, decodeJob(t, r.body).ID)
				}
			}
			mu.Unlock()
			time.Sleep(20 * time.Millisecond) // pacing of the load, not a synchronisation
		}
	})
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(accepted) }
	s.waitFor(20*time.Second, "10 jobs accepted before the failover", func() (bool, string) { return count() >= 10, "" })

	sc := redis.NewSentinelClient(&redis.Options{Addr: st.Sentinels[0].Addr})
	defer sc.Close()
	if err := sc.Failover(context.Background(), st.Master).Err(); err != nil {
		t.Fatalf("SENTINEL FAILOVER: %v", err)
	}
	s.waitFor(30*time.Second, "the sentinels to promote the replica", func() (bool, string) {
		addr, err := sc.GetMasterAddrByName(context.Background(), st.Master).Result()
		return err == nil && addr[0]+":"+addr[1] == st.Replica.Addr, "master " + joinAddr(addr)
	})
	n := count()
	s.waitFor(30*time.Second, "10 more jobs accepted after the failover", func() (bool, string) { return count() >= n+10, "" })
	close(stop)
	wg.Wait()
	t.Logf("submits by status: %v; %d accepted", statuses, len(accepted))
	if statuses[http.StatusInternalServerError] > 0 {
		t.Errorf("%d submits answered 500 during the failover; want 202 or 503", statuses[500])
	}
	// A job whose task was written to the old primary in its last moment
	// (the API's two clients can follow the failover at different times)
	// is queued without a task: the reconciler enqueues it once it is
	// store.OrphanAfterDefault (1 min) old. A job whose claim the old
	// primary never passed on, while its task's dequeue was replicated
	// (more likely since the worker prefetches), is queued with an active
	// task: asynq's recoverer retries that task once its lease (30 s) has
	// been expired for 30 s, on its next round (every minute), so up to
	// about 2 min after the failover, and the job then runs. A job whose
	// claim and final write the old primary never passed on, while asynq's
	// end of its task reached the new one (the worker's store client still
	// read the old primary, which answered "done"), is queued with a
	// completed task and no lease-index entry: the workers' scan of the new
	// primary indexes it, and about store.OrphanAfterDefault (1 min) later
	// the reconciler enqueues its task again. Hence 4 min.
	for _, id := range accepted {
		j := s.waitDone(id, 4*time.Minute)
		if j.State != "succeeded" {
			t.Errorf("job %s answered 202 ended %s", id, j.summary())
		}
	}
}

func sentinelAddrs(st *redistest.Sentinels) []string {
	var a []string
	for _, s := range st.Sentinels {
		a = append(a, s.Addr)
	}
	return a
}

func joinAddr(a []string) string {
	if len(a) == 2 {
		return a[0] + ":" + a[1]
	}
	return "?"
}

func logSays(p *proc, what string) bool {
	for _, l := range p.lines() {
		if strings.Contains(l, what) {
			return true
		}
	}
	return false
}
