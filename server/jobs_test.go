package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/internal/catalog"
	"github.com/staged-dev/staged/internal/store"

	"github.com/hibiken/asynq"

	"github.com/staged-dev/staged/internal/redistest"
	"github.com/staged-dev/staged/tasks"
)

const unknownID = "0b6c0b6c-0b6c-4b6c-8b6c-0b6c0b6c0b6c"

// chunked hides a reader's length, so the request has no Content-Length.
type chunked struct{ r io.Reader }

func (c chunked) Read(p []byte) (int, error) { return c.r.Read(p) }

func TestRejectedRequests(t *testing.T) {
	e := newEnv(t)
	big := `{"type":"double","input":{"label":"` + strings.Repeat("x", 1<<20) + `"}}`
	tests := []struct {
		name        string
		method      string
		path        string
		contentType string
		body        io.Reader
		header      []string
		want        int
		wantDetail  string
		wantField   string
	}{
		{name: "malformed JSON", body: strings.NewReader(`{"type":"double",}`), want: 400, wantDetail: "not valid JSON: invalid character '}' looking for beginning of object key string, at line 1, column 18"},
		{name: "truncated JSON", body: strings.NewReader(`{"type":"double"`), want: 400, wantDetail: "ends too early"},
		{name: "empty body", body: strings.NewReader(``), want: 400, wantDetail: "request body is empty"},
		{name: "not an object", body: strings.NewReader(`[1,2]`), want: 400, wantDetail: "must be a JSON object, not array"},
		{name: "trailing data", body: strings.NewReader(`{"type":"double"} {}`), want: 400, wantDetail: "data after the JSON object"},
		{name: "wrong content type", contentType: "text/plain", body: strings.NewReader(`{"type":"double"}`), want: 415, wantDetail: "Content-Type: application/json"},
		{name: "no content type", contentType: "-", body: strings.NewReader(`{"type":"double"}`), want: 415, wantDetail: "application/json"},
		{name: "unknown field", body: strings.NewReader(`{"type":"double","priority":1}`), want: 400, wantDetail: `unknown field "priority"`, wantField: "priority"},
		{name: "missing type", body: strings.NewReader(`{"input":{}}`), want: 400, wantDetail: "type is required: one of double, shaped", wantField: "type"},
		{name: "type not a string", body: strings.NewReader(`{"type":7}`), want: 400, wantDetail: "field type must be a string, not number", wantField: "type"},
		{name: "unknown type", body: strings.NewReader(`{"type":"nope"}`), want: 422, wantDetail: `unknown job type "nope": no worker has published it; the known types are double, shaped`, wantField: "type"},
		{name: "input not an object", body: strings.NewReader(`{"type":"double","input":[1]}`), want: 400, wantDetail: "input must be a JSON object", wantField: "input"},
		{name: "input field wrong type", body: strings.NewReader(`{"type":"double","input":{"n":"ten"}}`), want: 400, wantDetail: "input.n must be integer, not string", wantField: "input.n"},
		{name: "input unknown field", body: strings.NewReader(`{"type":"double","input":{"m":1}}`), want: 400, wantDetail: `unknown input field "m"`, wantField: "input.m"},
		{name: "input out of range", body: strings.NewReader(`{"type":"double","input":{"n":1000}}`), want: 422, wantDetail: "input.n must be at most 100, not 1000", wantField: "input.n"},
		{name: "input gives no stages", body: strings.NewReader(`{"type":"shaped","input":{"stages":0}}`), want: 422, wantDetail: "input.stages must be at least 1, not 0", wantField: "input.stages"},
		{name: "retention garbage", body: strings.NewReader(`{"type":"double","retention":"forever"}`), want: 400, wantDetail: `retention must be a duration like "30s" or "2h", not "forever"`, wantField: "retention"},
		{name: "retention negative", body: strings.NewReader(`{"type":"double","retention":"-1h"}`), want: 400, wantDetail: "retention must not be negative", wantField: "retention"},
		{name: "retention a number", body: strings.NewReader(`{"type":"double","retention":3600}`), want: 400, wantDetail: "retention must be a duration string", wantField: "retention"},
		{name: "retention too long", body: strings.NewReader(`{"type":"double","retention":"10000h"}`), want: 422, wantDetail: "retention must be at most", wantField: "retention"},
		{name: "timeout garbage", body: strings.NewReader(`{"type":"double","timeout":"soon"}`), want: 400, wantDetail: "timeout must be a duration", wantField: "timeout"},
		{name: "timeout negative", body: strings.NewReader(`{"type":"double","timeout":"-5s"}`), want: 400, wantDetail: "timeout must not be negative", wantField: "timeout"},
		{name: "max_retries too many", body: strings.NewReader(`{"type":"double","max_retries":26}`), want: 422, wantDetail: "max_retries must be from 0 to 25, not 26", wantField: "max_retries"},
		{name: "max_retries negative", body: strings.NewReader(`{"type":"double","max_retries":-1}`), want: 422, wantDetail: "max_retries must be from 0 to 25", wantField: "max_retries"},
		{name: "max_retries a string", body: strings.NewReader(`{"type":"double","max_retries":"3"}`), want: 400, wantDetail: "max_retries must be an integer", wantField: "max_retries"},
		{name: "max_retries fractional", body: strings.NewReader(`{"type":"double","max_retries":1.5}`), want: 400, wantDetail: "max_retries must be an integer", wantField: "max_retries"},
		{name: "queue bad characters", body: strings.NewReader(`{"type":"double","queue":"Big Queue!"}`), want: 400, wantDetail: `queue must be 1 to 64 characters of a-z, 0-9, _ and -, not "Big Queue!"`, wantField: "queue"},
		{name: "queue too long", body: strings.NewReader(`{"type":"double","queue":"` + strings.Repeat("q", 65) + `"}`), want: 400, wantDetail: "queue must be 1 to 64", wantField: "queue"},
		{name: "queue not configured", body: strings.NewReader(`{"type":"double","queue":"critical"}`), want: 422, wantDetail: `unknown queue "critical": the configured queues are default`, wantField: "queue"},
		{name: "idempotency key too long", body: strings.NewReader(`{"type":"double"}`), header: []string{"Idempotency-Key", strings.Repeat("k", 256)}, want: 400, wantDetail: "Idempotency-Key must be at most 255", wantField: "Idempotency-Key"},
		{name: "body over 1 MiB", body: strings.NewReader(big), want: 413, wantDetail: "larger than the limit of 1048576 bytes"},
		{name: "body over 1 MiB, chunked", body: chunked{strings.NewReader(big)}, want: 413, wantDetail: "larger than the limit of 1048576 bytes"},
		{name: "submit bad wait", path: "/v1/jobs?wait=soon", body: strings.NewReader(`{"type":"double"}`), want: 400, wantDetail: `wait must be a non-negative duration like "10s"`, wantField: "wait"},
		{name: "get unknown id", method: "GET", path: "/v1/jobs/" + unknownID, want: 404, wantDetail: "no job with id " + unknownID},
		{name: "get malformed id", method: "GET", path: "/v1/jobs/nope", want: 404, wantDetail: `no job with id "nope": job ids are UUIDs`},
		{name: "get bad wait", method: "GET", path: "/v1/jobs/" + unknownID + "?wait=-1s", want: 400, wantDetail: "wait must be a non-negative duration", wantField: "wait"},
		{name: "cancel unknown id", method: "POST", path: "/v1/jobs/" + unknownID + "/cancel", want: 404, wantDetail: "no job with id " + unknownID},
		{name: "cancel malformed id", method: "POST", path: "/v1/jobs/x/cancel", want: 404, wantDetail: "job ids are UUIDs"},
		{name: "events unknown id", method: "GET", path: "/v1/jobs/" + unknownID + "/events", want: 404, wantDetail: "no job with id " + unknownID},
		{name: "events malformed id", method: "GET", path: "/v1/jobs/zzz/events", want: 404, wantDetail: "job ids are UUIDs"},
		{name: "events bad Last-Event-ID", method: "GET", path: "/v1/jobs/" + unknownID + "/events", header: []string{"Last-Event-ID", "yesterday"}, want: 400, wantDetail: "Last-Event-ID must be an event id", wantField: "Last-Event-ID"},
		{name: "no such route", method: "GET", path: "/v1/nothing", want: 404, wantDetail: "no such endpoint: GET /v1/nothing"},
		{name: "method not allowed", method: "DELETE", path: "/v1/jobs", want: 405, wantDetail: "method DELETE is not allowed on /v1/jobs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method, path, ct := tt.method, tt.path, tt.contentType
			if method == "" {
				method = "POST"
			}
			if path == "" {
				path = "/v1/jobs"
			}
			switch ct {
			case "":
				if method == "POST" && tt.body != nil {
					ct = "application/json"
				}
			case "-":
				ct = ""
			}
			keys, cmds := e.dbsize(), e.commands.n.Load()
			res, b := e.do(method, path, ct, tt.body, tt.header...)
			p := assertProblem(t, res, b, tt.want, tt.wantDetail)
			if p.Field != tt.wantField {
				t.Errorf("field = %q, want %q", p.Field, tt.wantField)
			}
			if got := e.dbsize(); got != keys {
				t.Errorf("DBSIZE went from %d to %d: a rejected request wrote to Redis", keys, got)
			}
			// Only the lookups of well-formed ids may reach Redis.
			touched := e.commands.n.Load() != cmds
			// and a type the cached catalogue does not know (a worker
			// may have just published it).
			mayTouch := strings.Contains(tt.name, "unknown id") || strings.Contains(tt.name, "unknown type")
			if touched && !mayTouch {
				t.Errorf("a rejected request sent commands to Redis")
			}
		})
	}
}

