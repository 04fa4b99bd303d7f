package tasks

import (
	"bytes"
	"encoding/json"
	"testing"
)

// fastSchemas are schemas InputSchema gives a fast path, for
// FuzzFastInput: InputOf's kind, a pipelines file's kind (no
// additionalProperties, a fractional default), required fields, a default
// out of range, negative and one-sided bounds, booleans.
var fastSchemas = []string{
	`{"$schema":"https://json-schema.org/draft/2020-12/schema","additionalProperties":false,"properties":{"ms":{"default":1000,"description":"d","maximum":3600000,"minimum":0,"type":"integer"},"stages":{"default":4,"maximum":100,"minimum":1,"type":"integer"}},"type":"object"}`,
	`{"type":"object","properties":{"data":{"type":"string","default":"hello"},"steps":{"type":"integer","default":5},"delay":{"type":"number","default":0.4}}}`,
	`{"type":"object","properties":{"url":{"type":"string"},"depth":{"type":"integer","default":0,"minimum":1},"t":{"type":"number","minimum":-5,"maximum":-1}},"required":["url"],"additionalProperties":false}`,
	`{"type":"object","properties":{"on":{"type":"boolean","default":true},"n":{"type":"number","maximum":10,"default":2},"s":{"type":"string","default":"a<b"},"x":{"type":"integer"}},"additionalProperties":{"type":"string"}}`,
	`{"type":"object"}`,
	`{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","properties":{"n":{"type":"integer","minimum":1,"maximum":9}},"required":["n"]}`,
}

var fastInputs = []string{
	``, `null`, ` null `, `{}`, ` { } `, `[]`, `1`, `"x"`, `{`, `{"a"}`, `{"ms":0}`, `{"ms":0,"stages":4}`,
	`{"stages":4,"ms":0}`, "{\n\t\"stages\" : 100 ,\r\n \"ms\":3600000 }", `{"stages":0}`, `{"stages":101}`,
	`{"stages":-0}`, `{"stages":1.0}`, `{"stages":1e1}`, `{"stages":"4"}`, `{"stages":null}`, `{"stages":4,"stages":5}`,
	`{"Stages":4}`, `{"st\u0061ges":4}`, `{"stages":4,}`, `{"stages":4} x`, `{"stages":4}{}`, `{"stages":007}`,
	`{"stages":99999999999999999999}`, `{"ms":-1}`, `{"ms":3600001}`, `{"data":"x","steps":3,"delay":0.5}`,
	`{"data":"a\"b"}`, `{"data":"a<b"}`, `{"data":"é"}`, `{"data":"\u00e9"}`, `{"data":"\ud800"}`, "{\"data\":\"\xff\"}",
	`{"delay":1e400}`, `{"delay":-0.0}`, `{"steps":12345678901234567890123}`, `{"steps":-3}`, `{"other":1}`,
	`{"url":"u"}`, `{"url":"u","depth":1}`, `{"url":"u","t":-5}`, `{"url":"u","t":-6}`, `{"url":"u","t":-1.5}`,
	`{"on":false}`, `{"on":true,"n":10}`, `{"on":tru}`, `{"n":10.5}`, `{"n":-1e3}`, `{"s":"ok","x":12}`, `{"y":"z"}`,
	`{"n":5}`, `{"n":0}`, `{"n":9}`, `{"data":""}`, `{"data":"tab\tin"}`, "\u00a0{\"ms\":1}\u00a0",
}

// FuzzFastInput: whatever the fast path accepts, the jsonschema library
// accepts too, normalised to the same bytes; and the fast path is what
// Normalize returns. (What the fast path leaves to the library, the
// library decides, so refusals need no comparison.)
func FuzzFastInput(f *testing.F) {
	var specs []*InputSpec
	for _, s := range fastSchemas {
		spec, err := InputSchema(json.RawMessage(s))
		if err != nil {
			f.Fatalf("InputSchema(%s): %v", s, err)
		}
		if spec.fast == nil {
			f.Fatalf("InputSchema(%s) has no fast path", s)
		}
		specs = append(specs, spec)
	}
	for i := range specs {
		for _, in := range fastInputs {
			f.Add(uint8(i), []byte(in))
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, raw []byte) {
		spec := specs[int(which)%len(specs)]
		fast, ok := spec.fast.normalize(raw)
		if !ok {
			return
		}
		slow, err := spec.decode(raw)
		if err != nil || !bytes.Equal(fast, slow) {
			t.Fatalf("schema %d, input %q: fast path %s, library %s, %v", int(which)%len(specs), raw, fast, slow, err)
		}
		if got, err := spec.Normalize(raw); err != nil || !bytes.Equal(got, fast) {
			t.Fatalf("Normalize(%q) = %s, %v; the fast path said %s", raw, got, err, fast)
		}
	})
}

// TestFastInputTaken: plain inputs of InputOf's schemas take the fast path
// (one allocation, where the library takes dozens), and schemas with a
// keyword it does not know have none.
func TestFastInputTaken(t *testing.T) {
	type in struct {
		Stages int    `json:"stages" doc:"1..100" jsonschema:"minimum=1,maximum=100"`
		MS     int    `json:"ms" jsonschema:"minimum=0,maximum=3600000"`
		Name   string `json:"name"`
		Deep   bool   `json:"deep"`
	}
	spec, err := InputSchema(InputOf(in{Stages: 4, MS: 1000, Name: "x"}, nil).Schema)
	if err != nil {
		t.Fatal(err)
	}
	if spec.fast == nil {
		t.Fatal("InputOf's schema has no fast path")
	}
	raw := json.RawMessage(`{"stages":4,"ms":0}`)
	want := `{"deep":false,"ms":0,"name":"x","stages":4}`
	if out, err := spec.Normalize(raw); err != nil || string(out) != want {
		t.Fatalf("Normalize = %s, %v; want %s", out, err, want)
	}
	if n := testing.AllocsPerRun(100, func() { spec.Normalize(raw) }); n > 1 {
		t.Errorf("Normalize of a plain input: %v allocations, want 1 (the fast path)", n)
	}
	for _, s := range []string{
		`{"type":"object","properties":{"n":{"type":"integer","enum":[1,2]}}}`,
		`{"type":"object","properties":{"n":{"type":"integer","minimum":0.5}}}`,
		`{"type":"object","properties":{"n":{"type":["integer","null"]}}}`,
		`{"type":"object","properties":{"n":{"type":"integer"}},"minProperties":1}`,
		`{"type":"object","properties":{"s":{"type":"string","maxLength":3}}}`,
		`{"type":"object","properties":{"o":{"type":"object"}}}`,
	} {
		spec, err := InputSchema(json.RawMessage(s))
		if err != nil {
			t.Fatal(err)
		}
		if spec.fast != nil {
			t.Errorf("InputSchema(%s) has a fast path", s)
		}
	}
}

func BenchmarkNormalizeSchema(b *testing.B) {
	spec, err := InputSchema(json.RawMessage(fastSchemas[0]))
	if err != nil {
		b.Fatal(err)
	}
	raw := json.RawMessage(`{"stages":4,"ms":0}`)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			spec.Normalize(raw)
		}
	})
	b.Run("library", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			spec.decode(raw)
		}
	})
}
