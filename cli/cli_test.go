package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/staged-dev/staged/api"
)

const testID = "0b6c6f8e-1f1a-4c1e-9a55-3f0f1b7d2a10"

var t0 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

// rec returns a record of the 2-stage test job.
func rec(state api.State, stage int, progress float64, at time.Duration) *api.Job {
	j := &api.Job{
		ID: testID, Type: "chain", State: state, Progress: progress, Attempt: 1,
		Stage:     api.StageRef{Index: stage, Total: 2},
		Stages:    []api.StageStatus{{Name: "stage1", State: api.StatePending}, {Name: "stage2", State: api.StatePending}},
		CreatedAt: t0, UpdatedAt: t0.Add(at), ExpiresAt: t0.Add(24 * time.Hour), Links: api.LinksFor(testID),
	}
	if stage > 0 {
		j.Stage.Name = j.Stages[stage-1].Name
		s := t0.Add(time.Second)
		j.StartedAt = &s
	}
	if state.Terminal() {
		f := t0.Add(at)
		j.FinishedAt = &f
	}
	return j
}

// fakeAPI is the staged HTTP API, scripted.
type fakeAPI struct {
	*httptest.Server
	mu      sync.Mutex
	submits []map[string]any
	headers []http.Header
	events  []*api.Job    // the event stream of testID
	hold    chan struct{} // if set, the stream waits on it after the events
	cancel  int           // status of cancel: 202 or 409
}

func newFakeAPI(t *testing.T, events ...*api.Job) *fakeAPI {
	t.Helper()
	f := &fakeAPI{events: events, cancel: 202}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/jobs", func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		json.NewDecoder(r.Body).Decode(&body)
		f.mu.Lock()
		f.submits = append(f.submits, body)
		f.headers = append(f.headers, r.Header.Clone())
		f.mu.Unlock()
		if body["type"] == "nope" {
			problem(w, 422, "Unknown job type", `no pipeline "nope"; registered: chain, sleep, train`)
			return
		}
		reply(w, 202, rec(api.StateQueued, 0, 0, 0))
	})
	mux.HandleFunc("GET /v1/jobs/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") != testID {
			problem(w, 404, "Job not found", "no job "+r.PathValue("id")+"; it may have expired")
			return
		}
		reply(w, 200, f.events[len(f.events)-1])
	})
	mux.HandleFunc("GET /v1/jobs/{id}/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i, j := range f.events {
			b, _ := json.Marshal(j)
			fmt.Fprintf(w, "id: %d-0\nevent: job\ndata: %s\n\n", i+1, b)
		}
		w.(http.Flusher).Flush()
		if f.hold != nil {
			select {
			case <-f.hold:
			case <-r.Context().Done():
			}
		}
	})
	mux.HandleFunc("POST /v1/jobs/{id}/cancel", func(w http.ResponseWriter, r *http.Request) {
		if f.cancel == 409 {
			problem(w, 409, "Job already finished", "job "+testID+" already succeeded; there is nothing to cancel")
			return
		}
		reply(w, 202, rec(api.StateCanceled, 0, 0, time.Second))
	})
	f.Server = httptest.NewServer(mux)
	t.Cleanup(f.Close)
	return f
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func problem(w http.ResponseWriter, status int, title, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"type": "about:blank", "title": title, "status": status, "detail": detail})
}

func (f *fakeAPI) env() map[string]string { return map[string]string{"STAGED_SERVER": f.URL} }

func withResult(j *api.Job, result string) *api.Job {
	j.Result = json.RawMessage(result)
	return j
}

func withError(j *api.Job, stage, msg string) *api.Job {
	j.Error = &api.JobError{Stage: stage, Message: msg}
	return j
}

func TestSubmitPrintsID(t *testing.T) {
	f := newFakeAPI(t, rec(api.StateQueued, 0, 0, 0))
	code, out, errOut := runT(t, context.Background(), map[string]string{"STAGED_SERVER": f.URL, "STAGED_API_KEY": "k-secret"},
		"submit", "chain", "--input", `{"data":"x","stages":2}`, "--retention", "1h", "--timeout", "7d",
		"--max-retries", "0", "--queue", "critical", "--idempotency-key", "abc")
	if code != exitOK || out != testID+"\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	b, _ := json.Marshal(f.submits[0])
	want := `{"input":{"data":"x","stages":2},"max_retries":0,"queue":"critical","retention":"1h0m0s","timeout":"168h0m0s","type":"chain"}`
	if string(b) != want {
		t.Errorf("body %s\nwant %s", b, want)
	}
	if h := f.headers[0]; h.Get("Idempotency-Key") != "abc" || h.Get("Authorization") != "Bearer k-secret" {
		t.Errorf("headers %v", h)
	}
}

