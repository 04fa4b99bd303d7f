package tasks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"sort"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"github.com/staged-dev/staged/api"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// InputSchema returns an InputSpec that validates a pipeline's input against
// schema, a JSON Schema, for pipelines whose input is not a Go type (a
// pipelines file, a program that loads its definitions at run time).
//
// schema must describe a JSON object: its top level has "type": "object".
// It is draft 2020-12 unless its "$schema" names another draft (4, 6, 7,
// 2019-09). References ("$ref") may only point inside the schema; nothing
// is loaded from files or the network.
//
// Defaults: each top-level property's "default" is filled in when an input
// leaves that property out (and an empty or null input gets all of them),
// before the input is validated; the defaults together are the spec's
// Defaults. Nested defaults are not applied. Normalize then returns the
// input with the defaults in place, and rejects an input that breaks the
// schema with an *Error whose Field names the offending value (for example
// "input.epochs") and whose Message says what is wrong: EINVALID for a
// wrong type, an unknown or a missing field, EUNPROCESSABLE for a value out
// of range (minimum, maxLength, enum, pattern, ...).
//
// A default of the wrong JSON type is an error; a default that breaks
// another rule (a minimum, a minLength) is allowed: an input that leaves
// the field out is then refused, naming it (a way to make a field required
// while still showing a placeholder default).
//
// The schema is what staged publishes in the pipeline catalogue and what
// the API validates submits against: a stock staged api checks an input
// without any pipeline code. The error says what is wrong with the schema
// itself (not valid JSON, not an object schema, a bad keyword or default).
func InputSchema(schema json.RawMessage) (*InputSpec, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema))
	if err != nil {
		return nil, fmt.Errorf("input schema is not valid JSON: %v", err)
	}
	obj, ok := doc.(map[string]any)
	if !ok || obj["type"] != "object" {
		return nil, errors.New(`input schema must describe a JSON object: its top level needs "type": "object"`)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.UseLoader(jsonschema.SchemeURLLoader{}) // no files, no network
	const loc = "staged:input.json"
	if err := c.AddResource(loc, doc); err != nil {
		return nil, fmt.Errorf("input schema: %v", err)
	}
	sch, err := c.Compile(loc)
	if err != nil {
		return nil, fmt.Errorf("input schema: %v", err)
	}
	props, _ := obj["properties"].(map[string]any)
	defaults := map[string]any{}
	names := make([]string, 0, len(props))
	for name := range props {
		names = append(names, name)
	}
	sort.Strings(names)
	var fields []api.Field
	for _, name := range names {
		p, _ := props[name].(map[string]any)
		f := api.Field{Name: name, Type: schemaType(p["type"])}
		if d, ok := p["default"]; ok {
			defaults[name] = d
			f.Default = d
		}
		f.Description, _ = p["description"].(string)
		fields = append(fields, f)
	}
	// A default of the wrong JSON type is a mistake in the schema.
	if err := sch.Validate(defaultsDoc(defaults)); err != nil {
		var ve *jsonschema.ValidationError
		if errors.As(err, &ve) {
			if e := typeError(ve); e != nil {
				return nil, fmt.Errorf("input schema: a default is of the wrong type: %s", e.Message)
			}
		}
	}
	def, err := json.Marshal(defaults)
	if err != nil {
		return nil, fmt.Errorf("input schema: %v", err)
	}
	compact := new(bytes.Buffer)
	if err := json.Compact(compact, schema); err != nil {
		return nil, fmt.Errorf("input schema is not valid JSON: %v", err)
	}
	spec := &InputSpec{Fields: fields, Defaults: def, Schema: compact.Bytes(), fast: newFastInput(obj)}
	spec.decode = func(raw json.RawMessage) (json.RawMessage, error) {
		raw, err := normalizeObject(raw)
		if err != nil {
			return nil, err
		}
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			return nil, &Error{Code: EINVALID, Field: "input", Message: "input is not valid JSON: " + err.Error(), Err: err}
		}
		in := v.(map[string]any) // normalizeObject saw a '{'
		for k, d := range defaults {
			if _, ok := in[k]; !ok {
				in[k] = d
			}
		}
		if err := sch.Validate(in); err != nil {
			var ve *jsonschema.ValidationError
			if errors.As(err, &ve) {
				return nil, schemaError(ve)
			}
			return nil, &Error{Code: EINVALID, Field: "input", Message: err.Error(), Err: err}
		}
		return json.Marshal(in)
	}
	return spec, nil
}