func TestSubmit(t *testing.T) {
	e := newEnv(t)
	res, b := e.do("POST", "/v1/jobs", "application/json; charset=utf-8", strings.NewReader(`{"type":"double","input":{"n":7}}`))
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d: %s", res.StatusCode, b)
	}
	j := decodeJob(t, b)
	if got, want := res.Header.Get("Location"), "/v1/jobs/"+j.ID; got != want {
		t.Errorf("Location = %q, want %q", got, want)
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	if !api.ValidID(j.ID) || j.Type != "double" || j.State != api.StateQueued || len(j.Stages) != 2 ||
		j.Stages[0].State != api.StatePending || j.Stage.Total != 2 || j.Links != api.LinksFor(j.ID) || j.ExpiresAt.IsZero() {
		t.Errorf("record = %s", b)
	}
	ctx := context.Background()
	h, err := e.rdb.HGetAll(ctx, store.JobKey(j.ID)).Result()
	if err != nil {
		t.Fatal(err)
	}
	if h["input"] != `{"label":"x","n":7}` {
		t.Errorf("stored input = %s, want defaults applied", h["input"])
	}
	var opts api.Options
	_ = json.Unmarshal([]byte(h["opts"]), &opts)
	if want := (api.Options{Retention: store.RetentionDefault, Timeout: tasks.DefaultJobTimeout, MaxRetries: 2, Queue: "default"}); opts != want {
		t.Errorf("stored options = %+v, want %+v", opts, want)
	}
	ins := asynq.NewInspector(asynq.RedisClientOpt{Addr: e.redis.Addr})
	defer ins.Close()
	info, err := ins.GetTaskInfo(store.TaskQueue(j), j.ID)
	if err != nil {
		t.Fatalf("asynq task of the job: %v", err)
	}
	if info.Type != "double" || store.TaskRetries(info.Headers, -1) != 2 || info.State != asynq.TaskStatePending {
		t.Errorf("task = %+v", info)
	}
}

