package api_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/staged-dev/staged/api"
)

// The fuzz target of the decoder of records read back from Redis. Its seed
// corpus is in testdata/fuzz/FuzzDecodeJob/ and runs under plain go test;
// .ci/run fuzzes it briefly:
//
//	go test -run='^$' -fuzz='^FuzzDecodeJob$' -fuzztime=10s ./api/

// FuzzDecodeJob: DecodeJob never panics, fails only with a "corrupt job
// record" error, and a record it accepts round-trips through
// Marshal: encoding it, decoding that and encoding again gives the same
// bytes.
func FuzzDecodeJob(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		j, err := api.DecodeJob(b)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "corrupt job record: ") {
				t.Fatalf("DecodeJob error %v, want a corrupt-record error", err)
			}
			return
		}
		out, err := api.Marshal(j)
		if err != nil {
			t.Fatalf("Marshal of a decoded record: %v", err)
		}
		j2, err := api.DecodeJob(out)
		if err != nil {
			t.Fatalf("DecodeJob of Marshal's output %s: %v", out, err)
		}
		out2, err := api.Marshal(j2)
		if err != nil {
			t.Fatalf("Marshal again: %v", err)
		}
		if !bytes.Equal(out, out2) {
			t.Fatalf("the record does not round-trip:\n first %s\nsecond %s", out, out2)
		}
	})
}
