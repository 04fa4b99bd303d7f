package api

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// Strings, raw values, times and numbers that stress encoding/json's
// output: escapes, invalid UTF-8, U+2028, HTML characters (not escaped by
// Marshal), whitespace and invalid JSON in raw values, zones, years out of
// RFC 3339's range, exponent cutoffs.
var (
	testStrings = []string{"", "a", "stage1", "sleep", "default", "sha256:abc",
		`say "hi"`, `back\slash`, "tab\there", "nl\n", "cr\r", "\b\f", "\x00\x01\x1f\x7f",
		"ünïcode ✓", "\u2028\u2029", "bad \xff utf8 \xc3", "<a>&amp;</a>", "->",
		"/v1/jobs/0b8e2c4e-52e5-4c0e-9a43-5c7e3d3a2f10", "emoji 🎉 \U0010FFFF"}
	testRaws = []json.RawMessage{nil, json.RawMessage(`null`), json.RawMessage(`{}`), json.RawMessage(`[]`),
		json.RawMessage(`{"stage":1,"slept_ms":0}`), json.RawMessage(`"x"`), json.RawMessage(`-0.5e+3`),
		json.RawMessage(`{"a":[1,true,false,null,{"b":"c \" \\ \u00e9 \n"}],"<":"&"}`),
		json.RawMessage(` { "a" : [ 1 , 2 ] } `), json.RawMessage("{\n\t\"x\": \"y z\"\r\n}"),
	}
	// testBadRaws are not JSON: encoding/json refuses them.
	testBadRaws = []json.RawMessage{json.RawMessage{}, json.RawMessage(`{`), json.RawMessage(`{"a":1}x`), json.RawMessage(`01`),
		json.RawMessage(`"\x"`), json.RawMessage("\"a\x01\""), json.RawMessage(`1.`), json.RawMessage(`tru`),
		json.RawMessage("\"\xff\u2028\""), json.RawMessage(`[1,]`), json.RawMessage(`{"a"}`)}
	testFloats = []float64{0, math.Copysign(0, -1), 1, 0.375, 1.0 / 3, 1e-6, 9.99e-7, 1e-7, 1e20, 1e21, 123456789e15,
		-2.5e-10, math.SmallestNonzeroFloat64, math.MaxFloat64}
	testBadFloats = []float64{math.NaN(), math.Inf(1), math.Inf(-1)}
	testZones     = []*time.Location{time.UTC, time.FixedZone("", 3600), time.FixedZone("X", -(5*3600 + 30*60)),
		time.FixedZone("", 45), time.FixedZone("", 23*3600+59*60)}
)

// randomJob returns a record built from the pools above.
func randomJob(r *rand.Rand) *Job {
	str := func() string { return testStrings[r.IntN(len(testStrings))] }
	raw := func() json.RawMessage {
		if r.IntN(50) == 0 {
			return testBadRaws[r.IntN(len(testBadRaws))]
		}
		return testRaws[r.IntN(len(testRaws))]
	}
	float := func() float64 {
		if r.IntN(50) == 0 {
			return testBadFloats[r.IntN(len(testBadFloats))]
		}
		return testFloats[r.IntN(len(testFloats))]
	}
	tm := func() time.Time {
		sec := r.Int64N(4e9) - 1e9 // 1938..2096
		switch r.IntN(400) {
		case 0:
			return time.Time{}
		case 1:
			sec = -70e9 // year < 0
		case 2:
			sec = 300e9 // year > 9999
		case 3:
			return time.Unix(sec, 0).In(time.FixedZone("", 24*3600)) // an offset RFC 3339 cannot say
		}
		return time.Unix(sec, r.Int64N(1e9)*int64(r.IntN(2))).In(testZones[r.IntN(len(testZones))])
	}
	tp := func() *time.Time {
		if r.IntN(3) == 0 {
			return nil
		}
		t := tm()
		return &t
	}
	num := func() int { return r.IntN(2000) - 1000 + r.IntN(2)*math.MaxInt*(1-2*r.IntN(2)) }
	j := &Job{ID: str(), Type: str(), State: State(str()), Stage: StageRef{Index: num(), Name: str(), Total: num()},
		Progress: float(), Partial: raw(), Result: raw(), Attempt: num(), Queue: str(),
		CreatedAt: tm(), StartedAt: tp(), UpdatedAt: tm(), FinishedAt: tp(), ExpiresAt: tm(),
		Links: Links{Self: str(), Events: str(), Page: str()}}
	if r.IntN(2) == 0 {
		j.Digest = str()
	}
	j.CancelRequested = r.IntN(2) == 0
	j.NextAttemptAt = tp()
	if r.IntN(2) == 0 {
		j.Error = &JobError{Stage: str(), Message: str()}
	}
	if n := r.IntN(6) - 1; n >= 0 {
		j.Stages = make([]StageStatus, n)
		for i := range j.Stages {
			j.Stages[i] = StageStatus{Name: str(), State: State(str()), Attempts: num(), StartedAt: tp(), FinishedAt: tp()}
		}
	}
	return j
}

