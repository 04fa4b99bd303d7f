package tasks_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"unicode/utf8"

	"github.com/staged-dev/staged/tasks"
)

// The fuzz target of the decoder of submitted inputs (records read back from
// Redis are fuzzed in package api, the asynq task payload in internal/store).
// Its seed corpus is in testdata/fuzz/FuzzNormalizeInput/ and runs under
// plain go test; .ci/run fuzzes it briefly:
//
//	go test -run='^$' -fuzz='^FuzzNormalizeInput$' -fuzztime=10s ./tasks/

// fuzzInput has one field of each JSON scalar type, as a pipeline's input.
type fuzzInput struct {
	Count int     `json:"count" doc:"1..1000"`
	Rate  float64 `json:"rate" doc:"0..1"`
	Name  string  `json:"name" doc:"at most 32 bytes of UTF-8"`
	Deep  bool    `json:"deep"`
}

func checkFuzzInput(in *fuzzInput) error {
	switch {
	case in.Count < 1 || in.Count > 1000:
		return tasks.FieldError("input.count", "count must be between 1 and 1000, not %d", in.Count)
	case !(in.Rate >= 0 && in.Rate <= 1): // NaN too
		return tasks.FieldError("input.rate", "rate must be between 0 and 1, not %v", in.Rate)
	case len(in.Name) > 32 || !utf8.ValidString(in.Name):
		return tasks.FieldError("input.name", "name must be at most 32 bytes of UTF-8")
	}
	return nil
}

var fuzzSpec = tasks.InputOf(fuzzInput{Count: 10, Rate: 0.5, Name: "x"}, checkFuzzInput)

// FuzzNormalizeInput: Normalize never panics; it refuses an input only
// with an invalid or unprocessable error that names a field and says why;
// what it accepts is a JSON object that decodes into the input type
// (no unknown field), passes the check, and normalizes to itself.
func FuzzNormalizeInput(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw []byte) {
		out, err := fuzzSpec.Normalize(raw)
		if err != nil {
			var e *tasks.Error
			if !errors.As(err, &e) || (e.Code != tasks.EINVALID && e.Code != tasks.EUNPROCESSABLE) || e.Field == "" || e.Message == "" {
				t.Fatalf("Normalize(%q) error %#v, want an invalid or unprocessable *tasks.Error naming a field", raw, err)
			}
			return
		}
		var v fuzzInput
		dec := json.NewDecoder(bytes.NewReader(out))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("Normalize(%q) = %s, which does not decode: %v", raw, out, err)
		}
		if err := checkFuzzInput(&v); err != nil {
			t.Fatalf("Normalize(%q) = %s, which the check refuses: %v", raw, out, err)
		}
		again, err := fuzzSpec.Normalize(out)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("Normalize(%q) = %s, but Normalize of that = %s, %v", raw, out, again, err)
		}
	})
}
