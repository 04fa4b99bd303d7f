package builtin

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/staged-dev/staged/api"
)

// chainData decodes a chain result and returns its data.
func chainData(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var out struct {
		Data *string `json:"data"`
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&out); err != nil || out.Data == nil {
		t.Fatalf("result %s is not {\"data\": string}: %v", raw, err)
	}
	return *out.Data
}

func TestChainResult(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  string
	}{
		{"defaults", `{}`, "x -> processed by stage 1 -> processed by stage 2 -> processed by stage 3 -> processed by stage 4"},
		{"one stage", `{"data": "hello", "stages": 1}`, "hello -> processed by stage 1"},
		{"empty data", `{"data": "", "stages": 2}`, " -> processed by stage 1 -> processed by stage 2"},
		{"escapes", `{"data": "a\"<b>\n\u00e9", "stages": 1}`, "a\"<b>\né -> processed by stage 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := chainData(t, run(t, ChainPipeline(), tt.input).Output); got != tt.want {
				t.Errorf("result data\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

// TestChainResultEncoding pins down how the result reads on the wire:
// json.Marshal escapes '>' (as \u003e, for HTML safety), so the result reads
// "x -> …" only where the encoder has SetEscapeHTML(false).
// TestChainResultEncoding checks the result keeps "->" readable when staged
// encodes it (api.Marshal does not HTML-escape).
func TestChainResultEncoding(t *testing.T) {
	b, err := api.Marshal(ChainOutput{Data: "x -> processed by stage 1"})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"data":"x -> processed by stage 1"}`; string(b) != want {
		t.Errorf("api.Marshal: %s, want %s", b, want)
	}
}

func TestChainHundredStages(t *testing.T) {
	p := ChainPipeline()
	in := normalize(t, p, `{"stages": 100}`)
	st := stagesFor(t, p, in)
	if len(st) != 100 || st[99].Name != "stage100" {
		t.Fatalf("%d stages, last %q; want 100, stage100", len(st), st[len(st)-1].Name)
	}
	outs := runStages(t, context.Background(), st, in)
	var want strings.Builder
	want.WriteString("x")
	for k := 1; k <= 100; k++ {
		want.WriteString(" -> processed by stage ")
		want.WriteString(strconv.Itoa(k))
	}
	if got := chainData(t, outs[99]); got != want.String() {
		t.Errorf("result data %q", got)
	}
}