// checkMarshal fails t unless Marshal and encoding/json agree on j (the
// same bytes, or both an error) and the fast path takes j exactly when
// encoding/json accepts it. It reports whether j was accepted.
func checkMarshal(t *testing.T, j *Job) bool {
	t.Helper()
	want, werr := marshalJSON(j)
	got, err := Marshal(j)
	if (err == nil) != (werr == nil) || !bytes.Equal(got, want) {
		t.Fatalf("Marshal of %+v:\n got %s, %v\nwant %s, %v", j, got, err, want, werr)
	}
	if _, fast := appendJob(nil, j); fast != (werr == nil) {
		t.Fatalf("the fast path took %+v: %v; encoding/json's error: %v", j, fast, werr)
	}
	return werr == nil
}

// Marshal writes a record without reflection to the bytes encoding/json
// writes, and leaves what it cannot write so to encoding/json.
func TestMarshalJob(t *testing.T) {
	now := time.Date(2026, 12, 1, 3, 4, 5, 123456789, time.UTC)
	later := now.Add(1500 * time.Millisecond).In(time.FixedZone("", 3600))
	running := &Job{ID: "0b8e2c4e-52e5-4c0e-9a43-5c7e3d3a2f10", Type: "train", State: StateRunning,
		Stage: StageRef{Index: 2, Name: "fit", Total: 2}, Progress: 0.375, Attempt: 2, Queue: "gpu", Digest: "sha256:abc",
		Stages: []StageStatus{{Name: "prep", State: StateSucceeded, Attempts: 1, StartedAt: &now, FinishedAt: &later},
			{Name: "fit", State: StateRunning, Attempts: 2, StartedAt: &later}},
		Partial: json.RawMessage(`{"epoch":3}`), CancelRequested: true, NextAttemptAt: &later,
		CreatedAt: now, StartedAt: &now, UpdatedAt: later, ExpiresAt: now.Add(time.Hour), Links: LinksFor("0b8e2c4e-52e5-4c0e-9a43-5c7e3d3a2f10")}
	if !checkMarshal(t, running) || !checkMarshal(t, &Job{}) {
		t.Fatal("the fast path refused a record staged writes")
	}
	r := rand.New(rand.NewPCG(14, 2026))
	accepted := 0
	const n = 20000
	for range n {
		if checkMarshal(t, randomJob(r)) {
			accepted++
		}
	}
	if accepted < n/2 || accepted == n {
		t.Errorf("encoding/json accepted %d of %d records: want most, not all", accepted, n)
	}
}

// FuzzMarshalJob: Marshal of a record is encoding/json's answer, byte for
// byte.
//
//	go test -run='^$' -fuzz='^FuzzMarshalJob$' -fuzztime=30s ./api/
func FuzzMarshalJob(f *testing.F) {
	f.Add("0b8e2c4e", "sleep", "running", "stage1", `say "hi" ✓`, []byte(`{"stage":1}`), []byte(`null`), 0.375, int64(1764558245), int64(123456789), 3600, uint8(0xff), 4)
	f.Add("", "\xff", "\u2028", "\x00", "<&>", []byte(` [ 1 ] `), []byte(`{`), 1e-7, int64(-70e9), int64(0), 0, uint8(0), 0)
	f.Fuzz(func(t *testing.T, id, typ, name, msg, queue string, partial, result []byte, progress float64, sec, nsec int64, offset int, flags uint8, stages int) {
		at := time.Unix(sec, nsec).In(time.FixedZone("", offset))
		var pat *time.Time
		if flags&1 != 0 {
			pat = &at
		}
		j := &Job{ID: id, Type: typ, State: State(name), Stage: StageRef{Index: stages, Name: name, Total: int(sec)},
			Progress: progress, Partial: partial, Result: result, Attempt: offset, Queue: queue,
			CancelRequested: flags&2 != 0, CreatedAt: at, StartedAt: pat, UpdatedAt: at, FinishedAt: pat, ExpiresAt: at,
			Links: Links{Self: id, Events: msg, Page: queue}}
		if flags&4 != 0 {
			j.Digest = msg
		}
		if flags&8 != 0 {
			j.NextAttemptAt = &at
		}
		if flags&16 != 0 {
			j.Error = &JobError{Stage: name, Message: msg}
		}
		if flags&32 != 0 {
			j.Stages = make([]StageStatus, min(max(stages, 0), 8))
			for i := range j.Stages {
				j.Stages[i] = StageStatus{Name: name, State: State(typ), Attempts: i, StartedAt: pat, FinishedAt: &at}
			}
		}
		checkMarshal(t, j)
	})
}

func BenchmarkMarshalJob(b *testing.B) {
	now := time.Date(2026, 12, 1, 3, 4, 5, 123456789, time.UTC)
	j := &Job{ID: "0b8e2c4e-52e5-4c0e-9a43-5c7e3d3a2f10", Type: "sleep", State: StateSucceeded,
		Stage: StageRef{Index: 4, Name: "stage4", Total: 4}, Progress: 1, Result: json.RawMessage(`{"stage":4,"slept_ms":0}`),
		Attempt: 1, Queue: "default", Digest: "0123456789abcdef", CreatedAt: now, StartedAt: &now, UpdatedAt: now,
		FinishedAt: &now, ExpiresAt: now.Add(24 * time.Hour), Links: LinksFor("0b8e2c4e-52e5-4c0e-9a43-5c7e3d3a2f10")}
	for k := range 4 {
		j.Stages = append(j.Stages, StageStatus{Name: "stage" + string(rune('1'+k)), State: StateSucceeded, Attempts: 1, StartedAt: &now, FinishedAt: &now})
	}
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Marshal(j); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := marshalJSON(j); err != nil {
				b.Fatal(err)
			}
		}
	})
}
