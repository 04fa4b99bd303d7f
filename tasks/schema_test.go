package tasks

import (
	"encoding/json"
	"strings"
	"testing"
)

const crawlSchema = `{
  "type": "object",
  "properties": {
    "url":   {"type": "string", "description": "where to start", "minLength": 1},
    "depth": {"type": "integer", "default": 2, "minimum": 1, "maximum": 5},
    "mode":  {"type": "string", "default": "fast", "enum": ["fast", "slow"]}
  },
  "required": ["url"],
  "additionalProperties": false
}`

func TestInputSchema(t *testing.T) {
	spec, err := InputSchema(json.RawMessage(crawlSchema))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(spec.Defaults), `{"depth":2,"mode":"fast"}`; got != want {
		t.Errorf("Defaults = %s, want %s", got, want)
	}
	if len(spec.Fields) != 3 || spec.Fields[0].Name != "depth" || spec.Fields[2].Description != "where to start" {
		t.Errorf("Fields = %+v", spec.Fields)
	}
	tests := []struct {
		name, in  string
		want      string // normalised input, or ""
		code      string
		field     string
		inMessage string
	}{
		{name: "defaults applied", in: `{"url":"http://x"}`, want: `{"depth":2,"mode":"fast","url":"http://x"}`},
		{name: "given values kept", in: `{"url":"u","depth":5,"mode":"slow"}`, want: `{"depth":5,"mode":"slow","url":"u"}`},
		{name: "big number kept exactly", in: `{"url":"u","depth":3.0}`, want: `{"depth":3.0,"mode":"fast","url":"u"}`},
		{name: "missing required", in: `{}`, code: EINVALID, field: "input.url", inMessage: "required"},
		{name: "wrong type", in: `{"url":"u","depth":"deep"}`, code: EINVALID, field: "input.depth", inMessage: "must be integer, not string"},
		{name: "below minimum", in: `{"url":"u","depth":0}`, code: EUNPROCESSABLE, field: "input.depth", inMessage: "at least 1, not 0"},
		{name: "above maximum", in: `{"url":"u","depth":9}`, code: EUNPROCESSABLE, field: "input.depth", inMessage: "at most 5"},
		{name: "not in enum", in: `{"url":"u","mode":"warp"}`, code: EUNPROCESSABLE, field: "input.mode", inMessage: `one of ["fast","slow"]`},
		{name: "unknown field", in: `{"url":"u","colour":1}`, code: EINVALID, field: "input.colour", inMessage: "unknown input field"},
		{name: "too short", in: `{"url":""}`, code: EUNPROCESSABLE, field: "input.url", inMessage: "at least 1 characters"},
		{name: "not an object", in: `[1]`, code: EINVALID, field: "input"},
		{name: "trailing data", in: `{"url":"u"} x`, code: EINVALID, field: "input"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := spec.Normalize(json.RawMessage(tt.in))
			if tt.want != "" {
				if err != nil || string(got) != tt.want {
					t.Fatalf("Normalize = %s, %v; want %s", got, err, tt.want)
				}
				return
			}
			e, ok := err.(*Error)
			if !ok {
				t.Fatalf("Normalize = %s, %v; want an *Error", got, err)
			}
			if e.Code != tt.code || e.Field != tt.field || !strings.Contains(e.Message, tt.inMessage) {
				t.Errorf("error = %s %s %q; want %s %s containing %q", e.Code, e.Field, e.Message, tt.code, tt.field, tt.inMessage)
			}
		})
	}
}

