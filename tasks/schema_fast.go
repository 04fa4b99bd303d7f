package tasks

import (
	"bytes"
	"encoding/json"
	"sort"
	"strconv"

	"github.com/staged-dev/staged/internal/jsonscan"
)

// fastInput accepts the plain inputs of the common input schema without
// the jsonschema library: a flat object whose properties are integers,
// numbers, strings or booleans, with at most a minimum and a maximum (what
// InputOf's schemas and most pipelines files say). Decoding an input into
// a map, validating it and encoding the map again was a tenth of the API's
// CPU per submit; this is one pass over the bytes and one allocation.
//
// It only ever accepts: an input it cannot take at a glance (an unknown
// or repeated name, an escape in a string, a fraction where a bound must
// be compared, a value of another type, one out of range, ...) returns
// false, and the library decides, so every refusal and its message stays
// the library's. What it accepts, the library accepts too, normalised to
// the same bytes (FuzzFastInput compares the two).
type fastInput struct {
	props []fastProp // sorted by name, as encoding/json orders map keys
}

// maxFastProps bounds the properties of a schema fastInput takes: the
// values found are kept in an array on the stack.
const maxFastProps = 32

type fastProp struct {
	name     string
	key      []byte // `"name":` as encoding/json writes it
	kind     byte   // 'i' integer, 'n' number, 's' string, 'b' boolean
	min, max int64
	hasMin   bool
	hasMax   bool
	def      []byte // the default as encoding/json writes it; nil: none
	defOK    bool   // def is a plain value that passes the property's rules
	required bool
}

// Keywords that fastInput understands (or that do not affect validation);
// a schema with any other keyword is left to the library.
var (
	fastTopKeywords  = map[string]bool{"$schema": true, "type": true, "properties": true, "required": true, "additionalProperties": true, "title": true, "description": true, "$comment": true}
	fastPropKeywords = map[string]bool{"type": true, "minimum": true, "maximum": true, "default": true, "title": true, "description": true, "$comment": true, "examples": true}
	fastKinds        = map[string]byte{"integer": 'i', "number": 'n', "string": 's', "boolean": 'b'}
)

// newFastInput returns the fast path of schema obj (as jsonschema.UnmarshalJSON
// decodes it, numbers as json.Number), or nil when obj says more than it
// understands. Unknown input names always go to the library, so
// additionalProperties (whatever it says) concerns only them.
func newFastInput(obj map[string]any) *fastInput {
	for k := range obj {
		if !fastTopKeywords[k] {
			return nil
		}
	}
	if obj["type"] != "object" {
		return nil
	}
	props, ok := obj["properties"].(map[string]any)
	if !ok && obj["properties"] != nil || len(props) > maxFastProps {
		return nil
	}
	f := &fastInput{}
	for name, v := range props {
		ps, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		p, ok := newFastProp(name, ps)
		if !ok {
			return nil
		}
		f.props = append(f.props, p)
	}
	sort.Slice(f.props, func(i, j int) bool { return f.props[i].name < f.props[j].name })
	if r, ok := obj["required"]; ok {
		names, ok := r.([]any)
		if !ok {
			return nil
		}
		for _, n := range names {
			s, _ := n.(string)
			k := f.index([]byte(s))
			if k < 0 {
				return nil
			}
			f.props[k].required = true
		}
	}
	return f
}

