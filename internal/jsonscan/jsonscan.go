// Package jsonscan recognises plain JSON at a glance, for the fast paths
// of the submit: strings without escapes, numbers, literals, and objects
// and arrays of them with no name twice. Each function returns where the
// value ends, or -1 for anything else (an escape, a control character,
// invalid UTF-8, a repeated name, a syntax error, ...): the caller then
// leaves the bytes to a full decoder, whose verdict and message count.
// Nothing here allocates.
package jsonscan

import (
	"bytes"
	"unicode/utf8"
)

// MaxDepth and MaxNames bound what Value takes: deeper nesting, and objects
// with more names (which it compares pairwise), are left to the decoder.
const (
	MaxDepth = 16
	MaxNames = 32
)

// WS returns the index of the first byte at or after i that is not JSON
// whitespace.
func WS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// String returns the end (after the closing quote) of the string at b[i]
// when it has no escape and no control character and is valid UTF-8; with
// ascii, only printable ASCII other than <, > and & (which encoding/json
// writes escaped) is taken. Its content is then b[i+1 : end-1] as it is.
func String(b []byte, i int, ascii bool) int {
	if i >= len(b) || b[i] != '"' {
		return -1
	}
	utf := false
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			if utf && !utf8.Valid(b[i+1:j]) {
				return -1
			}
			return j + 1
		case c < 0x20 || c == '\\':
			return -1
		case c >= 0x7f || c == '<' || c == '>' || c == '&':
			if ascii {
				return -1
			}
			utf = utf || c >= 0x80
		}
	}
	return -1
}

// Number returns the end of the JSON number at b[i], or -1, and whether
// it is an integer without fraction or exponent.
func Number(b []byte, i int) (end int, integral bool) {
	j := i
	if j < len(b) && b[j] == '-' {
		j++
	}
	switch {
	case j < len(b) && b[j] == '0':
		j++
	case j < len(b) && b[j] >= '1' && b[j] <= '9':
		j = digits(b, j)
	default:
		return -1, false
	}
	integral = true
	if j < len(b) && b[j] == '.' {
		k := digits(b, j+1)
		if k == j+1 {
			return -1, false
		}
		j, integral = k, false
	}
	if j < len(b) && (b[j] == 'e' || b[j] == 'E') {
		j++
		if j < len(b) && (b[j] == '+' || b[j] == '-') {
			j++
		}
		k := digits(b, j)
		if k == j {
			return -1, false
		}
		j, integral = k, false
	}
	return j, integral
}

func digits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

// Int returns the value of the integer b[i:end] that Number found
// integral, and false when it has more than 18 digits (it might not fit).
func Int(b []byte, i, end int) (int64, bool) {
	neg := b[i] == '-'
	if neg {
		i++
	}
	if end-i > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b[i:end] {
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

// Literal returns the end of true, false or null at b[i], or -1.
func Literal(b []byte, i int) int {
	for _, lit := range [...]string{"true", "false", "null"} {
		if bytes.HasPrefix(b[i:], []byte(lit)) {
			return i + len(lit)
		}
	}
	return -1
}

// Value returns the end of the plain JSON value at b[i] (no whitespace
// before it), or -1.
func Value(b []byte, i int) int { return value(b, i, 0) }

func value(b []byte, i, depth int) int {
	if i >= len(b) {
		return -1
	}
	switch c := b[i]; {
	case c == '"':
		return String(b, i, false)
	case c == '-' || c >= '0' && c <= '9':
		end, _ := Number(b, i)
		return end
	case c == '{':
		if depth >= MaxDepth {
			return -1
		}
		return object(b, i, depth+1)
	case c == '[':
		if depth >= MaxDepth {
			return -1
		}
		return array(b, i, depth+1)
	}
	return Literal(b, i)
}

func object(b []byte, i, depth int) int {
	var names [MaxNames][]byte
	n := 0
	if i = WS(b, i+1); i < len(b) && b[i] == '}' {
		return i + 1
	}
	for {
		end := String(b, i, false)
		if end < 0 || n == MaxNames {
			return -1
		}
		name := b[i+1 : end-1]
		for _, seen := range names[:n] {
			if bytes.Equal(seen, name) {
				return -1
			}
		}
		names[n] = name
		n++
		if i = WS(b, end); i >= len(b) || b[i] != ':' {
			return -1
		}
		if end = value(b, WS(b, i+1), depth); end < 0 {
			return -1
		}
		if i = WS(b, end); i >= len(b) {
			return -1
		}
		if b[i] == '}' {
			return i + 1
		}
		if b[i] != ',' {
			return -1
		}
		i = WS(b, i+1)
	}
}

func array(b []byte, i, depth int) int {
	if i = WS(b, i+1); i < len(b) && b[i] == ']' {
		return i + 1
	}
	for {
		end := value(b, i, depth)
		if end < 0 {
			return -1
		}
		if i = WS(b, end); i >= len(b) {
			return -1
		}
		if b[i] == ']' {
			return i + 1
		}
		if b[i] != ',' {
			return -1
		}
		i = WS(b, i+1)
	}
}
