package jsonscan

import (
	"encoding/json"
	"testing"
)

// FuzzValue: what Value takes whole is valid JSON, and taking it never
// reads past the value (the end it returns is inside b).
func FuzzValue(f *testing.F) {
	for _, s := range []string{`{}`, `[]`, `"a"`, `-0.5e+3`, `true`, `null`, `{"a":[1,{"b":"c"}],"d":false}`,
		`{"a":1,"a":2}`, `"\u0041"`, "\"\xff\"", `01`, `[1,]`, `{"a" 1}`, `"é"`, `[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		end := Value(b, 0)
		if end > len(b) {
			t.Fatalf("Value(%q) = %d, past the end", b, end)
		}
		if end == len(b) && !json.Valid(b) {
			t.Fatalf("Value(%q) took invalid JSON", b)
		}
	})
}

func TestValue(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int
	}{
		{`{"a":1} `, 7}, {`{"a":1,"a":2}`, -1}, {`{"a":{"a":1}}`, 13}, {`"\n"`, -1}, {"\"\x01\"", -1},
		{"\"\xff\"", -1}, {`"é"`, 4}, {`1.`, -1}, {`-`, -1}, {`1e`, -1}, {`tru`, -1}, {`[1 , 2]`, 7},
	} {
		if got := Value([]byte(tt.in), 0); got != tt.want {
			t.Errorf("Value(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
	if n, ok := Int([]byte("-123"), 0, 4); !ok || n != -123 {
		t.Errorf("Int(-123) = %d, %v", n, ok)
	}
	if _, ok := Int([]byte("1234567890123456789"), 0, 19); ok {
		t.Error("Int took 19 digits")
	}
	if end := String([]byte(`"a<b"`), 0, true); end != -1 {
		t.Errorf("String(ascii) took <: %d", end)
	}
}
