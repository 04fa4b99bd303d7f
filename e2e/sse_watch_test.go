package e2e

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/client"
)

// TestSSEClientWatchReconnect follows a job with the Go client's Watch
// while the API process is killed (SIGKILL) mid-job and started again on
// the same port: the watch reconnects with Last-Event-ID and yields every
// record the job was written with from its first one on, in order, none
// missing or repeated, ending with the finished record.
func TestSSEClientWatchReconnect(t *testing.T) {
	t.Parallel()
	s := newStack(t, false)
	apiProc := s.startAPI()
	s.startWorker()
	addr := strings.TrimPrefix(s.baseURL, "http://")

	id := s.submit(`{"type":"sleep","input":{"stages":5,"ms":800}}`).ID
	c := client.New(s.baseURL, client.WithHTTPClient(&http.Client{}))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var mu sync.Mutex
	var got []*api.Job
	var werr error
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		for j, err := range c.Watch(ctx, id) {
			mu.Lock()
			if err != nil {
				werr = err
			} else {
				got = append(got, j)
			}
			mu.Unlock()
		}
	}()
	snapshot := func() []*api.Job {
		mu.Lock()
		defer mu.Unlock()
		return append([]*api.Job(nil), got...)
	}
	waitFor(t, 20*time.Second, "the watch to yield a record of stage 2", func() (bool, string) {
		g := snapshot()
		if len(g) == 0 {
			return false, "nothing yet"
		}
		last := g[len(g)-1]
		return last.Stage.Index >= 2, fmt.Sprintf("%d records, last %s stage %d", len(g), last.State, last.Stage.Index)
	})
	apiProc.kill()
	before := len(snapshot())
	killedAt := time.Now()
	// Stay down while the job writes a few more events: the watch must
	// catch up on them from the stream, not only follow live.
	written := len(s.xrange(id, ""))
	waitFor(t, 10*time.Second, "5 more events written while the API is down", func() (bool, string) {
		n := len(s.xrange(id, ""))
		return n >= written+5, fmt.Sprintf("%d entries, %d at the kill", n, written)
	})
	down := time.Since(killedAt)
	s.startAPIAt(addr)
	t.Logf("api down for %v, restarted on %s; %d records before the kill", down.Round(time.Millisecond), addr, before)

	select {
	case <-watchDone:
	case <-ctx.Done():
		g := snapshot()
		t.Fatalf("the watch did not end: %d records, the last %s", len(g), g[len(g)-1].State)
	}
	if werr != nil {
		t.Fatalf("the watch ended with an error: %v", werr)
	}
	g := snapshot()
	if last := g[len(g)-1]; last.State != api.StateSucceeded {
		t.Fatalf("the watch's last record is %s, want succeeded", last.State)
	}
	if len(g) == before {
		t.Fatalf("the watch yielded nothing after the API restarted")
	}
	// Records written after the kill can only have come from the new
	// process, over a new connection.
	after := 0
	for _, j := range g {
		if j.UpdatedAt.After(killedAt) {
			after++
		}
	}
	if after == 0 {
		t.Fatalf("the watch yielded no record written after the API was killed")
	}

	// Compare with the job's event stream in Redis, from the first record
	// the watch yielded (the latest at connect time, or the stored queued
	// record when the stream had no entry yet).
	var want []*api.Job
	for _, e := range s.xrange(id, "") {
		j, err := api.DecodeJob([]byte(e.rec))
		if err != nil {
			t.Fatalf("stream entry %s: %v", e.id, err)
		}
		want = append(want, j)
	}
	start := -1
	for i, j := range want {
		if reflect.DeepEqual(j, g[0]) {
			start = i
			break
		}
	}
	switch {
	case start >= 0:
		want = want[start:]
	case g[0].State == api.StateQueued:
		g = g[1:] // the stored record, before any entry
	default:
		t.Fatalf("the watch's first record (%s stage %d) is not in the job's stream", g[0].State, g[0].Stage.Index)
	}
	if len(g) != len(want) {
		t.Errorf("the watch yielded %d records, the stream holds %d from the first one on", len(g), len(want))
	}
	for i := range min(len(g), len(want)) {
		if !reflect.DeepEqual(g[i], want[i]) {
			t.Fatalf("record %d differs from the stream's: got %s stage %d %.3f at %v, want %s stage %d %.3f at %v",
				i, g[i].State, g[i].Stage.Index, g[i].Progress, g[i].UpdatedAt, want[i].State, want[i].Stage.Index, want[i].Progress, want[i].UpdatedAt)
		}
	}
	t.Logf("the watch yielded %d records (%d before the kill), the same as the stream", len(g), before)
}

// startAPIAt runs `staged api` on addr (say, again after the API on that
// address was killed) and waits for /readyz.
func (s *stack) startAPIAt(addr string) *proc {
	s.t.Helper()
	env := s.env("STAGED_ADDR="+addr, "STAGED_RATE_LIMIT=0")
	s.api = startProc(s.t, "api-restarted", env, "api")
	s.baseURL = "http://" + addr
	s.waitFor(readyLimit, "the restarted staged api to answer 200 on /readyz", func() (bool, string) {
		if s.api.exited() {
			s.t.Fatalf("staged api exited before it was ready: %v\n%s", s.api.err, s.api.out.String())
		}
		resp, err := s.http.Get(s.baseURL + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	return s.api
}
