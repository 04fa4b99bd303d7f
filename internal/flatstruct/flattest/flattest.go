// Package flattest holds the struct types that the tests of flat structs'
// encoder (api) and decoder (tasks) share.
package flattest

import "time"

type Name string

// All has a field of each kind the fast paths take, omitempty ones, and
// fields encoding/json skips.
type All struct {
	I       int     `json:"i"`
	I8      int8    `json:"i8,omitempty"`
	U16     uint16  `json:"u16"`
	U       uint    `json:"u,omitempty"`
	F       float64 `json:"f"`
	F32     float32 `json:"f32"`
	FE      float64 `json:"fe,omitempty"`
	S       string  `json:"s"`
	SE      string  `json:"se,omitempty"`
	N       Name    `json:"n"`
	B       bool    `json:"b"`
	BE      bool    `json:"be,omitempty"`
	Untaged int
	Skipped int `json:"-"`
	hidden  int
}

var _ = All{}.hidden // encoding/json skips unexported fields

// Types that are not flat.
type (
	Embedded struct {
		All
		X int `json:"x"`
	}
	Pointer struct {
		P *int `json:"p"`
	}
	Quoted struct {
		N int `json:"n,string"`
	}
	Time struct {
		T time.Time `json:"t"`
	}
)
