package tasks

import (
	"encoding"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"time"
)

// schemaOf returns the JSON Schema (draft 2020-12) of an input struct with
// its values as the properties' defaults. It is a small reflect-based
// generator rather than a library (invopop/jsonschema was the other choice)
// because the defaults come from a value, not from tags, and the only tags
// it needs are the ones InputOf documents: json, doc and jsonschema.
func schemaOf(v reflect.Value) json.RawMessage {
	s := typeSchema(v.Type(), 0)
	s["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	if props, ok := s["properties"].(map[string]any); ok {
		for _, f := range fieldsOf(v) {
			if p, ok := props[f.Name].(map[string]any); ok {
				p["default"] = f.Default
			}
		}
	}
	b, err := json.Marshal(s)
	if err != nil {
		panic(fmt.Sprintf("tasks.InputOf: the input's schema: %v", err))
	}
	return b
}

var (
	timeType        = reflect.TypeFor[time.Time]()
	rawType         = reflect.TypeFor[json.RawMessage]()
	marshalerType   = reflect.TypeFor[json.Marshaler]()
	textMarshalType = reflect.TypeFor[encoding.TextMarshaler]()
)

// typeSchema is the schema of values of t, following encoding/json's rules.
func typeSchema(t reflect.Type, depth int) map[string]any {
	if depth > 8 {
		return map[string]any{}
	}
	if t.Kind() == reflect.Pointer {
		s := typeSchema(t.Elem(), depth+1)
		if typ, ok := s["type"].(string); ok {
			s["type"] = []any{typ, "null"}
		}
		return s
	}
	switch {
	case t == timeType:
		return map[string]any{"type": "string", "format": "date-time"}
	case t == rawType, t.Implements(marshalerType), reflect.PointerTo(t).Implements(marshalerType):
		return map[string]any{}
	case t.Implements(textMarshalType), reflect.PointerTo(t).Implements(textMarshalType):
		return map[string]any{"type": "string"}
	}
	switch t.Kind() {
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer", "minimum": 0}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 && t.Kind() == reflect.Slice {
			return map[string]any{"type": []any{"string", "null"}, "contentEncoding": "base64"}
		}
		if t.Kind() == reflect.Array {
			return map[string]any{"type": "array", "items": typeSchema(t.Elem(), depth+1)}
		}
		// encoding/json decodes null into a nil slice or map.
		return map[string]any{"type": []any{"array", "null"}, "items": typeSchema(t.Elem(), depth+1)}
	case reflect.Map:
		return map[string]any{"type": []any{"object", "null"}, "additionalProperties": typeSchema(t.Elem(), depth+1)}
	case reflect.Interface:
		return map[string]any{}
	case reflect.Struct:
		props := map[string]any{}
		for i := 0; i < t.NumField(); i++ {
			sf := t.Field(i)
			name, ok := jsonFieldName(sf)
			if !ok {
				continue
			}
			p := typeSchema(sf.Type, depth+1)
			if d := sf.Tag.Get("doc"); d != "" {
				p["description"] = d
			}
			if err := applyTag(p, sf.Tag.Get("jsonschema")); err != nil {
				panic(fmt.Sprintf("tasks.InputOf: field %s: %v", sf.Name, err))
			}
			props[name] = p
		}
		return map[string]any{"type": "object", "properties": props, "additionalProperties": false}
	}
	return map[string]any{"type": jsonType(t)}
}

// applyTag adds the keywords of a jsonschema tag to s. The tag is a comma
// separated list of keyword=value: minimum, maximum, exclusiveMinimum,
// exclusiveMaximum (numbers), minLength, maxLength, minItems, maxItems
// (integers), pattern (a regular expression, without commas) and enum
// (values separated by |, numbers where the field is a number).
func applyTag(s map[string]any, tag string) error {
	if tag == "" {
		return nil
	}
	for _, kv := range strings.Split(tag, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return fmt.Errorf("jsonschema tag %q: want keyword=value", kv)
		}
		switch k {
		case "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
			"minLength", "maxLength", "minItems", "maxItems":
			n := json.Number(v)
			if _, err := n.Float64(); err != nil {
				return fmt.Errorf("jsonschema tag: %s=%q is not a number", k, v)
			}
			s[k] = n
		case "pattern":
			s[k] = v
		case "enum":
			var vals []any
			for _, e := range strings.Split(v, "|") {
				if t, _ := s["type"].(string); t == "integer" || t == "number" {
					vals = append(vals, json.Number(e))
				} else {
					vals = append(vals, e)
				}
			}
			s[k] = vals
		default:
			return fmt.Errorf("jsonschema tag: unknown keyword %q", k)
		}
	}
	return nil
}