func TestSubmitInputFile(t *testing.T) {
	f := newFakeAPI(t, rec(api.StateQueued, 0, 0, 0))
	path := t.TempDir() + "/in.json"
	if err := os.WriteFile(path, []byte(`{"data": "from file"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runT(t, context.Background(), f.env(), "submit", "--input", "@"+path, "chain"); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if in := f.submits[0]["input"].(map[string]any); in["data"] != "from file" {
		t.Errorf("input %v", in)
	}
}

func TestFollow(t *testing.T) {
	running := rec(api.StateRunning, 1, 0.5, 2*time.Second)
	tests := []struct {
		name    string
		args    []string
		events  []*api.Job
		want    int
		wantOut string
		wantErr string
	}{
		{
			name: "submit --wait succeeded",
			args: []string{"submit", "chain", "--wait"},
			events: []*api.Job{
				rec(api.StateQueued, 0, 0, 0), running, running, // a repeat prints nothing
				rec(api.StateRunning, 2, 0.5, 3*time.Second),
				withResult(rec(api.StateSucceeded, 2, 1, 4*time.Second), `{"data":"x -> processed by stage 1 -> processed by stage 2"}`),
			},
			want: exitOK,
			// stdout holds only the result; the progress is on stderr.
			wantOut: "{\n  \"data\": \"x -> processed by stage 1 -> processed by stage 2\"\n}\n",
			wantErr: "2026-11-25T10:00:00Z queued\n" +
				"2026-11-25T10:00:02Z running stage 1/2 stage1 50%\n" +
				"2026-11-25T10:00:03Z running stage 2/2 stage2 50%\n" +
				"2026-11-25T10:00:04Z succeeded stage 2/2 stage2 100%\n",
		},
		{
			name:   "watch failed",
			args:   []string{"watch", testID},
			events: []*api.Job{running, withError(rec(api.StateFailed, 2, 0.5, 3*time.Second), "stage2", "boom")},
			want:   exitFailed,
			wantErr: "2026-11-25T10:00:02Z running stage 1/2 stage1 50%\n2026-11-25T10:00:03Z failed stage 2/2 stage2 50%: boom\n" +
				"staged: job " + testID + " failed in stage stage2: boom\n",
		},
		{
			name:   "watch canceled",
			args:   []string{"watch", testID},
			events: []*api.Job{running, rec(api.StateCanceled, 1, 0.5, 3*time.Second)},
			want:   exitCanceled,
			wantErr: "2026-11-25T10:00:02Z running stage 1/2 stage1 50%\n2026-11-25T10:00:03Z canceled stage 1/2 stage1 50%\n" +
				"staged: job " + testID + " was canceled",
		},
		{
			name:   "submit --wait --json prints only the final record",
			args:   []string{"submit", "chain", "--wait", "--json"},
			events: []*api.Job{running, withResult(rec(api.StateSucceeded, 2, 1, 4*time.Second), `{"n":1}`)},
			want:   exitOK,
			wantOut: func() string {
				b, _ := json.MarshalIndent(withResult(rec(api.StateSucceeded, 2, 1, 4*time.Second), `{"n":1}`), "", "  ")
				return string(b) + "\n"
			}(),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeAPI(t, tt.events...)
			code, out, errOut := runT(t, context.Background(), f.env(), tt.args...)
			if code != tt.want {
				t.Errorf("exit %d, want %d; stderr %s", code, tt.want, errOut)
			}
			if out != tt.wantOut {
				t.Errorf("stdout:\n%s\nwant:\n%s", out, tt.wantOut)
			}
			if !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("stderr %q does not contain %q", errOut, tt.wantErr)
			}
		})
	}
}

func TestFollowInterrupted(t *testing.T) {
	f := newFakeAPI(t, rec(api.StateRunning, 1, 0.5, time.Second))
	f.hold = make(chan struct{})
	defer close(f.hold)
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan int)
	go func() {
		defer pw.Close()
		done <- run(ctx, []string{"watch", testID}, env(f.env()), io.Discard, pw)
	}()
	// Cancel once the first line is out: the watch is then following.
	buf := make([]byte, 256)
	if _, err := pr.Read(buf); err != nil {
		t.Fatal(err)
	}
	cancel()
	go io.Copy(io.Discard, pr)
	if code := <-done; code != exitInterrupted {
		t.Errorf("exit %d, want %d", code, exitInterrupted)
	}
}

func TestStatus(t *testing.T) {
	j := rec(api.StateRunning, 2, 0.75, 3*time.Second)
	s1, f1, s2 := t0.Add(time.Second), t0.Add(2*time.Second), t0.Add(2*time.Second)
	j.Stages[0] = api.StageStatus{Name: "stage1", State: api.StateSucceeded, Attempts: 1, StartedAt: &s1, FinishedAt: &f1}
	j.Stages[1] = api.StageStatus{Name: "stage2", State: api.StateRunning, Attempts: 2, StartedAt: &s2}
	j.Partial = json.RawMessage(`{"loss":0.25}`)
	f := newFakeAPI(t, j)

	code, out, errOut := runT(t, context.Background(), f.env(), "status", testID)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"job       " + testID + "  (chain)", "state     running, attempt 1", "stage     2/2 stage2  75%",
		"stages    stage1  succeeded             1.0s", "stage2  running (2 attempts)", "so far",
		"created   2026-11-25T10:00:00Z", `partial   {"loss":0.25}`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary does not contain %q:\n%s", want, out)
		}
	}

	code, out, _ = runT(t, context.Background(), f.env(), "status", "--json", testID)
	var got api.Job
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil || got.ID != testID || got.Progress != 0.75 {
		t.Errorf("--json: exit %d, %v, %s", code, err, out)
	}

	const other = "11111111-1f1a-4c1e-9a55-3f0f1b7d2a10"
	code, _, errOut = runT(t, context.Background(), f.env(), "status", other)
	if code != exitUsage || errOut != "staged: Job not found: no job "+other+"; it may have expired\n" {
		t.Errorf("unknown job: exit %d, stderr %q", code, errOut)
	}
}

func TestCancel(t *testing.T) {
	f := newFakeAPI(t, rec(api.StateRunning, 1, 0.5, time.Second))
	code, out, _ := runT(t, context.Background(), f.env(), "cancel", testID)
	if code != exitOK || out != "canceled\n" {
		t.Errorf("exit %d, stdout %q", code, out)
	}
	f.cancel = 409
	code, out, errOut := runT(t, context.Background(), f.env(), "cancel", testID)
	if code != exitFailed || out != "" ||
		errOut != "staged: Job already finished: job "+testID+" already succeeded; there is nothing to cancel\n" {
		t.Errorf("409: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestAPIProblemAndConnectionErrors(t *testing.T) {
	f := newFakeAPI(t, rec(api.StateQueued, 0, 0, 0))
	code, _, errOut := runT(t, context.Background(), f.env(), "submit", "nope")
	if code != exitUsage || errOut != "staged: Unknown job type: no pipeline \"nope\"; registered: chain, sleep, train\n" {
		t.Errorf("problem: exit %d, stderr %q", code, errOut)
	}

	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	code, _, errOut = runT(t, context.Background(), map[string]string{"STAGED_SERVER": dead.URL}, "status", testID)
	if code != exitUsage || !strings.Contains(errOut, "staged: cannot reach the staged API at "+dead.URL) ||
		!strings.Contains(errOut, "connection refused") {
		t.Errorf("connection: exit %d, stderr %q", code, errOut)
	}
}

func TestUnescapeHTML(t *testing.T) {
	tests := []struct{ in, want string }{
		{in: `{"a":"x -\u003e y \u003c z \u0026"}`, want: `{"a":"x -> y < z &"}`},
		{in: `{"a":"\\u003e"}`, want: `{"a":"\\u003e"}`}, // an escaped backslash, then text
		{in: `{"a":"\u00e9\n\"q\""}`, want: `{"a":"\u00e9\n\"q\""}`},
		{in: `{"a":"\u2028"}`, want: `{"a":"\u2028"}`},
	}
	for _, tt := range tests {
		if got := string(unescapeHTML([]byte(tt.in))); got != tt.want {
			t.Errorf("unescapeHTML(%s) = %s, want %s", tt.in, got, tt.want)
		}
		var a, b any
		if json.Unmarshal([]byte(tt.in), &a) != nil || json.Unmarshal(unescapeHTML([]byte(tt.in)), &b) != nil || fmt.Sprint(a) != fmt.Sprint(b) {
			t.Errorf("%s: the value changed", tt.in)
		}
	}
}
