package tasks

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"testing"

	"github.com/staged-dev/staged/internal/flatstruct/flattest"
)

type (
	flatCase struct {
		A int `json:"name"`
		B int `json:"Name"`
	}
	flatCustom struct{ X int }
	flatDash   struct {
		D int `json:"-,"`
	}
	flatMap map[string]int
)

func (c *flatCustom) UnmarshalJSON([]byte) error { return nil }

// flatInputs are JSON texts the fast path takes or leaves to
// encoding/json; the fuzz target starts from them.
var flatInputs = []string{
	`{}`, ` { } `, "{\n\t\"i\": 1,\r\n \"s\": \"x\"}\n", `{"i":-42,"i8":-128,"u16":65535,"u":7,"f":-0.5e+3,"f32":1.5,"s":"ünï ✓ <&>","n":"name","b":true}`,
	`{"i":1,"i":2}`, `{"i":-0}`, `{"f":1E400}`, `{"f32":1e39}`, `{"i8":128}`, `{"u16":-1}`, `{"u":-0}`, `{"i":1.0}`, `{"i":1e2}`,
	`{"i":01}`, `{"i":-}`, `{"i":"1"}`, `{"s":1}`, `{"b":"true"}`, `{"b":null}`, `{"i":null}`, `null`, ``, ` `, `[]`, `"x"`,
	`{"I":1}`, `{"Untaged":3}`, `{"untaged":3}`, `{"Skipped":1}`, `{"-":1}`, `{"hidden":1}`, `{"x":1}`,
	`{"s":"a\"b"}`, `{"s":"a\u0062"}`, "{\"s\":\"a\x01\"}", "{\"s\":\"\xff\"}", `{"s":"a`, `{"i":1`, `{"i":1,}`, `{"i" 1}`, `{i:1}`,
	`{"i":1} `, `{"i":1} x`, `{"i":1}{}`, `{"i":1}]`, `{"b":tru}`, `{"b":false}`, `{"f":.5}`, `{"f":5.}`, `{"f":1e}`,
	`{"i":9223372036854775807}`, `{"i":9223372036854775808}`, `{"i":-9223372036854775808}`, `{"i":999999999999999999}`, `{"i8":-129}`, `{"i8":127}`, `{"u":18446744073709551615}`, `{"f32":3.4028235e38}`,
}

// checkFlat fails t unless decodeStrict of raw into a T is what encoding/json
// gives (value and error), and the fast path, when it takes raw, decodes
// what encoding/json does. It reports whether the fast path took raw.
func checkFlat[T any](t *testing.T, raw []byte) bool {
	t.Helper()
	want, werr := decodeJSON[T](whom{"stage ", "s"}, "in", raw)
	got, err := decodeStrict[T](whom{"stage ", "s"}, "in", raw)
	if !reflect.DeepEqual(got, want) || !sameError(err, werr) {
		t.Fatalf("decodeStrict(%q) = %+v, %v; encoding/json: %+v, %v", raw, got, err, want, werr)
	}
	d := flatDecoders.Get(reflect.TypeFor[T]())
	if d == nil {
		return false
	}
	var v T
	if !d.decode(raw, &v) {
		return false
	}
	if werr != nil || !reflect.DeepEqual(v, want) {
		t.Fatalf("the fast path decoded %q to %+v; encoding/json: %+v, %v", raw, v, want, werr)
	}
	return true
}

func sameError(a, b error) bool {
	if a == nil || b == nil {
		return a == b
	}
	var ea, eb *Error
	return errors.As(a, &ea) && errors.As(b, &eb) && ea.Code == eb.Code && ea.Field == eb.Field && ea.Message == eb.Message
}