func newFastProp(name string, ps map[string]any) (fastProp, bool) {
	p := fastProp{name: name}
	for k := range ps {
		if !fastPropKeywords[k] {
			return p, false
		}
	}
	t, _ := ps["type"].(string)
	if p.kind = fastKinds[t]; p.kind == 0 || !plainASCII(name) {
		return p, false
	}
	for _, b := range []struct {
		kw  string
		n   *int64
		has *bool
	}{{"minimum", &p.min, &p.hasMin}, {"maximum", &p.max, &p.hasMax}} {
		v, ok := ps[b.kw]
		if !ok {
			continue
		}
		num, isNum := v.(json.Number)
		n, err := strconv.ParseInt(string(num), 10, 64)
		if !isNum || err != nil || (p.kind != 'i' && p.kind != 'n') {
			return p, false
		}
		*b.n, *b.has = n, true
	}
	key, err := json.Marshal(name)
	if err != nil {
		return p, false
	}
	p.key = append(key, ':')
	if d, ok := ps["default"]; ok {
		if p.def, err = json.Marshal(d); err != nil {
			return p, false
		}
		end := p.scan(p.def, 0)
		p.defOK = end == len(p.def)
	}
	return p, true
}

// plainASCII reports whether s is printable ASCII that encoding/json
// writes as it is between quotes (no ", \, <, > or &).
func plainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// index returns the index of the property named name, or -1.
func (f *fastInput) index(name []byte) int {
	i := sort.Search(len(f.props), func(i int) bool { return f.props[i].name >= string(name) })
	if i < len(f.props) && f.props[i].name == string(name) {
		return i
	}
	return -1
}

// normalize returns the normalised input and true when raw is a plain
// input the schema accepts; false leaves raw to the library.
func (f *fastInput) normalize(raw []byte) ([]byte, bool) {
	var got [maxFastProps][]byte
	raw = bytes.TrimSpace(raw) // as normalizeObject does
	if len(raw) > 0 && string(raw) != "null" {
		if raw[0] != '{' {
			return nil, false
		}
		i := jsonscan.WS(raw, 1)
		if i < len(raw) && raw[i] == '}' {
			i++
		} else {
			for {
				end := jsonscan.String(raw, i, true)
				if end < 0 {
					return nil, false
				}
				k := f.index(raw[i+1 : end-1])
				if k < 0 || got[k] != nil {
					return nil, false
				}
				if i = jsonscan.WS(raw, end); i >= len(raw) || raw[i] != ':' {
					return nil, false
				}
				i = jsonscan.WS(raw, i+1)
				if end = f.props[k].scan(raw, i); end < 0 {
					return nil, false
				}
				got[k] = raw[i:end]
				if i = jsonscan.WS(raw, end); i >= len(raw) {
					return nil, false
				}
				if raw[i] == '}' {
					i++
					break
				}
				if raw[i] != ',' {
					return nil, false
				}
				i = jsonscan.WS(raw, i+1)
			}
		}
		if i != len(raw) {
			return nil, false
		}
	}
	n := 2
	for k := range f.props {
		n += len(f.props[k].key) + len(f.props[k].def) + len(got[k]) + 1
	}
	out := make([]byte, 1, n)
	out[0] = '{'
	for k := range f.props {
		p := &f.props[k]
		v := got[k]
		if v == nil {
			if p.def == nil {
				if p.required {
					return nil, false
				}
				continue
			}
			if !p.defOK {
				return nil, false
			}
			v = p.def
		}
		if len(out) > 1 {
			out = append(out, ',')
		}
		out = append(out, p.key...)
		out = append(out, v...)
	}
	return append(out, '}'), true
}

// scan returns the end of the value of p at b[i:] when it is a plain
// value that p accepts, or -1.
func (p *fastProp) scan(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch p.kind {
	case 's':
		return jsonscan.String(b, i, true)
	case 'b':
		switch {
		case bytes.HasPrefix(b[i:], []byte("true")):
			return i + 4
		case bytes.HasPrefix(b[i:], []byte("false")):
			return i + 5
		}
		return -1
	}
	end, integral := jsonscan.Number(b, i)
	if end < 0 {
		return -1
	}
	if !p.hasMin && !p.hasMax && (integral || p.kind == 'n') {
		return end
	}
	if !integral {
		return -1
	}
	n, ok := jsonscan.Int(b, i, end)
	if !ok || p.hasMin && n < p.min || p.hasMax && n > p.max {
		return -1
	}
	return end
}
