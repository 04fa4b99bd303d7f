package store

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/tasks"
)

// records returns records as staged writes them: new, running, finished.
func records(t testing.TB) [][]byte {
	now := time.Date(2026, 12, 1, 3, 4, 5, 123456789, time.UTC)
	st := func(n string) tasks.Stage { return tasks.Stage{Name: n} }
	fresh := NewJobWith("chain", []tasks.Stage{st("a"), st("b"), st("c")}, "default", now)
	running := NewJobWith("train", []tasks.Stage{st("prep"), st("fit")}, "gpu", now)
	running.State, running.Attempt, running.Progress, running.Digest = api.StateRunning, 2, 0.375, "sha256:abc"
	running.Stage = api.StageRef{Index: 2, Name: "fit", Total: 2}
	later := now.Add(1500 * time.Millisecond).In(time.FixedZone("", 3600))
	running.StartedAt, running.CancelRequested, running.NextAttemptAt = &now, true, &later
	running.Stages[0] = api.StageStatus{Name: "prep", State: api.StateSucceeded, Attempts: 1, StartedAt: &now, FinishedAt: &later}
	running.Stages[1] = api.StageStatus{Name: "fit", State: api.StateRunning, Attempts: 2, StartedAt: &later}
	running.Partial = json.RawMessage(`{"epoch":3,"loss":1.5e-3,"note":"a \"quoted\" ünïcode\n","xs":[1,-2,true,null,{}]}`)
	failed := NewJobWith("sleep", []tasks.Stage{st("s")}, "", now)
	failed.State, failed.FinishedAt = api.StateFailed, &later
	failed.Error = &api.JobError{Stage: "s", Message: "exit status 2: ünïcode"}
	failed.Result = json.RawMessage(`"x"`)
	failed.Stages = []api.StageStatus{}
	var out [][]byte
	for _, j := range []*api.Job{fresh, running, failed} {
		b, err := api.Marshal(j)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// fast reports whether the fast path takes b.
func fast(b []byte) (*api.Job, bool) {
	d := newStringDecoder(string(b))
	var j api.Job
	return &j, d.job(&j) && d.end()
}

// decodeRecord takes staged's records on its fast path and decodes them
// as api.DecodeJob does; what it does not take it hands to api.DecodeJob.
func TestDecodeRecord(t *testing.T) {
	for _, b := range records(t) {
		want, err := api.DecodeJob(b)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := fast(b)
		if !ok {
			t.Fatalf("the fast path refused a record staged writes: %s", b)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("fast path: %+v\nencoding/json: %+v\nrecord %s", got, want, b)
		}
		if got, err := decodeRecord(string(b)); err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("decodeRecord: %+v, %v", got, err)
		}
	}
	for _, b := range []string{
		`{"id":"a\u0062"}`,           // an escape
		`{"id":"a","ID":"b"}`,        // another case: encoding/json matches it
		`{"id":"a","id":"b"}`,        // a key twice
		`{"stage":{"index":1.5}}`,    // not an int: an error
		`{"stages":[null]}`,          // null stage
		`{"created_at":"yesterday"}`, // bad time
		`{"id":"a"} x`,               // trailing data
		`{"result":"\x"}`,            // bad escape
		`{"unknown":1,"id":"a"}`,     // unknown key
	} {
		if _, ok := fast([]byte(b)); ok {
			t.Errorf("the fast path took %s", b)
		}
		want, werr := api.DecodeJob([]byte(b))
		got, err := decodeRecord(b)
		if (err == nil) != (werr == nil) || (err == nil && !reflect.DeepEqual(got, want)) {
			t.Errorf("decodeRecord(%s) = %+v, %v; api.DecodeJob: %+v, %v", b, got, err, want, werr)
		}
	}
}

// decodeOptions decodes options as json.Unmarshal does.
func TestDecodeOptions(t *testing.T) {
	for _, b := range []string{
		`{"retention":3600000000000,"timeout":0,"max_retries":3,"queue":"gpu"}`,
		`{}`, `null`, `{"queue":null,"timeout":-5}`,
		`{"retention":1.5}`, `{"queue":"a\u0062"}`, `{"Queue":"x"}`, `{"other":1}`, `[`, `{"timeout":"1s"}`,
	} {
		var got, want api.Options
		decodeOptions(b, &got)
		_ = json.Unmarshal([]byte(b), &want)
		if got != want {
			t.Errorf("decodeOptions(%s) = %+v, json.Unmarshal: %+v", b, got, want)
		}
	}
	o := api.Options{Retention: time.Hour, Timeout: time.Minute, MaxRetries: 2, Queue: "q"}
	b, _ := api.Marshal(o)
	var got api.Options
	decodeOptions(string(b), &got)
	if got != o {
		t.Errorf("decodeOptions(%s) = %+v, want %+v", b, got, o)
	}
}

// FuzzDecodeRecord: what the fast path takes, encoding/json decodes to the
// same api.Job.
//
//	go test -run='^$' -fuzz='^FuzzDecodeRecord$' -fuzztime=30s ./internal/store/
func FuzzDecodeRecord(f *testing.F) {
	for _, b := range records(f) {
		f.Add(b)
	}
	f.Add([]byte(`{"id":"a","progress":-0.5e+3,"partial":[1,{"a":"\u00e9\n"}],"error":null,"stages":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := fast(b)
		if !ok {
			return
		}
		var want api.Job
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatalf("the fast path took %q, which encoding/json refuses: %v", b, err)
		}
		if !reflect.DeepEqual(got, &want) {
			t.Fatalf("%q: fast path %+v, encoding/json %+v", b, got, &want)
		}
	})
}

func BenchmarkDecodeRecord(b *testing.B) {
	rec := string(records(b)[1])
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeRecord(rec); err != nil {
			b.Fatal(err)
		}
	}
}