// The fast path takes plain objects of flat structs and decodes them as
// encoding/json does; it leaves every other text and type to encoding/json.
func TestFlatDecoder(t *testing.T) {
	fast := 0
	for _, in := range flatInputs {
		if checkFlat[flattest.All](t, []byte(in)) {
			fast++
		}
	}
	for _, in := range []string{`{}`, `{"i":1,"s":"x","b":false,"f":0.25}`, `{"i":1,"i":2}`, ` {"n":"a"} `} {
		if !checkFlat[flattest.All](t, []byte(in)) {
			t.Errorf("the fast path refused %s", in)
		}
	}
	if fast < 10 || fast == len(flatInputs) {
		t.Errorf("the fast path took %d of %d inputs", fast, len(flatInputs))
	}
	for name, typ := range map[string]reflect.Type{
		"embedded": reflect.TypeFor[flattest.Embedded](), "pointer": reflect.TypeFor[flattest.Pointer](),
		",string": reflect.TypeFor[flattest.Quoted](), "names equal but for case": reflect.TypeFor[flatCase](),
		"time.Time": reflect.TypeFor[flattest.Time](), "UnmarshalJSON": reflect.TypeFor[flatCustom](),
		"name -": reflect.TypeFor[flatDash](), "map": reflect.TypeFor[flatMap](), "int": reflect.TypeFor[int](),
		"any": reflect.TypeFor[any](), "RawMessage": reflect.TypeFor[json.RawMessage](),
	} {
		if newFlatDecoder(typ) != nil {
			t.Errorf("%s: %s has a fast path", name, typ)
		}
	}
	for _, in := range []string{`{"p":1}`, `{"n":"1"}`, `{"name":1,"Name":2}`, `{"t":"2026-12-01T00:00:00Z"}`, `{"X":1}`, `{"-":1}`} {
		checkFlat[flattest.Pointer](t, []byte(in))
		checkFlat[flattest.Quoted](t, []byte(in))
		checkFlat[flatCase](t, []byte(in))
		checkFlat[flattest.Time](t, []byte(in))
		checkFlat[flatCustom](t, []byte(in))
		checkFlat[flatDash](t, []byte(in))
	}
}

// normalizeJSON is InputOf's Normalize of flattest.All by encoding/json, as it
// was before the fast path.
func normalizeJSON(raw json.RawMessage, defaults flattest.All) (json.RawMessage, error) {
	raw, err := normalizeObject(raw)
	if err != nil {
		return nil, err
	}
	v := defaults
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return nil, inputDecodeError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, &Error{Code: EINVALID, Field: "input", Message: "input has trailing data after the JSON object"}
	}
	return json.Marshal(v)
}

var flatDefaults = flattest.All{I: 3, S: "def", B: true, F: 0.5, Untaged: 9}

func checkNormalize(t *testing.T, spec *InputSpec, raw []byte) {
	t.Helper()
	got, err := spec.Normalize(raw)
	want, werr := normalizeJSON(raw, flatDefaults)
	if !bytes.Equal(got, want) || !sameError(err, werr) {
		t.Fatalf("Normalize(%q) = %s, %v; encoding/json: %s, %v", raw, got, err, want, werr)
	}
}

// Normalize takes its fast path without changing its answers.
func TestNormalizeFlat(t *testing.T) {
	spec := InputOf(flatDefaults, nil)
	for _, in := range append(flatInputs, "\u00a0{}", "{} \u00a0") {
		checkNormalize(t, spec, []byte(in))
	}
}

// FuzzFlatDecoder: decodeStrict and Normalize of a flat struct give
// encoding/json's answers, and what the fast path takes, encoding/json
// decodes to the same value.
//
//	go test -run='^$' -fuzz='^FuzzFlatDecoder$' -fuzztime=30s ./tasks/
func FuzzFlatDecoder(f *testing.F) {
	for _, in := range flatInputs {
		f.Add([]byte(in))
	}
	spec := InputOf(flatDefaults, nil)
	f.Fuzz(func(t *testing.T, raw []byte) {
		checkFlat[flattest.All](t, raw)
		checkNormalize(t, spec, raw)
	})
}

func BenchmarkDecodeStrict(b *testing.B) {
	type out struct {
		Stage   int `json:"stage"`
		SleptMS int `json:"slept_ms"`
	}
	raw := json.RawMessage(`{"stage":1,"slept_ms":0}`)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeStrict[out](whom{"stage ", "s"}, "in", raw); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeJSON[out](whom{"stage ", "s"}, "in", raw); err != nil {
				b.Fatal(err)
			}
		}
	})
}
