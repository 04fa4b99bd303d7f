package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestCore is issue 2's end-to-end test: one `staged api` and two
// `staged worker` processes on a private redis-server run 24 jobs of all
// three built-in pipelines with exact results, on both workers; a running
// job's stage advances in polls; every staged:* key has a TTL; a job with a
// 2s retention is gone after it.
func TestCore(t *testing.T) {
	t.Parallel()
	s := newStack(t, false)
	s.startAPI()
	w1 := s.startWorker("STAGED_CONCURRENCY=4")
	w2 := s.startWorker("STAGED_CONCURRENCY=4")

	checkPipelines(t, s)

	// A job kept 2s after it finishes, first so it runs at once: it must be
	// read before it expires.
	short := s.submit(`{"type":"chain","input":{"data":"r","stages":1},"retention":"2s"}`)
	// A slower sleep job, on idle workers, to watch its stages advance.
	watched := s.submit(`{"type":"sleep","input":{"stages":4,"ms":500}}`)
	checks := map[string]func(*testing.T, *job){watched.ID: sleepCheck(4, 500)}

	var trainIDs [][2]string // pairs of jobs with the same train input
	for i := range 8 {
		in := fmt.Sprintf(`{"stages":3,"ms":%d}`, 300)
		checks[s.submit(`{"type":"sleep","input":`+in+`}`).ID] = sleepCheck(3, 300)

		data := fmt.Sprintf("x%d", i)
		checks[s.submit(fmt.Sprintf(`{"type":"chain","input":{"data":%q,"stages":4}}`, data)).ID] = chainCheck(data, 4)

		if i%2 == 0 {
			in := fmt.Sprintf(`{"samples":300,"features":4,"epochs":15,"learning_rate":0.1,"seed":%d}`, i)
			a := s.submit(`{"type":"train","input":` + in + `}`)
			b := s.submit(`{"type":"train","input":` + in + `}`)
			checks[a.ID], checks[b.ID] = trainCheck, trainCheck
			trainIDs = append(trainIDs, [2]string{a.ID, b.ID})
		}
	}
	t.Logf("submitted %d jobs", len(checks)+1)

	sj := s.waitSucceeded(short.ID, 10*time.Second)
	checkSucceeded(t, sj)
	chainCheck("r", 1)(t, sj)

	watchStages(t, s, watched.ID)

	done := map[string]*job{}
	for id, check := range checks {
		j := s.waitSucceeded(id, 90*time.Second)
		checkSucceeded(t, j)
		check(t, j)
		done[id] = j
	}
	for _, p := range trainIDs {
		a, b := done[p[0]], done[p[1]]
		if !jsonEqual(a.Result, b.Result) {
			t.Errorf("train is not deterministic: the same input gave\n%s\nand\n%s", a.Result, b.Result)
		}
	}

	// Both workers ran jobs (their JSON log lines name the job ids).
	ran1, ran2 := countRan(w1, checks), countRan(w2, checks)
	t.Logf("jobs named in logs: worker1 %d, worker2 %d (of %d)", ran1, ran2, len(checks))
	if ran1 == 0 || ran2 == 0 {
		t.Errorf("both workers should have run jobs: worker1 logged %d of ours, worker2 %d "+
			"(workers must log JSON lines with a \"job_id\" attribute)", ran1, ran2)
	}

	checkTTLs(t, s)

	// The 2s-retention job: expires_at is its finish time + 2s, then it is 404.
	if sj.FinishedAt != nil {
		if d := sj.ExpiresAt.Sub(*sj.FinishedAt); d < time.Second || d > 3*time.Second {
			t.Errorf("retention 2s: expires_at - finished_at = %v, want about 2s", d)
		}
	}
	s.waitFor(15*time.Second, "the 2s-retention job to answer 404", func() (bool, string) {
		_, r, err := s.get(short.ID)
		if err != nil {
			return false, err.Error()
		}
		return r.status == http.StatusNotFound, fmt.Sprintf("status %d", r.status)
	})
	r, _ := s.do(http.MethodGet, "/v1/jobs/"+short.ID, "", nil)
	checkProblem(t, r, []int{http.StatusNotFound})
}

// checkPipelines asserts GET /v1/pipelines lists the built-in pipelines.
func checkPipelines(t *testing.T, s *stack) {
	t.Helper()
	r, err := s.do(http.MethodGet, "/v1/pipelines", "", nil)
	if err != nil || r.status != http.StatusOK {
		t.Fatalf("GET /v1/pipelines: %v %v", err, r)
	}
	for _, name := range []string{"train", "sleep", "chain"} {
		if !strings.Contains(string(r.body), `"`+name+`"`) {
			t.Errorf("GET /v1/pipelines does not list %q: %.500s", name, r.body)
		}
	}
}

// watchStages polls a running sleep job until it finishes and asserts it
// was seen running in at least two distinct stages, with progress never
// going back.
func watchStages(t *testing.T, s *stack, id string) {
	t.Helper()
	seen := map[int]bool{}
	var lastProgress float64
	s.waitJob(id, 30*time.Second, "finish while watched", func(j *job) bool {
		if j.State == "running" {
			seen[j.Stage.Index] = true
			if j.Progress < lastProgress {
				t.Errorf("progress went back from %.3f to %.3f", lastProgress, j.Progress)
			}
			lastProgress = j.Progress
			if j.Partial != nil && string(j.Partial) != "null" && j.Stage.Index == 0 {
				t.Errorf("running with stage.index 0 and a partial: %s", j.raw)
			}
		}
		return j.terminal()
	})
	var idx []int
	for i := range 10 {
		if seen[i] {
			idx = append(idx, i)
		}
	}
	t.Logf("watched sleep job running in stages %v", idx)
	if len(idx) < 2 {
		t.Errorf("saw the running sleep job in stages %v, want at least two distinct stage indexes", idx)
	}
	if seen[0] {
		t.Errorf("a running job showed stage.index 0 (1-based; 0 is only before the first stage)")
	}
}

