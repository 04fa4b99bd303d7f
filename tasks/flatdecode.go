package tasks

import (
	"encoding"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"

	"github.com/staged-dev/staged/internal/flatstruct"
	"github.com/staged-dev/staged/internal/jsonscan"
)

// A flatDecoder decodes a JSON object into a flat struct (exported fields
// of bool, integer, float and string kinds, with plain json tags) without
// encoding/json, for the inputs and outputs of typed stages, which staged
// decodes once or more per stage run. It takes only the plain case: each
// key one of the struct's JSON names exactly, a value of the field's JSON
// type (no null, no string escapes, an integer without fraction or
// exponent), nothing after the object. Anything else it refuses, and the
// caller decodes with encoding/json instead, whose answer (a value or an
// error) it then is; on what it takes, the two agree
// (TestFlatDecoder, FuzzFlatDecoder).
type flatDecoder struct {
	fields []flatField
}

type flatField struct {
	name  string
	index int
	kind  reflect.Kind
	bits  int
}

// flatDecoders.Get(t) is t's flatDecoder, or nil when t is not a flat struct.
var flatDecoders = flatstruct.Cache[flatDecoder]{New: newFlatDecoder}

func newFlatDecoder(t reflect.Type) *flatDecoder {
	fields, ok := flatstruct.Fields(t, reflect.TypeFor[json.Unmarshaler](), reflect.TypeFor[encoding.TextUnmarshaler]())
	if !ok {
		return nil
	}
	d := &flatDecoder{}
	for i, sf := range fields {
		if sf.Kind == reflect.Uintptr {
			return nil
		}
		// Two names equal but for case: encoding/json matches keys
		// without regard to case; leave such types to it.
		for _, prev := range fields[:i] {
			if strings.EqualFold(prev.Name, sf.Name) {
				return nil
			}
		}
		f := flatField{name: sf.Name, index: sf.Index, kind: sf.Kind}
		if f.kind != reflect.Bool && f.kind != reflect.String {
			f.bits = t.Field(sf.Index).Type.Bits()
		}
		d.fields = append(d.fields, f)
	}
	return d
}

// decode decodes raw into *p (p a pointer to the struct) and reports
// whether it could; when it could not, *p may be changed in part.
func (d *flatDecoder) decode(raw []byte, p any) bool {
	s := flatScanner{b: raw}
	v := reflect.ValueOf(p).Elem()
	if !s.eat('{') {
		return false
	}
	if s.eat('}') {
		return s.end()
	}
	for {
		key, ok := s.str()
		if !ok || !s.eat(':') {
			return false
		}
		f := d.field(key)
		if f == nil || !s.value(f, v.Field(f.index)) {
			return false
		}
		if s.eat('}') {
			return s.end()
		}
		if !s.eat(',') {
			return false
		}
	}
}

func (d *flatDecoder) field(key []byte) *flatField {
	for i := range d.fields {
		if d.fields[i].name == string(key) {
			return &d.fields[i]
		}
	}
	return nil
}

// flatScanner is a cursor on the JSON being decoded, over jsonscan.
type flatScanner struct {
	b []byte
	i int
}

func (s *flatScanner) end() bool { return jsonscan.WS(s.b, s.i) == len(s.b) }

func (s *flatScanner) eat(c byte) bool {
	s.i = jsonscan.WS(s.b, s.i)
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// str returns the bytes of a string without escapes or control
// characters, in valid UTF-8.
func (s *flatScanner) str() ([]byte, bool) {
	i := jsonscan.WS(s.b, s.i)
	end := jsonscan.String(s.b, i, false)
	if end < 0 {
		return nil, false
	}
	s.i = end
	return s.b[i+1 : end-1], true
}

// number returns a JSON number's text, and whether it is an integer (no
// fraction, no exponent).
func (s *flatScanner) number() (text []byte, integer, ok bool) {
	i := jsonscan.WS(s.b, s.i)
	end, integer := jsonscan.Number(s.b, i)
	if end < 0 {
		return nil, false, false
	}
	s.i = end
	return s.b[i:end], integer, true
}

// boolean returns the value of true or false.
func (s *flatScanner) boolean() (v, ok bool) {
	i := jsonscan.WS(s.b, s.i)
	end := jsonscan.Literal(s.b, i)
	if end < 0 || s.b[i] == 'n' {
		return false, false
	}
	s.i = end
	return s.b[i] == 't', true
}

// value decodes the value of field f into v.
func (s *flatScanner) value(f *flatField, v reflect.Value) bool {
	switch f.kind {
	case reflect.String:
		b, ok := s.str()
		if ok {
			v.SetString(string(b))
		}
		return ok
	case reflect.Bool:
		b, ok := s.boolean()
		if ok {
			v.SetBool(b)
		}
		return ok
	case reflect.Float32, reflect.Float64:
		b, _, ok := s.number()
		if !ok {
			return false
		}
		x, err := strconv.ParseFloat(string(b), f.bits)
		if err != nil {
			return false
		}
		v.SetFloat(x)
		return true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		b, integer, ok := s.number()
		if !ok || !integer {
			return false
		}
		x, err := strconv.ParseUint(string(b), 10, f.bits)
		if err != nil {
			return false
		}
		v.SetUint(x)
		return true
	default: // the int kinds
		b, integer, ok := s.number()
		if !ok || !integer {
			return false
		}
		x, short := jsonscan.Int(b, 0, len(b))
		if short && f.bits < 64 && x<<(64-f.bits)>>(64-f.bits) != x {
			return false // out of range
		}
		if !short {
			var err error
			if x, err = strconv.ParseInt(string(b), 10, f.bits); err != nil {
				return false
			}
		}
		v.SetInt(x)
		return true
	}
}
