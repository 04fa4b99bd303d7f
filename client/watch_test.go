package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/staged-dev/staged/api"
)

// sseServer fakes GET /v1/jobs/{id}/events: each connection is handed to
// the next function of conns (the last one repeats), and the Last-Event-ID
// of every connection is recorded.
type sseServer struct {
	*httptest.Server
	mu      sync.Mutex
	lastIDs []string
}

func newSSEServer(t *testing.T, conns ...func(w http.ResponseWriter, r *http.Request)) *sseServer {
	t.Helper()
	s := &sseServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/jobs/"+jobID+"/events" || r.Header.Get("Accept") != "text/event-stream" {
			t.Errorf("request %s %s Accept %q", r.Method, r.URL.Path, r.Header.Get("Accept"))
		}
		s.mu.Lock()
		n := len(s.lastIDs)
		s.lastIDs = append(s.lastIDs, r.Header.Get("Last-Event-ID"))
		s.mu.Unlock()
		conn := conns[min(n, len(conns)-1)]
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		conn(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *sseServer) LastIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lastIDs...)
}

func sendJob(w http.ResponseWriter, id string, j *api.Job) {
	b, _ := json.Marshal(j)
	fmt.Fprintf(w, "id: %s\nevent: job\ndata: %s\n\n", id, b)
	w.(http.Flusher).Flush()
}

// fastClient reconnects at once, so tests do not wait on backoff.
func fastClient(url string, tries int) *Client {
	return New(url, WithReconnect(time.Millisecond, 2*time.Millisecond, tries))
}

func collect(t *testing.T, c *Client, ctx context.Context) ([]*api.Job, error) {
	t.Helper()
	var got []*api.Job
	for j, err := range c.Watch(ctx, jobID) {
		if err != nil {
			return got, err
		}
		got = append(got, j)
	}
	return got, nil
}

func states(js []*api.Job) string {
	var s []string
	for _, j := range js {
		s = append(s, fmt.Sprintf("%s/%.1f", j.State, j.Progress))
	}
	return strings.Join(s, " ")
}

func TestWatchFollowsToTheEnd(t *testing.T) {
	srv := newSSEServer(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "retry: 1\n: keep-alive\n\n")
		sendJob(w, "1-0", job(api.StateQueued, 0))
		fmt.Fprint(w, "event: ping\ndata: {}\n\n")
		sendJob(w, "2-0", job(api.StateRunning, 0.5))
		fmt.Fprint(w, "data: {\"note\":\"no id: not a record\"}\n\n")
		sendJob(w, "3-0", job(api.StateSucceeded, 1))
	})
	got, err := collect(t, fastClient(srv.URL, 3), context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s := states(got); s != "queued/0.0 running/0.5 succeeded/1.0" {
		t.Errorf("states = %s", s)
	}
	if ids := srv.LastIDs(); len(ids) != 1 || ids[0] != "" {
		t.Errorf("connections' Last-Event-IDs = %q, want one with none", ids)
	}
}

// The first connection closes before the job finishes, cleanly; the second
// drops mid-event (the response is aborted); each reconnect carries the id
// of the last event received.
func TestWatchReconnectsWithLastEventID(t *testing.T) {
	srv := newSSEServer(t,
		func(w http.ResponseWriter, r *http.Request) {
			sendJob(w, "1-0", job(api.StateQueued, 0))
			sendJob(w, "2-0", job(api.StateRunning, 0.25))
		},
		func(w http.ResponseWriter, r *http.Request) {
			sendJob(w, "3-0", job(api.StateRunning, 0.5))
			fmt.Fprint(w, "id: 4-0\ndata: {\"id\":\"half an ev")
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler) // drop the connection mid-event
		},
		func(w http.ResponseWriter, r *http.Request) {
			sendJob(w, "4-0", job(api.StateRunning, 0.75))
			sendJob(w, "5-0", job(api.StateSucceeded, 1))
		},
	)
	got, err := collect(t, fastClient(srv.URL, 3), context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s := states(got); s != "queued/0.0 running/0.2 running/0.5 running/0.8 succeeded/1.0" {
		t.Errorf("states = %s", s)
	}
	want := []string{"", "2-0", "3-0"}
	if ids := srv.LastIDs(); fmt.Sprint(ids) != fmt.Sprint(want) {
		t.Errorf("Last-Event-IDs = %q, want %q", ids, want)
	}
}

func TestWatchStopsOnProblem(t *testing.T) {
	var calls int
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		mu.Unlock()
		writeProblem(w, 404, "Job not found", "no job "+jobID+"; it may have expired")
	}))
	defer srv.Close()
	got, err := collect(t, fastClient(srv.URL, 5), context.Background())
	if StatusCode(err) != 404 || len(got) != 0 {
		t.Fatalf("got %d records, err %v; want a 404 problem", len(got), err)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != 1 {
		t.Errorf("%d requests, want 1 (a 404 is not retried)", calls)
	}
}

func TestWatchGivesUp(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		mu.Unlock()
		writeProblem(w, 503, "Redis unavailable", "try again")
	}))
	defer srv.Close()
	_, err := collect(t, fastClient(srv.URL, 3), context.Background())
	if StatusCode(err) != 503 || !strings.Contains(err.Error(), "giving up after 3 attempts") {
		t.Fatalf("err = %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != 4 {
		t.Errorf("%d requests, want 1 + 3 reconnects", calls)
	}
}

