// Package flatstruct analyses "flat" structs once per type, for the
// reflection-light JSON paths that bypass encoding/json: api's encoder
// (api.Marshal) and tasks' decoder (typed stage inputs). A flat struct has
// no embedded field, and each field encoding/json sees (exported, not
// tagged "-") is of bool, integer, float or string kind, with a plain JSON
// name (letters, digits, _) that no other field has, and no ",string"
// option; neither the struct nor a field's type has a custom JSON or text
// (un)marshaler. Each user adds its own rules to these.
package flatstruct

import (
	"reflect"
	"strings"
	"sync"
)

// A Field is one field of a flat struct that encoding/json sees.
type Field struct {
	Name  string // its JSON name
	Index int    // its index in the struct
	Kind  reflect.Kind
	Opts  string // the json tag's options, after the name's comma
}

// Fields returns the fields of t that encoding/json sees, and false when
// t is not a flat struct. custom lists interfaces (json.Marshaler, ...)
// that make a type not flat when it, or a pointer to it, implements one.
func Fields(t reflect.Type, custom ...reflect.Type) ([]Field, bool) {
	if t == nil || t.Kind() != reflect.Struct || implements(t, custom) {
		return nil, false
	}
	var fields []Field
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if sf.Anonymous {
			return nil, false // embedded fields: encoding/json's promotion rules
		}
		tag := sf.Tag.Get("json")
		if !sf.IsExported() || tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if strings.Contains(","+opts+",", ",string,") {
			return nil, false
		}
		if name == "" {
			name = sf.Name
		}
		for _, c := range name {
			if !(c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
				return nil, false
			}
		}
		for _, f := range fields {
			if f.Name == name { // encoding/json drops both when encoding
				return nil, false
			}
		}
		ft := sf.Type
		if implements(ft, custom) {
			return nil, false
		}
		switch ft.Kind() {
		case reflect.Bool, reflect.String,
			reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
			reflect.Float32, reflect.Float64:
		default:
			return nil, false
		}
		fields = append(fields, Field{Name: name, Index: i, Kind: ft.Kind(), Opts: opts})
	}
	return fields, true
}

func implements(t reflect.Type, ifaces []reflect.Type) bool {
	pt := reflect.PointerTo(t)
	for _, it := range ifaces {
		if t.Implements(it) || pt.Implements(it) {
			return true
		}
	}
	return false
}

// A Cache holds New's answer (nil when the type is not flat) per
// reflect.Type.
type Cache[T any] struct {
	New func(reflect.Type) *T
	m   sync.Map
}

// Get returns New(t), computed once per t.
func (c *Cache[T]) Get(t reflect.Type) *T {
	if v, ok := c.m.Load(t); ok {
		return v.(*T)
	}
	v := c.New(t)
	c.m.Store(t, v)
	return v
}
