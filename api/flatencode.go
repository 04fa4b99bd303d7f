package api

import (
	"encoding"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"

	"github.com/staged-dev/staged/internal/flatstruct"
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

// flatEncoders.Get(t) is t's flatEncoder, or nil when t is not a flat struct.
var flatEncoders = flatstruct.Cache[flatEncoder]{New: newFlatEncoder}

func newFlatEncoder(t reflect.Type) *flatEncoder {
	fields, ok := flatstruct.Fields(t, reflect.TypeFor[json.Marshaler](), reflect.TypeFor[encoding.TextMarshaler]())
	if !ok {
		return nil
	}
	e := &flatEncoder{}
	for _, f := range fields {
		omitEmpty := false
		for _, o := range strings.Split(f.Opts, ",") {
			switch o {
			case "":
			case "omitempty":
				omitEmpty = true
			default: // omitzero, ...
				return nil
			}
		}
		e.fields = append(e.fields, flatField{key: `"` + f.Name + `":`, index: f.Index, kind: f.Kind, omitEmpty: omitEmpty})
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
