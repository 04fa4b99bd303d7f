package api

import (
	"encoding"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"sync"
)

// A flatEncoder writes a flat struct (exported fields of bool, integer,
// float and string kinds, with plain json tags, omitempty allowed) as
// Marshal's encoding/json path does, without it: a typed stage's output
// and partial results are such structs more often than not, and staged
// encodes one or more per stage run. It reports false for a NaN or
// infinite float, which encoding/json refuses; Marshal then takes
// encoding/json's answer (TestFlatEncoder, FuzzFlatEncoder).
type flatEncoder struct {
	fields []flatField
}

type flatField struct {
	key       string // `"name":`
	index     int
	kind      reflect.Kind
	omitEmpty bool
}

var (
	marshalerType     = reflect.TypeFor[json.Marshaler]()
	textMarshalerType = reflect.TypeFor[encoding.TextMarshaler]()
	// flatEncoders caches flatEncoderFor: reflect.Type → *flatEncoder
	// (nil when the type is not flat).
	flatEncoders sync.Map
)

// flatEncoderFor returns t's flatEncoder, or nil when t is not a flat
// struct.
func flatEncoderFor(t reflect.Type) *flatEncoder {
	if e, ok := flatEncoders.Load(t); ok {
		return e.(*flatEncoder)
	}
	e := newFlatEncoder(t)
	flatEncoders.Store(t, e)
	return e
}

func customEncoding(t reflect.Type) bool {
	pt := reflect.PointerTo(t)
	return t.Implements(marshalerType) || pt.Implements(marshalerType) ||
		t.Implements(textMarshalerType) || pt.Implements(textMarshalerType)
}

func newFlatEncoder(t reflect.Type) *flatEncoder {
	if t == nil || t.Kind() != reflect.Struct || customEncoding(t) {
		return nil
	}
	e := &flatEncoder{}
	seen := map[string]bool{}
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if sf.Anonymous {
			return nil // embedded fields: encoding/json's promotion rules
		}
		tag := sf.Tag.Get("json")
		if !sf.IsExported() || tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		omitEmpty := false
		for _, o := range strings.Split(opts, ",") {
			switch o {
			case "":
			case "omitempty":
				omitEmpty = true
			default: // string, omitzero, ...
				return nil
			}
		}
		if name == "" {
			name = sf.Name
		}
		for _, c := range name {
			if !(c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
				return nil
			}
		}
		if seen[name] { // encoding/json drops both
			return nil
		}
		seen[name] = true
		ft := sf.Type
		if customEncoding(ft) {
			return nil
		}
		switch ft.Kind() {
		case reflect.Bool, reflect.String,
			reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
			reflect.Float32, reflect.Float64:
		default:
			return nil
		}
		e.fields = append(e.fields, flatField{key: `"` + name + `":`, index: i, kind: ft.Kind(), omitEmpty: omitEmpty})
	}
	return e
}

// appendStruct appends v (of e's type) as JSON, or reports false.
func (e *flatEncoder) appendStruct(b []byte, v reflect.Value) ([]byte, bool) {
	b = append(b, '{')
	first := true
	for i := range e.fields {
		f := &e.fields[i]
		fv := v.Field(f.index)
		if f.omitEmpty && empty(fv) {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, f.key...)
		switch f.kind {
		case reflect.String:
			b = appendString(b, fv.String())
		case reflect.Bool:
			b = strconv.AppendBool(b, fv.Bool())
		case reflect.Float32, reflect.Float64:
			var ok bool
			if b, ok = appendFloat(b, fv.Float(), fv.Type().Bits()); !ok {
				return b, false
			}
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
			b = strconv.AppendUint(b, fv.Uint(), 10)
		default:
			b = strconv.AppendInt(b, fv.Int(), 10)
		}
	}
	return append(b, '}'), true
}

// empty is encoding/json's omitempty test for the flat kinds (-0 is empty,
// unlike for reflect.Value.IsZero).
func empty(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.String:
		return v.Len() == 0
	case reflect.Bool:
		return !v.Bool()
	case reflect.Float32, reflect.Float64:
		return v.Float() == 0
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return v.Uint() == 0
	}
	return v.Int() == 0
}
