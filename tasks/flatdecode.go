package tasks

import (
	"encoding"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
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

var (
	unmarshalerType     = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	// flatDecoders caches flatDecoderFor: reflect.Type → *flatDecoder
	// (nil when the type is not flat).
	flatDecoders sync.Map
)

// flatDecoderFor returns t's flatDecoder, or nil when t is not a flat
// struct.
func flatDecoderFor(t reflect.Type) *flatDecoder {
	if d, ok := flatDecoders.Load(t); ok {
		return d.(*flatDecoder)
	}
	d := newFlatDecoder(t)
	flatDecoders.Store(t, d)
	return d
}

func customDecoding(t reflect.Type) bool {
	pt := reflect.PointerTo(t)
	return t.Implements(unmarshalerType) || pt.Implements(unmarshalerType) ||
		t.Implements(textUnmarshalerType) || pt.Implements(textUnmarshalerType)
}

func newFlatDecoder(t reflect.Type) *flatDecoder {
	if t == nil || t.Kind() != reflect.Struct || customDecoding(t) {
		return nil
	}
	d := &flatDecoder{}
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
		if strings.Contains(","+opts+",", ",string,") {
			return nil
		}
		if name == "" {
			name = sf.Name
		}
		for _, c := range name {
			if !(c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
				return nil
			}
		}
		// Two names equal but for case: encoding/json matches keys
		// without regard to case; leave such types to it.
		if folded := strings.ToLower(name); seen[folded] {
			return nil
		} else {
			seen[folded] = true
		}
		ft := sf.Type
		if customDecoding(ft) {
			return nil
		}
		switch ft.Kind() {
		case reflect.Bool, reflect.String,
			reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
			reflect.Float32, reflect.Float64:
		default:
			return nil
		}
		f := flatField{name: name, index: i, kind: ft.Kind()}
		if f.kind != reflect.Bool && f.kind != reflect.String {
			f.bits = ft.Bits()
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

// flatScanner is a cursor on the JSON being decoded.
type flatScanner struct {
	b []byte
	i int
}

func (s *flatScanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *flatScanner) end() bool { s.ws(); return s.i == len(s.b) }

func (s *flatScanner) eat(c byte) bool {
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// str returns the bytes of a string without escapes or control
// characters, in valid UTF-8.
func (s *flatScanner) str() ([]byte, bool) {
	if !s.eat('"') {
		return nil, false
	}
	start, ascii := s.i, true
	for ; s.i < len(s.b); s.i++ {
		switch c := s.b[s.i]; {
		case c == '"':
			v := s.b[start:s.i]
			s.i++
			return v, ascii || utf8.Valid(v)
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, false
}

// number returns a JSON number's text, and whether it is an integer (no
// fraction, no exponent).
func (s *flatScanner) number() (text []byte, integer, ok bool) {
	s.ws()
	start := s.i
	digits := func() bool {
		n := s.i
		for s.i < len(s.b) && '0' <= s.b[s.i] && s.b[s.i] <= '9' {
			s.i++
		}
		return s.i > n
	}
	if s.i < len(s.b) && s.b[s.i] == '-' {
		s.i++
	}
	if s.i < len(s.b) && s.b[s.i] == '0' {
		s.i++
	} else if !digits() {
		return nil, false, false
	}
	integer = true
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		integer = false
		if !digits() {
			return nil, false, false
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		integer = false
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if !digits() {
			return nil, false, false
		}
	}
	return s.b[start:s.i], integer, true
}

func (s *flatScanner) lit(l string) bool {
	s.ws()
	if len(s.b)-s.i >= len(l) && string(s.b[s.i:s.i+len(l)]) == l {
		s.i += len(l)
		return true
	}
	return false
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
		switch {
		case s.lit("true"):
			v.SetBool(true)
		case s.lit("false"):
			v.SetBool(false)
		default:
			return false
		}
		return true
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
		x, err := strconv.ParseInt(string(b), 10, f.bits)
		if err != nil {
			return false
		}
		v.SetInt(x)
		return true
	}
}
