package store_test

import (
	"encoding/json"
	"testing"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/internal/store"
)

// The fuzz target of the asynq task payload decoder; its seed corpus is in
// testdata/fuzz/FuzzDecodePayload and runs under plain go test. .ci/run
// fuzzes it briefly:
//
//	go test -run='^$' -fuzz='^FuzzDecodePayload$' -fuzztime=10s ./internal/store/

// FuzzDecodePayload: DecodePayload never panics, accepts only a valid job
// id, and an accepted payload round-trips through JSON.
func FuzzDecodePayload(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := store.DecodePayload(b)
		if err != nil {
			return
		}
		if !api.ValidID(p.ID) {
			t.Fatalf("DecodePayload(%q) accepted id %q", b, p.ID)
		}
		out, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		p2, err := store.DecodePayload(out)
		if err != nil || p2 != p {
			t.Fatalf("payload %+v does not round-trip: %s → %+v, %v", p, out, p2, err)
		}
	})
}