func TestWatchNotAnEventStream(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, job(api.StateRunning, 0))
	}))
	defer srv.Close()
	_, err := collect(t, fastClient(srv.URL, 3), context.Background())
	if err == nil || !strings.Contains(err.Error(), "instead of text/event-stream") {
		t.Fatalf("err = %v", err)
	}
}

func TestWatchBadEventIsFatal(t *testing.T) {
	srv := newSSEServer(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "id: 1-0\ndata: {not json\n\n")
	})
	_, err := collect(t, fastClient(srv.URL, 3), context.Background())
	if !errors.Is(err, errBadEvent) {
		t.Fatalf("err = %v", err)
	}
	if n := len(srv.LastIDs()); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

func TestWatchErrorEvent(t *testing.T) {
	srv := newSSEServer(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "event: error\ndata: {\"title\":\"Job expired\",\"status\":410,\"detail\":\"gone\"}\n\n")
	})
	_, err := collect(t, fastClient(srv.URL, 3), context.Background())
	if StatusCode(err) != 410 {
		t.Fatalf("err = %v", err)
	}
}

// Breaking out of the loop closes the stream.
func TestWatchConsumerStops(t *testing.T) {
	closed := make(chan struct{})
	srv := newSSEServer(t, func(w http.ResponseWriter, r *http.Request) {
		sendJob(w, "1-0", job(api.StateRunning, 0.1))
		<-r.Context().Done()
		close(closed)
	})
	for j, err := range fastClient(srv.URL, 3).Watch(context.Background(), jobID) {
		if err != nil || j.State != api.StateRunning {
			t.Fatalf("got %v, %v", j, err)
		}
		break
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the stream was not closed after the loop stopped")
	}
}

func TestWatchContextCanceled(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	srv := newSSEServer(t, func(w http.ResponseWriter, r *http.Request) {
		sendJob(w, "1-0", job(api.StateRunning, 0.1))
		<-release
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var got []*api.Job
	var err error
	for j, e := range fastClient(srv.URL, 3).Watch(ctx, jobID) {
		if e != nil {
			err = e
			break
		}
		got = append(got, j)
		cancel()
	}
	if !errors.Is(err, context.Canceled) || len(got) != 1 {
		t.Fatalf("got %d records, err %v; want 1 and context.Canceled", len(got), err)
	}
}

// A connection that goes silent is dropped after the idle time-out and
// replaced, resuming from the last event.
func TestWatchIdleTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	srv := newSSEServer(t,
		func(w http.ResponseWriter, r *http.Request) {
			sendJob(w, "1-0", job(api.StateRunning, 0.1))
			<-release // silent: no bytes, no close
		},
		func(w http.ResponseWriter, r *http.Request) {
			sendJob(w, "2-0", job(api.StateSucceeded, 1))
		},
	)
	c := New(srv.URL, WithReconnect(time.Millisecond, time.Millisecond, 2), WithStreamIdleTimeout(100*time.Millisecond))
	got, err := collect(t, c, context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s := states(got); s != "running/0.1 succeeded/1.0" {
		t.Errorf("states = %s", s)
	}
	if ids := srv.LastIDs(); fmt.Sprint(ids) != "[ 1-0]" {
		t.Errorf("Last-Event-IDs = %q", ids)
	}
}

func TestBackoff(t *testing.T) {
	c := New("http://x", WithReconnect(100*time.Millisecond, 5*time.Second, 10))
	w := &watcher{c: c}
	tests := []struct {
		name  string
		n     int
		retry time.Duration
		err   error
		want  time.Duration
	}{
		{name: "first", n: 1, want: 100 * time.Millisecond},
		{name: "doubles", n: 3, want: 400 * time.Millisecond},
		{name: "capped", n: 20, want: 5 * time.Second},
		{name: "server retry hint", n: 2, retry: time.Second, want: 2 * time.Second},
		{name: "Retry-After", n: 1, err: &Problem{Status: 503, RetryAfter: 3 * time.Second}, want: 3 * time.Second},
		{name: "Retry-After capped", n: 1, err: &Problem{Status: 503, RetryAfter: time.Minute}, want: 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w.retry = tt.retry
			if got := w.backoff(tt.n, tt.err); got != tt.want {
				t.Errorf("backoff = %v, want %v", got, tt.want)
			}
		})
	}
}

// A resume after the final event gets 204 from the server: Watch then
// reads the finished record and yields it.
func TestWatchNoContentMeansFinished(t *testing.T) {
	var mu sync.Mutex
	var streams int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/jobs/" + jobID + "/events":
			mu.Lock()
			streams++
			n := streams
			mu.Unlock()
			if n == 1 {
				w.Header().Set("Content-Type", "text/event-stream")
				sendJob(w, "1-0", job(api.StateRunning, 0.5))
				return // dropped before the final event arrived
			}
			w.WriteHeader(http.StatusNoContent)
		case "/v1/jobs/" + jobID:
			writeJSON(w, 200, job(api.StateSucceeded, 1))
		}
	}))
	defer srv.Close()
	got, err := collect(t, fastClient(srv.URL, 3), context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s := states(got); s != "running/0.5 succeeded/1.0" {
		t.Errorf("states = %s", s)
	}
}
