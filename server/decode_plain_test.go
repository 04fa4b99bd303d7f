package server

import (
	"bytes"
	"reflect"
	"testing"
)

var plainBodies = []string{
	`{"type":"sleep","input":{"stages":4,"ms":0},"queue":"bench"}`,
	` { "type" : "double" , "input" : {"n":3} } `,
	`{"type":"double","input":{"n":101},"max_retries":3,"retention":"1h","timeout":"2m","queue":"q"}`,
	`{}`, `{"type":null,"input":null,"max_retries":null,"queue":null}`, `{"input":[1,"a",true,null,{"x":[]}]}`,
	`{"max_retries":-0}`, `{"max_retries":1.0}`, `{"max_retries":1e2}`, `{"max_retries":99999999999999999999}`,
	`{"max_retries":"3"}`, `{"type":3}`, `{"type":"a\"b"}`, `{"type":"é"}`, "{\"type\":\"\xff\"}", `{"type":"<&>"}`,
	`{"Type":"x"}`, `{"type":"x","type":"y"}`, `{"input":{"a":1,"a":2}}`, `{"input":{"a":{"b":1,"b":2}}}`,
	`{"input":{"a":1,"b":{"a":1}}}`, `{"nope":1}`, `{"type":"x"} `, `{"type":"x"}x`, `{"type":"x"}{}`, `[]`, ``, `null`,
	`{"type":"x",}`, `{"input":01}`, `{"input":{"s":"\u0041"}}`, `{"input":"` + "\t" + `"}`, `{"input":tru}`, `{"input":[1,]}`,
	`{"input":{"n":-1.5e+3}}`, "\u00a0{}", "{}\u00a0", `{"input":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]}`,
}

// FuzzDecodePlain: whatever decodePlain accepts, decodeFull (jsontext and
// encoding/json) accepts too, with the same value; so the fast way changes
// no verdict and no message. It also takes the common submits.
func FuzzDecodePlain(f *testing.F) {
	for _, b := range plainBodies {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var fast, full submitRequest
		if !decodePlain(body, &fast) {
			return
		}
		if err := decodeFull(body, &full); err != nil {
			t.Fatalf("decodePlain(%q) = %+v, decodeFull: %v", body, fast, err)
		}
		if !reflect.DeepEqual(fast, full) {
			t.Fatalf("decodePlain(%q) = %+v (input %s), decodeFull %+v (input %s)", body, fast, fast.Input, full, full.Input)
		}
	})
}

func TestDecodePlainTaken(t *testing.T) {
	for _, b := range plainBodies[:7] {
		var r submitRequest
		if !decodePlain([]byte(b), &r) {
			t.Errorf("decodePlain(%s) = false, want a plain body", b)
		}
	}
	body := []byte(plainBodies[0])
	var r submitRequest
	if n := testing.AllocsPerRun(100, func() { decodeStrict(body, &r) }); n > 2 {
		t.Errorf("decodeStrict of a plain body: %v allocations, want 2 (its two strings)", n)
	}
	if !bytes.Equal(r.Input, []byte(`{"stages":4,"ms":0}`)) || r.Type != "sleep" || r.Queue != "bench" {
		t.Errorf("decodeStrict = %+v", r)
	}
}

func BenchmarkDecodeStrict(b *testing.B) {
	body := []byte(plainBodies[0])
	b.Run("plain", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var r submitRequest
			decodeStrict(body, &r)
		}
	})
	b.Run("full", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var r submitRequest
			decodeFull(body, &r)
		}
	})
}