func TestInputSchemaRejectsBadSchemas(t *testing.T) {
	tests := []struct{ name, schema, want string }{
		{"not json", `{`, "not valid JSON"},
		{"not an object schema", `{"type":"array"}`, `"type": "object"`},
		{"bad keyword value", `{"type":"object","properties":{"a":{"type":"integer","minimum":"x"}}}`, "input schema"},
		{"remote ref", `{"type":"object","properties":{"a":{"$ref":"https://example.com/s.json"}}}`, "input schema"},
		{"default of the wrong type", `{"type":"object","properties":{"a":{"type":"integer","default":"x"}}}`, "a default is of the wrong type: field input.a must be integer, not string"},
		{"file ref", `{"type":"object","properties":{"a":{"$ref":"file:///etc/passwd"}}}`, "input schema"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := InputSchema(json.RawMessage(tt.schema))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("InputSchema = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

type genInput struct {
	Count int      `json:"count" doc:"how many" jsonschema:"minimum=1,maximum=10"`
	Name  string   `json:"name" jsonschema:"enum=a|b"`
	Rate  float64  `json:"rate" jsonschema:"exclusiveMinimum=0"`
	Tags  []string `json:"tags"`
	Skip  string   `json:"-"`
	inner int
}

// TestInputOfSchema: the schema generated from a typed input accepts what
// the typed decoder accepts and names the field of what it refuses.
func TestInputOfSchema(t *testing.T) {
	typed := InputOf(genInput{Count: 3, Name: "a", Rate: 0.5, Tags: []string{"x"}}, nil)
	spec, err := InputSchema(typed.Schema)
	if err != nil {
		t.Fatalf("the generated schema does not compile: %v\n%s", err, typed.Schema)
	}
	if string(spec.Defaults) != string(typed.Defaults) {
		t.Errorf("schema defaults %s, typed defaults %s", spec.Defaults, typed.Defaults)
	}
	ok, err := spec.Normalize(json.RawMessage(`{"count":7}`))
	if err != nil || string(ok) != `{"count":7,"name":"a","rate":0.5,"tags":["x"]}` {
		t.Errorf("Normalize = %s, %v", ok, err)
	}
	for in, field := range map[string]string{
		`{"count":0}`: "input.count", `{"count":"x"}`: "input.count", `{"name":"c"}`: "input.name",
		`{"rate":0}`: "input.rate", `{"tags":[1]}`: "input.tags.0", `{"Skip":"x"}`: "input.Skip",
	} {
		if _, err := spec.Normalize(json.RawMessage(in)); errField(err) != field {
			t.Errorf("Normalize(%s) = %v, want an error naming %s", in, err, field)
		}
	}
}

func TestDefinitionDigest(t *testing.T) {
	mk := func(stages ...string) *Pipeline {
		p := &Pipeline{Name: "crawl", Description: "d", Input: InputOf(genInput{Count: 1, Name: "a", Rate: 1}, nil)}
		for _, s := range stages {
			p.Stages = append(p.Stages, Stage{Name: s})
		}
		return p
	}
	a, b := mk("fetch", "parse"), mk("fetch", "parse")
	b.Description, b.Timeout = "other words", 1 // not part of the digest
	if a.Digest() != b.Digest() {
		t.Error("description and timeout changed the digest")
	}
	if a.Digest() == mk("fetch", "parse", "store").Digest() {
		t.Error("another stage list has the same digest")
	}
	c := mk("fetch", "parse")
	c.Version = "2"
	if a.Digest() == c.Digest() {
		t.Error("Version is not part of the digest")
	}
}

func errField(err error) string {
	if e, ok := err.(*Error); ok {
		return e.Field
	}
	return "no *Error: " + ErrorMessage(err)
}

// TestInputSchemaPlaceholderDefault: a default that breaks a rule other
// than the type (here minLength) is allowed, and an input that leaves the
// field out is refused naming it: a required field with a placeholder.
func TestInputSchemaPlaceholderDefault(t *testing.T) {
	spec, err := InputSchema(json.RawMessage(`{"type":"object","properties":{"url":{"type":"string","default":"","minLength":1}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := spec.Normalize(nil); errField(err) != "input.url" {
		t.Errorf("Normalize(nil) = %v, want an error naming input.url", err)
	}
}
