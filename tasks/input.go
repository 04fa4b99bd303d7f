package tasks

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"

	"github.com/staged-dev/staged/api"
)

// InputSpec validates a pipeline's input and describes its fields.
type InputSpec struct {
	// Fields describes each input field, for GET /v1/pipelines.
	Fields []api.Field
	// Defaults is the input used when none is given.
	Defaults json.RawMessage
	// Schema is the input's JSON Schema, defaults included: what the
	// pipeline catalogue publishes and the API validates submits against.
	Schema json.RawMessage
	decode func(raw json.RawMessage) (json.RawMessage, error)
	fast   *fastInput   // InputSchema's fast path for plain inputs; nil: none
	typ    reflect.Type // InputOf's T; nil when not known
}

// inputType is the Go type inputs decode into, or nil when unknown.
func (s *InputSpec) inputType() reflect.Type {
	if s == nil {
		return nil
	}
	return s.typ
}

// Normalize decodes raw (a JSON object, or empty/null for all defaults),
// rejects unknown fields and wrong types (EINVALID) and values the pipeline's
// check refuses (EUNPROCESSABLE, naming the field), and returns the input
// with defaults applied.
func (s *InputSpec) Normalize(raw json.RawMessage) (json.RawMessage, error) {
	if s == nil {
		return normalizeObject(raw)
	}
	if s.fast != nil {
		if out, ok := s.fast.normalize(raw); ok {
			return out, nil
		}
	}
	return s.decode(raw)
}

func normalizeObject(raw json.RawMessage) (json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return json.RawMessage(`{}`), nil
	}
	if !json.Valid(raw) {
		return nil, &Error{Code: EINVALID, Field: "input", Message: "input is not valid JSON"}
	}
	if raw[0] != '{' {
		return nil, &Error{Code: EINVALID, Field: "input", Message: "input must be a JSON object"}
	}
	return raw, nil
}

// InputOf builds an InputSpec for inputs of type T (a struct with json tags;
// a `doc` tag describes a field). defaults supplies every field's default;
// check, if not nil, validates a decoded input and should return a
// FieldError naming the offending field.
//
// The spec's Schema is generated from T: each field's JSON type, its
// default and its doc, no unknown fields. A `jsonschema` tag adds limits
// the API checks without the pipeline's code (see applyTag), for example
// `jsonschema:"minimum=1,maximum=100"`; say in the tag what check says,
// so that a stock staged api refuses the input with 422 instead of the
// worker failing the job. Checks a schema cannot say (one field against
// another) run only in the worker, which fails the job naming the field.
func InputOf[T any](defaults T, check func(*T) error) *InputSpec {
	def, err := json.Marshal(defaults)
	if err != nil {
		panic(err)
	}
	spec := &InputSpec{Defaults: def, Fields: fieldsOf(reflect.ValueOf(defaults)), Schema: schemaOf(reflect.ValueOf(defaults)), typ: reflect.TypeFor[T]()}
	fast := newFlatDecoder(spec.typ)
	spec.decode = func(raw json.RawMessage) (json.RawMessage, error) {
		v := defaults
		// A flat struct's plain JSON object decodes without encoding/json
		// (flatdecode.go); anything else as before.
		if fast == nil || !fast.decode(raw, &v) {
			v = defaults
			raw, err := normalizeObject(raw)
			if err != nil {
				return nil, err
			}
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&v); err != nil {
				return nil, inputDecodeError(err)
			}
			if _, err := dec.Token(); err != io.EOF {
				return nil, &Error{Code: EINVALID, Field: "input", Message: "input has trailing data after the JSON object"}
			}
		}
		if check != nil {
			if err := check(&v); err != nil {
				var e *Error
				if errors.As(err, &e) {
					return nil, e
				}
				return nil, &Error{Code: EUNPROCESSABLE, Field: "input", Message: err.Error()}
			}
		}
		return json.Marshal(v)
	}
	return spec
}

func inputDecodeError(err error) *Error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		f := "input." + te.Field
		return &Error{Code: EINVALID, Field: f, Message: "field " + f + " must be " + jsonType(te.Type) + ", not " + te.Value, Err: err}
	}
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		name := strings.Trim(rest, `"`)
		return &Error{Code: EINVALID, Field: "input." + name, Message: "unknown input field " + rest, Err: err}
	}
	return &Error{Code: EINVALID, Field: "input", Message: "input is not valid JSON: " + strings.TrimPrefix(msg, "json: "), Err: err}
}

func fieldsOf(v reflect.Value) []api.Field {
	if v.Kind() != reflect.Struct {
		return nil
	}
	t := v.Type()
	var fs []api.Field
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		name, ok := jsonFieldName(sf)
		if !ok {
			continue
		}
		fs = append(fs, api.Field{Name: name, Type: jsonType(sf.Type), Default: v.Field(i).Interface(), Description: sf.Tag.Get("doc")})
	}
	return fs
}

func jsonType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Slice, reflect.Array:
		return "array"
	default:
		return "object"
	}
}

// jsonFieldName is the name encoding/json gives struct field sf, and false
// when json skips it (unexported, or tagged "-").
func jsonFieldName(sf reflect.StructField) (string, bool) {
	if !sf.IsExported() {
		return "", false
	}
	name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
	switch name {
	case "-":
		return "", false
	case "":
		return sf.Name, true
	}
	return name, true
}
