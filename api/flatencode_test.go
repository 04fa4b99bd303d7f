package api

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/staged-dev/staged/internal/flatstruct/flattest"
)

type (
	flatTwice struct {
		A int
		B int `json:"A"` // encoding/json writes this one
	}
	flatCustom struct{ X int }
	flatOdd    struct {
		X int `json:"a-b"`
	}
)

func (flatCustom) MarshalJSON() ([]byte, error) { return []byte(`1`), nil }

// checkFlat fails t unless Marshal(v) is encoding/json's answer, byte for
// byte, and the fast path takes v exactly when encoding/json accepts it.
func checkFlat(t *testing.T, v any) {
	t.Helper()
	want, werr := marshalJSON(v)
	got, err := Marshal(v)
	if (err == nil) != (werr == nil) || !bytes.Equal(got, want) {
		t.Fatalf("Marshal(%+v) = %s, %v; encoding/json: %s, %v", v, got, err, want, werr)
	}
	if e := flatEncoders.Get(reflect.TypeOf(v)); e != nil {
		if _, ok := e.appendStruct(nil, reflect.ValueOf(v)); ok != (werr == nil) {
			t.Fatalf("the fast path took %+v: %v; encoding/json's error: %v", v, ok, werr)
		}
	}
}

// Marshal writes flat structs without encoding/json, to its bytes; other
// types go to encoding/json.
func TestFlatEncoder(t *testing.T) {
	if flatEncoders.Get(reflect.TypeFor[flattest.All]()) == nil {
		t.Fatal("flattest.All has no fast path")
	}
	for name, typ := range map[string]reflect.Type{
		"embedded": reflect.TypeFor[flattest.Embedded](), "pointer": reflect.TypeFor[flattest.Pointer](),
		",string": reflect.TypeFor[flattest.Quoted](), "a name twice": reflect.TypeFor[flatTwice](),
		"time.Time": reflect.TypeFor[flattest.Time](), "MarshalJSON": reflect.TypeFor[flatCustom](),
		"name a-b": reflect.TypeFor[flatOdd](), "map": reflect.TypeFor[map[string]int](), "int": reflect.TypeFor[int](),
		"*flattest.All": reflect.TypeFor[*flattest.All](), "Options (durations)": nil,
	} {
		if typ != nil && newFlatEncoder(typ) != nil {
			t.Errorf("%s: %s has a fast path", name, typ)
		}
	}
	for _, v := range []any{flattest.Embedded{X: 1}, flattest.Pointer{}, flattest.Quoted{N: 2}, flatTwice{1, 2}, flattest.Time{}, flatCustom{}, flatOdd{3},
		nil, 1, "x", map[string]int{"a": 1}, &flattest.All{I: 1}, json.RawMessage(` [1] `), Options{Timeout: time.Second}} {
		checkFlat(t, v)
	}
	floats := append([]float64{math.NaN(), math.Inf(1), math.Inf(-1), math.MaxFloat32, 1e38, 3.4e38}, testFloats...)
	r := rand.New(rand.NewPCG(14, 2027))
	str := func() string { return testStrings[r.IntN(len(testStrings))] }
	for range 5000 {
		f := floats[r.IntN(len(floats))]
		if r.IntN(20) > 0 && (math.IsNaN(f) || math.IsInf(f, 0)) {
			f = 0.25
		}
		v := flattest.All{I: r.IntN(2000) - 1000, I8: int8(r.IntN(256) - 128), U16: uint16(r.IntN(65536)), U: uint(r.Uint64() >> r.IntN(64)),
			F: f, F32: float32(floats[r.IntN(len(floats))]), FE: []float64{0, math.Copysign(0, -1), 1}[r.IntN(3)],
			S: str(), SE: str(), N: flattest.Name(str()), B: r.IntN(2) == 0, BE: r.IntN(2) == 0, Untaged: r.Int(), Skipped: 1}
		if math.IsNaN(float64(v.F32)) || math.IsInf(float64(v.F32), 0) {
			if r.IntN(20) > 0 {
				v.F32 = 1.5
			}
		}
		checkFlat(t, v)
	}
}

// FuzzFlatEncoder: Marshal of a flat struct is encoding/json's answer, byte
// for byte.
//
//	go test -run='^$' -fuzz='^FuzzFlatEncoder$' -fuzztime=30s ./api/
func FuzzFlatEncoder(f *testing.F) {
	f.Add(int64(3), uint64(7), 0.375, float32(1.5), "x", `say "hi" <&> ✓`, true)
	f.Add(int64(-1), uint64(0), 1e21, float32(1e-7), "\xff\u2028", "", false)
	f.Fuzz(func(t *testing.T, i int64, u uint64, fl float64, f32 float32, s, s2 string, b bool) {
		checkFlat(t, flattest.All{I: int(i), I8: int8(i), U16: uint16(u), U: uint(u), F: fl, F32: f32, FE: fl, S: s, SE: s2, N: flattest.Name(s2), B: b, BE: b})
	})
}

func BenchmarkMarshalOutput(b *testing.B) {
	type out struct {
		Stage   int `json:"stage"`
		SleptMS int `json:"slept_ms"`
	}
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Marshal(out{Stage: 3}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := marshalJSON(out{Stage: 3}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