func TestSubmitShapedByInput(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name       string
		body       string
		wantStages []string
	}{
		// The API runs no pipeline code: a stage list built from the
		// input is written by the worker that starts the job.
		{"default shape", `{"type":"shaped"}`, nil},
		{"three stages", `{"type":"shaped","input":{"stages":3}}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := e.submit(tt.body, http.StatusAccepted)
			var names []string
			for _, st := range j.Stages {
				names = append(names, st.Name)
			}
			if strings.Join(names, ",") != strings.Join(tt.wantStages, ",") || j.Stage.Total != len(tt.wantStages) {
				t.Errorf("stages %v total %d, want %v", names, j.Stage.Total, tt.wantStages)
			}
		})
	}
}

func TestSubmitOptions(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Retention = 5 * time.Minute; c.Queues = []string{"default", "batch_1"} })
	tests := []struct {
		name string
		body string
		want api.Options
	}{
		{"server default retention", `{"type":"double"}`, api.Options{Retention: 5 * time.Minute, Timeout: tasks.DefaultJobTimeout, MaxRetries: 2, Queue: "default"}},
		{"all options", `{"type":"double","retention":"2h","timeout":"30s","max_retries":0,"queue":"batch_1"}`, api.Options{Retention: 2 * time.Hour, Timeout: 30 * time.Second, MaxRetries: 0, Queue: "batch_1"}},
	}
	ins := asynq.NewInspector(asynq.RedisClientOpt{Addr: e.redis.Addr})
	defer ins.Close()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := e.submit(tt.body, http.StatusAccepted)
			var opts api.Options
			raw, _ := e.rdb.HGet(context.Background(), store.JobKey(j.ID), "opts").Bytes()
			_ = json.Unmarshal(raw, &opts)
			if opts != tt.want {
				t.Errorf("options = %+v, want %+v", opts, tt.want)
			}
			if j.Queue != tt.want.Queue {
				t.Errorf("record queue = %q", j.Queue)
			}
			info, err := ins.GetTaskInfo(store.TaskQueue(j), j.ID)
			if err != nil || store.TaskRetries(info.Headers, -1) != tt.want.MaxRetries || info.Retention != tt.want.Retention {
				t.Errorf("task = %+v, %v", info, err)
			}
		})
	}
}

// TestSubmitQueues: a submit may name only a configured queue (422
// otherwise, listing them, with nothing written to Redis); its task goes to
// that queue. Without "default" configured, a submit must name a queue.
func TestSubmitQueues(t *testing.T) {
	tests := []struct {
		name       string
		queues     []string
		body       string
		want       int
		wantQueue  string // on 202
		wantDetail string // on 422
	}{
		{"configured non-default queue", []string{"critical", "default", "low"}, `{"type":"double","queue":"critical"}`, 202, "critical", ""},
		{"default queue, named", []string{"critical", "default", "low"}, `{"type":"double","queue":"default"}`, 202, "default", ""},
		{"default queue, not named", []string{"critical", "default", "low"}, `{"type":"double"}`, 202, "default", ""},
		{"unknown queue", []string{"critical", "default", "low"}, `{"type":"double","queue":"batch"}`, 422, "",
			`unknown queue "batch": the configured queues are critical, default, low`},
		{"only critical, named", []string{"critical"}, `{"type":"double","queue":"critical"}`, 202, "critical", ""},
		{"only critical, none named", []string{"critical"}, `{"type":"double"}`, 422, "",
			`field queue is required: this API has no "default" queue; its queues are critical`},
		{"only critical, default named", []string{"critical"}, `{"type":"double","queue":"default"}`, 422, "",
			`unknown queue "default": the configured queues are critical`},
		{"zero value is default only", nil, `{"type":"double","queue":"low"}`, 422, "",
			`unknown queue "low": the configured queues are default`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.Queues = tt.queues })
			keys, cmds := e.dbsize(), e.commands.n.Load()
			res, b := e.do("POST", "/v1/jobs", "application/json", strings.NewReader(tt.body))
			if tt.want != http.StatusAccepted {
				if p := assertProblem(t, res, b, tt.want, tt.wantDetail); p.Field != "queue" {
					t.Errorf("field = %q, want queue", p.Field)
				}
				if got := e.dbsize(); got != keys {
					t.Errorf("DBSIZE went from %d to %d: a rejected submit wrote to Redis", keys, got)
				}
				if e.commands.n.Load() != cmds {
					t.Errorf("a rejected submit sent commands to Redis")
				}
				return
			}
			if res.StatusCode != http.StatusAccepted {
				t.Fatalf("status %d, want 202: %s", res.StatusCode, b)
			}
			j := decodeJob(t, b)
			if j.Queue != tt.wantQueue {
				t.Errorf("record queue = %q, want %q", j.Queue, tt.wantQueue)
			}
			ins := asynq.NewInspector(asynq.RedisClientOpt{Addr: e.redis.Addr})
			defer ins.Close()
			if q := catalog.QueueName(tt.wantQueue, "double", j.Digest); store.TaskQueue(j) != q {
				t.Errorf("task queue %s, want %s", store.TaskQueue(j), q)
			}
			if info, err := ins.GetTaskInfo(store.TaskQueue(j), j.ID); err != nil || !strings.HasPrefix(info.Queue, tt.wantQueue+":double:") {
				t.Errorf("task on queue %s: %+v, %v", tt.wantQueue, info, err)
			}
		})
	}
}

func TestSubmitIdempotent(t *testing.T) {
	e := newEnv(t)
	key := []string{"Idempotency-Key", "order-17"}
	first := e.submit(`{"type":"double","input":{"n":3}}`, http.StatusAccepted, key...)
	keys := e.dbsize()
	tests := []struct {
		name   string
		body   string
		header []string
		want   int
	}{
		{"same body", `{"type":"double","input":{"n":3}}`, key, http.StatusOK},
		{"same body, other formatting and defaults spelt out", "{\n \"input\": {\"label\":\"x\", \"n\": 3}, \"type\": \"double\", \"queue\": \"default\"}", key, http.StatusOK},
		{"different body", `{"type":"double","input":{"n":4}}`, key, http.StatusConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, b := e.do("POST", "/v1/jobs", "application/json", strings.NewReader(tt.body), tt.header...)
			if res.StatusCode != tt.want {
				t.Fatalf("status %d, want %d: %s", res.StatusCode, tt.want, b)
			}
			if tt.want == http.StatusOK {
				if j := decodeJob(t, b); j.ID != first.ID {
					t.Errorf("repeat returned job %s, want %s", j.ID, first.ID)
				}
				if loc := res.Header.Get("Location"); loc != first.Links.Self {
					t.Errorf("Location = %q", loc)
				}
			} else {
				assertProblem(t, res, b, tt.want, "already used with a different request body")
			}
			if got := e.dbsize(); got != keys {
				t.Errorf("DBSIZE %d -> %d: a repeat created something", keys, got)
			}
		})
	}
	// A repeat with ?wait waits for the first job like a first submit would.
	e.finish(first.ID)
	res, b := e.do("POST", "/v1/jobs?wait=5s", "application/json", strings.NewReader(`{"type":"double","input":{"n":3}}`), key...)
	if j := decodeJob(t, b); res.StatusCode != http.StatusOK || j.ID != first.ID || j.State != api.StateSucceeded {
		t.Errorf("repeat with wait: %d %s", res.StatusCode, b)
	}
	// Another key is another job.
	if other := e.submit(`{"type":"double","input":{"n":3}}`, http.StatusAccepted, "Idempotency-Key", "order-18"); other.ID == first.ID {
		t.Errorf("a new key returned the old job")
	}
}

func TestSubmitEnqueueFails(t *testing.T) {
	// The asynq client points at a dead Redis: the record must be removed
	// again, the key forgotten, and the client told 503.
	dead := asynq.RedisClientOpt{Addr: "127.0.0.1:1", DialTimeout: 100 * time.Millisecond}
	e := newEnv(t, func(c *Config) { c.RedisConnOpt = dead })
	res, b := e.do("POST", "/v1/jobs", "application/json", strings.NewReader(`{"type":"double"}`), "Idempotency-Key", "k1")
	assertProblem(t, res, b, http.StatusServiceUnavailable, "could not be queued")
	keys, _ := e.rdb.Keys(context.Background(), "*").Result()
	for _, k := range keys {
		if !strings.HasPrefix(k, "staged:catalog:") { // the test's pipelines, published by New
			t.Errorf("key left behind: %v", k)
		}
	}
}

func TestGetJob(t *testing.T) {
	e := newEnv(t)
	j := e.submit(`{"type":"double"}`, http.StatusAccepted)
	w := e.claim(j.ID)
	w.save(api.StateRunning)
	stored, _ := e.rdb.HGet(context.Background(), store.JobKey(j.ID), "rec").Bytes()

	res, b := e.do("GET", "/v1/jobs/"+j.ID, "", nil)
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, type %q: %s", res.StatusCode, res.Header.Get("Content-Type"), b)
	}
	if string(b) != string(stored) {
		t.Errorf("body is not the stored record as is:\n got %s\nwant %s", b, stored)
	}
	if got := decodeJob(t, b); got.State != api.StateRunning || string(got.Partial) != `{"step":1}` {
		t.Errorf("record = %s", b)
	}
}

func TestCancel(t *testing.T) {
	e := newEnv(t)
	ins := asynq.NewInspector(asynq.RedisClientOpt{Addr: e.redis.Addr})
	defer ins.Close()

	queued := e.submit(`{"type":"double"}`, http.StatusAccepted)
	running := e.submit(`{"type":"double"}`, http.StatusAccepted)
	e.claim(running.ID).save(api.StateRunning)
	finished := e.submit(`{"type":"double"}`, http.StatusAccepted)
	e.finish(finished.ID)

	tests := []struct {
		name          string
		id            string
		want          int
		wantState     api.State
		wantRequested bool
	}{
		{"queued", queued.ID, http.StatusAccepted, api.StateCanceled, false},
		{"queued again", queued.ID, http.StatusConflict, "", false},
		{"running", running.ID, http.StatusAccepted, api.StateRunning, true},
		{"finished", finished.ID, http.StatusConflict, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, b := e.do("POST", "/v1/jobs/"+tt.id+"/cancel", "", nil)
			if tt.want == http.StatusConflict {
				assertProblem(t, res, b, tt.want, "already finished")
				return
			}
			if res.StatusCode != tt.want {
				t.Fatalf("status %d: %s", res.StatusCode, b)
			}
			j := decodeJob(t, b)
			if j.State != tt.wantState || j.CancelRequested != tt.wantRequested {
				t.Errorf("record state %s, cancel_requested %v: %s", j.State, j.CancelRequested, b)
			}
		})
	}
	redistest.Eventually(t, 5*time.Second, "the canceled job's asynq task deleted", func() bool {
		_, err := ins.GetTaskInfo(store.TaskQueue(queued), queued.ID)
		return errors.Is(err, asynq.ErrTaskNotFound)
	})
	if got, _ := e.store.Get(context.Background(), queued.ID, ""); got.State != api.StateCanceled {
		t.Errorf("stored state = %s", got.State)
	}
}

func TestWait(t *testing.T) {
	tests := []struct {
		name       string
		submitWait bool // POST ?wait instead of GET ?wait
		finish     bool
		wait       string
		wantStatus int
		wantState  api.State
		minElapsed time.Duration
	}{
		{name: "get, finishes", wait: "20s", finish: true, wantStatus: 200, wantState: api.StateSucceeded},
		{name: "get, time up", wait: "300ms", wantStatus: 200, wantState: api.StateQueued, minElapsed: 300 * time.Millisecond},
		{name: "get, capped by MaxWait", wait: "1h", wantStatus: 200, wantState: api.StateQueued, minElapsed: 500 * time.Millisecond},
		{name: "submit, finishes", submitWait: true, wait: "20s", finish: true, wantStatus: 200, wantState: api.StateSucceeded},
		{name: "submit, time up", submitWait: true, wait: "300ms", wantStatus: 202, wantState: api.StateQueued, minElapsed: 300 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) {
				if !tt.finish {
					c.MaxWait = 500 * time.Millisecond
				}
			})
			path := "/v1/jobs?wait=" + tt.wait
			if !tt.submitWait {
				j := e.submit(`{"type":"double"}`, http.StatusAccepted)
				path = "/v1/jobs/" + j.ID + "?wait=" + tt.wait
			}
			finished := make(chan error, 1)
			if tt.finish {
				go func() { finished <- e.finishWatched() }()
			} else {
				finished <- nil
			}
			// The finisher reports before the subtest ends (an Error after
			// it would panic), whatever the request answered.
			defer func() {
				if err := <-finished; err != nil {
					t.Error(err)
				}
			}()
			start := time.Now()
			var res *http.Response
			var b []byte
			if tt.submitWait {
				res, b = e.do("POST", path, "application/json", strings.NewReader(`{"type":"double"}`))
			} else {
				res, b = e.do("GET", path, "", nil)
			}
			elapsed := time.Since(start)
			if res.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", res.StatusCode, tt.wantStatus, b)
			}
			if j := decodeJob(t, b); j.State != tt.wantState {
				t.Errorf("state %s, want %s", j.State, tt.wantState)
			}
			if elapsed < tt.minElapsed || elapsed > tt.minElapsed+5*time.Second {
				t.Errorf("answered after %v, want about %v", elapsed, tt.minElapsed)
			}
			if n := e.srv.hub.count(); n != 0 {
				t.Errorf("%d watchers left registered", n)
			}
		})
	}
}