func schemaType(t any) string {
	switch t := t.(type) {
	case string:
		return t
	case []any:
		for _, e := range t {
			if s, ok := e.(string); ok && s != "null" {
				return s
			}
		}
	}
	return ""
}

var printer = message.NewPrinter(language.English)

// defaultsDoc is a copy of the defaults to validate (Validate must not see
// the map the decoder fills in later).
func defaultsDoc(d map[string]any) map[string]any {
	c := make(map[string]any, len(d))
	for k, v := range d {
		c[k] = v
	}
	return c
}

// typeError returns the first wrong-type error among ve's leaves, or nil.
func typeError(ve *jsonschema.ValidationError) *Error {
	if len(ve.Causes) == 0 {
		if _, ok := ve.ErrorKind.(*kind.Type); ok {
			return schemaError(ve)
		}
		return nil
	}
	for _, c := range ve.Causes {
		if e := typeError(c); e != nil {
			return e
		}
	}
	return nil
}

// schemaError turns a validation error into an *Error about its first
// leaf cause: the field named, what is wrong said in words.
func schemaError(ve *jsonschema.ValidationError) *Error {
	for len(ve.Causes) > 0 {
		ve = ve.Causes[0]
	}
	field := "input"
	for _, tok := range ve.InstanceLocation {
		field += "." + tok
	}
	code, msg := EUNPROCESSABLE, ""
	switch k := ve.ErrorKind.(type) {
	case *kind.Type:
		code, msg = EINVALID, fmt.Sprintf("field %s must be %s, not %s", field, strings.Join(k.Want, " or "), k.Got)
	case *kind.Required:
		code = EINVALID
		for i, m := range k.Missing {
			k.Missing[i] = field + "." + m
		}
		field = k.Missing[0]
		msg = fmt.Sprintf("field %s is required", strings.Join(k.Missing, ", "))
	case *kind.AdditionalProperties:
		code = EINVALID
		field += "." + k.Properties[0]
		msg = fmt.Sprintf("unknown input field %q", strings.TrimPrefix(field, "input."))
	case *kind.Minimum:
		msg = fmt.Sprintf("%s must be at least %s, not %s", field, ratString(k.Want), ratString(k.Got))
	case *kind.Maximum:
		msg = fmt.Sprintf("%s must be at most %s, not %s", field, ratString(k.Want), ratString(k.Got))
	case *kind.ExclusiveMinimum:
		msg = fmt.Sprintf("%s must be more than %s, not %s", field, ratString(k.Want), ratString(k.Got))
	case *kind.ExclusiveMaximum:
		msg = fmt.Sprintf("%s must be less than %s, not %s", field, ratString(k.Want), ratString(k.Got))
	case *kind.MinLength:
		msg = fmt.Sprintf("%s must be at least %d characters long, not %d", field, k.Want, k.Got)
	case *kind.MaxLength:
		msg = fmt.Sprintf("%s must be at most %d characters long, not %d", field, k.Want, k.Got)
	case *kind.Enum:
		want, _ := json.Marshal(k.Want)
		got, _ := json.Marshal(k.Got)
		msg = fmt.Sprintf("%s must be one of %s, not %s", field, want, got)
	case *kind.Pattern:
		msg = fmt.Sprintf("%s must match the pattern %q, not %q", field, k.Want, k.Got)
	default:
		msg = field + ": " + ve.ErrorKind.LocalizedString(printer)
	}
	return &Error{Code: code, Field: field, Message: msg}
}

func ratString(r *big.Rat) string {
	if r == nil {
		return "?"
	}
	if r.IsInt() {
		return r.Num().String()
	}
	f, _ := r.Float64()
	return fmt.Sprint(f)
}
