package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/staged-dev/staged/api"
)

const jobID = "0b6c6f8e-1f1a-4c1e-9a55-3f0f1b7d2a10"

func job(state api.State, progress float64) *api.Job {
	return &api.Job{ID: jobID, Type: "chain", State: state, Progress: progress,
		Stage: api.StageRef{Index: 1, Name: "stage1", Total: 2}, Links: api.LinksFor(jobID)}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeProblem(w http.ResponseWriter, status int, title, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"type": "about:blank", "title": title, "status": status, "detail": detail})
}

func TestSubmit(t *testing.T) {
	var got struct {
		method, path, query, auth, idem, ctype string
		body                                   map[string]any
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.method, got.path, got.query = r.Method, r.URL.Path, r.URL.RawQuery
		got.auth, got.idem, got.ctype = r.Header.Get("Authorization"), r.Header.Get("Idempotency-Key"), r.Header.Get("Content-Type")
		json.NewDecoder(r.Body).Decode(&got.body)
		w.Header().Set("Location", "/v1/jobs/"+jobID)
		writeJSON(w, http.StatusAccepted, job(api.StateQueued, 0))
	}))
	defer srv.Close()

	c := New(srv.URL+"/", WithAPIKey("s3cret"))
	retries := 0
	j, err := c.Submit(context.Background(), "chain", map[string]any{"data": "x", "stages": 2}, &SubmitOptions{
		Retention: time.Hour, Timeout: 90 * time.Second, MaxRetries: &retries, Queue: "critical",
		IdempotencyKey: "k1", Wait: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if j.ID != jobID || j.State != api.StateQueued {
		t.Errorf("job = %+v", j)
	}
	if got.method != "POST" || got.path != "/v1/jobs" || got.query != "wait=10s" {
		t.Errorf("request = %s %s?%s", got.method, got.path, got.query)
	}
	if got.auth != "Bearer s3cret" || got.idem != "k1" || got.ctype != "application/json" {
		t.Errorf("headers: auth %q idem %q content-type %q", got.auth, got.idem, got.ctype)
	}
	want := `{"input":{"data":"x","stages":2},"max_retries":0,"queue":"critical","retention":"1h0m0s","timeout":"1m30s","type":"chain"}`
	if b, _ := json.Marshal(got.body); string(b) != want {
		t.Errorf("body = %s\nwant   %s", b, want)
	}
}

func TestSubmitInputForms(t *testing.T) {
	tests := []struct {
		name    string
		input   any
		want    string // the request's "input", "" for absent
		wantErr bool
	}{
		{name: "nil means defaults", input: nil, want: ""},
		{name: "raw message as is", input: json.RawMessage(` {"a": 1} `), want: `{"a":1}`},
		{name: "bytes as is", input: []byte(`{"b":2}`), want: `{"b":2}`},
		{name: "struct encoded", input: struct {
			N int `json:"n"`
		}{3}, want: `{"n":3}`},
		{name: "invalid raw JSON", input: json.RawMessage(`{`), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body map[string]json.RawMessage
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				json.NewDecoder(r.Body).Decode(&body)
				writeJSON(w, http.StatusAccepted, job(api.StateQueued, 0))
			}))
			defer srv.Close()
			_, err := New(srv.URL).Submit(context.Background(), "x", tt.input, nil)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			var in string
			if raw, ok := body["input"]; ok {
				var v any
				json.Unmarshal(raw, &v)
				b, _ := json.Marshal(v)
				in = string(b)
			}
			if in != tt.want {
				t.Errorf("input = %s, want %s", in, tt.want)
			}
		})
	}
}

func TestProblems(t *testing.T) {
	tests := []struct {
		name        string
		ctype, body string
		status      int
		header      map[string]string
		want        Problem
		wantErr     string
	}{
		{
			name: "problem document", status: 422, ctype: "application/problem+json",
			body: `{"type":"https://staged.dev/problems/invalid-input","title":"Invalid input","status":422,"detail":"epochs must be between 1 and 10,000, not 0","field":"input.epochs"}`,
			want: Problem{Type: "https://staged.dev/problems/invalid-input", Title: "Invalid input", Status: 422,
				Detail: "epochs must be between 1 and 10,000, not 0", Field: "input.epochs"},
			wantErr: "Invalid input: epochs must be between 1 and 10,000, not 0",
		},
		{
			name: "the status line wins over the document", status: 404, ctype: "application/problem+json; charset=utf-8",
			body:    `{"title":"Job not found","status":500}`,
			want:    Problem{Title: "Job not found", Status: 404},
			wantErr: "Job not found",
		},
		{
			name: "echo's default error", status: 405, ctype: "application/json",
			body:    `{"message":"Method Not Allowed"}`,
			want:    Problem{Title: "Method Not Allowed", Status: 405, Detail: "Method Not Allowed"},
			wantErr: "Method Not Allowed",
		},
		{
			name: "proxy HTML page", status: 502, ctype: "text/html",
			body:    "<html><body>Bad Gateway</body></html>",
			want:    Problem{Title: "Bad Gateway", Status: 502},
			wantErr: "Bad Gateway",
		},
		{
			name: "plain text, Retry-After", status: 503, ctype: "text/plain",
			body:    "redis is down\nmore",
			header:  map[string]string{"Retry-After": "3"},
			want:    Problem{Title: "Service Unavailable", Status: 503, Detail: "redis is down", RetryAfter: 3 * time.Second},
			wantErr: "Service Unavailable: redis is down",
		},
		{
			name: "broken JSON", status: 500, ctype: "application/problem+json",
			body:    `{"title":`,
			want:    Problem{Title: "Internal Server Error", Status: 500},
			wantErr: "Internal Server Error",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tt.ctype)
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			_, err := New(srv.URL).Get(context.Background(), jobID)
			var p *Problem
			if !errors.As(err, &p) {
				t.Fatalf("err = %v (%T), want a *Problem", err, err)
			}
			if *p != tt.want {
				t.Errorf("problem = %+v\nwant      %+v", *p, tt.want)
			}
			if p.Error() != tt.wantErr {
				t.Errorf("Error() = %q, want %q", p.Error(), tt.wantErr)
			}
			if StatusCode(err) != tt.status {
				t.Errorf("StatusCode = %d", StatusCode(err))
			}
		})
	}
}