// checkSucceeded asserts what every succeeded record shows.
func checkSucceeded(t *testing.T, j *job) {
	t.Helper()
	if j.Stage.Total != len(j.Stages) || j.Stage.Index != j.Stage.Total {
		t.Errorf("%s: stage %+v with %d stages, want index = total = %d", j.ID, j.Stage, len(j.Stages), len(j.Stages))
	}
	if math.Abs(j.Progress-1) > 1e-9 {
		t.Errorf("%s: progress %v, want 1", j.ID, j.Progress)
	}
	for i, st := range j.Stages {
		if st.State != "succeeded" || st.Attempts != 1 || st.StartedAt == nil || st.FinishedAt == nil {
			t.Errorf("%s: stage %d = %+v, want succeeded once with start and finish times", j.ID, i+1, st)
		}
	}
	if j.Error != nil || j.Attempt != 1 || j.StartedAt == nil || j.FinishedAt == nil {
		t.Errorf("%s: error %+v attempt %d started %v finished %v", j.ID, j.Error, j.Attempt, j.StartedAt, j.FinishedAt)
	}
	if j.FinishedAt != nil && !j.ExpiresAt.After(*j.FinishedAt) {
		t.Errorf("%s: expires_at %v not after finished_at %v", j.ID, j.ExpiresAt, j.FinishedAt)
	}
}

// sleepCheck: the result of sleep {"stages": n, "ms": ms} is
// {"stage": n, "slept_ms": ms}, stages "stage1".."stageN".
func sleepCheck(n, ms int) func(*testing.T, *job) {
	return func(t *testing.T, j *job) {
		t.Helper()
		if j.Type != "sleep" || len(j.Stages) != n || j.Stages[n-1].Name != fmt.Sprintf("stage%d", n) {
			t.Errorf("sleep job %s: type %s, stages %+v, want %d named stage1..stage%d", j.ID, j.Type, j.Stages, n, n)
		}
		want := fmt.Sprintf(`{"stage":%d,"slept_ms":%d}`, n, ms)
		if !jsonEqual(j.Result, json.RawMessage(want)) {
			t.Errorf("sleep job %s: result %s, want %s", j.ID, j.Result, want)
		}
	}
}

// chainCheck: chain {"data": d, "stages": n} gives
// {"data": "d -> processed by stage 1 -> … -> processed by stage n"}.
func chainCheck(data string, n int) func(*testing.T, *job) {
	want := data
	for k := 1; k <= n; k++ {
		want += fmt.Sprintf(" -> processed by stage %d", k)
	}
	return func(t *testing.T, j *job) {
		t.Helper()
		var got struct {
			Data *string `json:"data"`
		}
		if err := json.Unmarshal(j.Result, &got); err != nil || got.Data == nil || *got.Data != want {
			t.Errorf("chain job %s: result %s, want {\"data\": %q}", j.ID, j.Result, want)
		}
	}
}

// trainCheck: train's result holds an accuracy between 0.5 and 1.
func trainCheck(t *testing.T, j *job) {
	t.Helper()
	acc, ok := findNumber(j.Result, "accuracy")
	if !ok || acc < 0.5 || acc > 1 {
		t.Errorf("train job %s: result has no accuracy in [0.5, 1]: %s", j.ID, j.Result)
	}
	if names := stageNames(j); names != "prepare,preprocess,train,package" {
		t.Errorf("train job %s: stages %s, want prepare,preprocess,train,package", j.ID, names)
	}
}

// findNumber finds the first number under key name anywhere in doc.
func findNumber(doc json.RawMessage, name string) (float64, bool) {
	var v any
	if json.Unmarshal(doc, &v) != nil {
		return 0, false
	}
	var walk func(any) (float64, bool)
	walk = func(v any) (float64, bool) {
		switch v := v.(type) {
		case map[string]any:
			if f, ok := v[name].(float64); ok {
				return f, true
			}
			for _, c := range v {
				if f, ok := walk(c); ok {
					return f, true
				}
			}
		case []any:
			for _, c := range v {
				if f, ok := walk(c); ok {
					return f, true
				}
			}
		}
		return 0, false
	}
	return walk(v)
}

func jsonEqual(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// countRan returns how many of the jobs in ids worker w's log names.
func countRan[V any](w *proc, ids map[string]V) int {
	n := 0
	for id := range w.jobIDs() {
		if _, ok := ids[id]; ok {
			n++
		}
	}
	return n
}

// checkTTLs asserts every staged:* key has a TTL.
func checkTTLs(t *testing.T, s *stack) {
	t.Helper()
	keys := s.stagedKeys()
	if len(keys) == 0 {
		t.Errorf("no staged:* keys in Redis after running jobs")
	}
	ctx := context.Background()
	for _, k := range keys {
		ttl, err := s.rdb.PTTL(ctx, k).Result()
		if err != nil {
			t.Errorf("PTTL %s: %v", k, err)
			continue
		}
		// -2ns: expired since SCAN; -1ns: no TTL (go-redis returns the raw reply).
		if ttl < 0 && ttl != -2 {
			t.Errorf("key %s has no TTL (PTTL %v): every staged key must expire", k, ttl)
		}
	}
	t.Logf("checked TTLs of %d staged:* keys", len(keys))
}

func stageNames(j *job) string {
	var n []string
	for _, st := range j.Stages {
		n = append(n, st.Name)
	}
	return strings.Join(n, ",")
}
