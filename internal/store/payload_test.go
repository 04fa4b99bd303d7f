package store

import (
	"encoding/json"
	"testing"

	"github.com/staged-dev/staged/api"
)

func TestDecodePayloadFast(t *testing.T) {
	id := "0b0e7f6c-5a3e-4d4f-9a53-6f1f2b1c0d9e"
	for _, gen := range []int64{1, 7, 12, 1 << 40} {
		b, _ := json.Marshal(Payload{ID: id, Gen: gen})
		p, ok := decodePayloadFast(b)
		if !ok || p != (Payload{ID: id, Gen: gen}) {
			t.Fatalf("decodePayloadFast(%s) = %+v, %v", b, p, ok)
		}
	}
	// Anything else is left to encoding/json, which agrees or rejects.
	for _, s := range []string{
		`{"gen":1,"id":"` + id + `"}`, `{"id":"` + id + `","gen":01}`, `{"id":"` + id + `","gen":-1}`,
		`{"id":"` + id + `","gen":1 }`, `{"id":"not-a-uuid-not-a-uuid-not-a-uuid-xx","gen":1}`, `{"id":"` + id + `","gen":}`,
	} {
		if _, ok := decodePayloadFast([]byte(s)); ok {
			t.Errorf("fast path took %s", s)
		}
		var want Payload
		werr := json.Unmarshal([]byte(s), &want)
		got, err := DecodePayload([]byte(s))
		if (err == nil) != (werr == nil && api.ValidID(want.ID)) || (err == nil && got != want) {
			t.Errorf("DecodePayload(%s) = %+v, %v; encoding/json: %+v, %v", s, got, err, want, werr)
		}
	}
}