func TestConnectionErrorIsWrapped(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	u := srv.URL
	srv.Close()
	_, err := New(u).Get(context.Background(), jobID)
	var ue *url.Error
	if !errors.As(err, &ue) {
		t.Fatalf("err = %v, want a wrapped *url.Error", err)
	}
	if StatusCode(err) != 0 {
		t.Errorf("StatusCode = %d, want 0", StatusCode(err))
	}
	if !strings.Contains(err.Error(), "client.Get") {
		t.Errorf("err = %q, want the operation named", err)
	}
}

func TestInvalidBaseURL(t *testing.T) {
	for _, u := range []string{"localhost:8080", "ftp://x", "http://", "://"} {
		if _, err := New(u).Get(context.Background(), jobID); err == nil || !strings.Contains(err.Error(), "invalid server URL") {
			t.Errorf("New(%q).Get: err = %v", u, err)
		}
	}
}

func TestBasePathPrefix(t *testing.T) {
	var path string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path = r.URL.Path
		writeJSON(w, 200, job(api.StateRunning, 0))
	}))
	defer srv.Close()
	if _, err := New(srv.URL+"/staged/").Get(context.Background(), jobID); err != nil {
		t.Fatal(err)
	}
	if path != "/staged/v1/jobs/"+jobID {
		t.Errorf("path = %s", path)
	}
}

func TestWaitLoopsUntilFinished(t *testing.T) {
	var calls atomic.Int32
	var waits []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		waits = append(waits, r.URL.Query().Get("wait"))
		if calls.Add(1) < 3 {
			writeJSON(w, 200, job(api.StateRunning, 0.5))
			return
		}
		writeJSON(w, 200, job(api.StateSucceeded, 1))
	}))
	defer srv.Close()
	// A fake that answers at once: Wait must still get there (paced, not
	// a busy loop).
	j, err := New(srv.URL).Wait(context.Background(), jobID, 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if j.State != api.StateSucceeded || calls.Load() != 3 {
		t.Errorf("state %s after %d calls", j.State, calls.Load())
	}
	for _, w := range waits {
		if w != "1m0s" { // capped at MaxWait
			t.Errorf("wait = %q, want 1m0s", w)
		}
	}
}

func TestWaitContextDone(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, job(api.StateRunning, 0.5))
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	j, err := New(srv.URL).Wait(ctx, jobID, time.Second)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	if j == nil || j.State != api.StateRunning {
		t.Errorf("last = %+v, want the running record", j)
	}
}

func TestWaitProblem(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, 404, "Job not found", "no job "+jobID)
	}))
	defer srv.Close()
	_, err := New(srv.URL).Wait(context.Background(), jobID, 0)
	if StatusCode(err) != 404 {
		t.Fatalf("err = %v, want 404", err)
	}
}

func TestCancel(t *testing.T) {
	tests := []struct {
		name   string
		status int
		want   int // StatusCode of the error
	}{
		{name: "accepted", status: 202},
		{name: "already finished", status: 409, want: 409},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != "POST" || r.URL.Path != "/v1/jobs/"+jobID+"/cancel" {
					t.Errorf("request %s %s", r.Method, r.URL.Path)
				}
				if tt.status == 409 {
					writeProblem(w, 409, "Job already finished", "job "+jobID+" already succeeded")
					return
				}
				writeJSON(w, tt.status, job(api.StateCanceled, 0))
			}))
			defer srv.Close()
			j, err := New(srv.URL).Cancel(context.Background(), jobID)
			if StatusCode(err) != tt.want {
				t.Fatalf("err = %v", err)
			}
			if tt.want == 0 && j.State != api.StateCanceled {
				t.Errorf("state = %s", j.State)
			}
		})
	}
}

func TestPipelines(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/pipelines" {
			t.Errorf("path %s", r.URL.Path)
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"pipelines":[{"name":"chain","description":"d","stages":[{"name":"stage1","weight":1,"timeout":null},`+
			`{"name":"stage2","weight":1,"timeout":"5m0s"}],"input":{"fields":[{"name":"data","type":"string","default":"x"}],`+
			`"defaults":{"data":"x"}},"timeout":"1h0m0s","max_retries":2}]}`)
	}))
	defer srv.Close()
	ps, err := New(srv.URL).Pipelines(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 {
		t.Fatalf("pipelines = %+v", ps)
	}
	p := ps[0]
	if p.Name != "chain" || len(p.Stages) != 2 || p.Stages[1].Name != "stage2" || p.Stages[0].Timeout != nil ||
		*p.Stages[1].Timeout != "5m0s" || string(p.Input.Defaults) != `{"data":"x"}` || p.Input.Fields[0].Name != "data" ||
		p.Timeout != "1h0m0s" || p.MaxRetries != 2 {
		t.Errorf("pipeline = %+v", p)
	}
}
