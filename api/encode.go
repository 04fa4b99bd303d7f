package api

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// appendJob appends j as Marshal's encoding/json path writes it, without
// reflection: the same keys in the same order, the same escapes and number
// forms. It reports false, with b unchanged in meaning, for what
// encoding/json refuses or that it leaves to encoding/json (a time outside
// RFC 3339, a progress that is NaN or infinite, a partial or result that
// is not valid JSON); Marshal then takes encoding/json's answer. The two
// write the same bytes for every record (TestMarshalJob, FuzzMarshalJob).
// The store's fast decoder (internal/store/decode.go) reads it back.
func appendJob(b []byte, j *Job) ([]byte, bool) {
	ok := true
	b = append(b, `{"id":`...)
	b = appendString(b, j.ID)
	b = append(b, `,"type":`...)
	b = appendString(b, j.Type)
	b = append(b, `,"state":`...)
	b = appendString(b, string(j.State))
	b = append(b, `,"stage":{"index":`...)
	b = strconv.AppendInt(b, int64(j.Stage.Index), 10)
	b = append(b, `,"name":`...)
	b = appendString(b, j.Stage.Name)
	b = append(b, `,"total":`...)
	b = strconv.AppendInt(b, int64(j.Stage.Total), 10)
	b = append(b, `},"progress":`...)
	if b, ok = appendFloat(b, j.Progress, 64); !ok {
		return b, false
	}
	b = append(b, `,"stages":`...)
	if j.Stages == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range j.Stages {
			if i > 0 {
				b = append(b, ',')
			}
			if b, ok = appendStage(b, &j.Stages[i]); !ok {
				return b, false
			}
		}
		b = append(b, ']')
	}
	b = append(b, `,"partial":`...)
	if b, ok = appendRaw(b, j.Partial); !ok {
		return b, false
	}
	b = append(b, `,"result":`...)
	if b, ok = appendRaw(b, j.Result); !ok {
		return b, false
	}
	b = append(b, `,"error":`...)
	if j.Error == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, `{"stage":`...)
		b = appendString(b, j.Error.Stage)
		b = append(b, `,"message":`...)
		b = appendString(b, j.Error.Message)
		b = append(b, '}')
	}
	b = append(b, `,"attempt":`...)
	b = strconv.AppendInt(b, int64(j.Attempt), 10)
	b = append(b, `,"queue":`...)
	b = appendString(b, j.Queue)
	if j.Digest != "" {
		b = append(b, `,"digest":`...)
		b = appendString(b, j.Digest)
	}
	if j.CancelRequested {
		b = append(b, `,"cancel_requested":true`...)
	}
	if j.NextAttemptAt != nil {
		b = append(b, `,"next_attempt_at":`...)
		if b, ok = appendTime(b, *j.NextAttemptAt); !ok {
			return b, false
		}
	}
	for _, f := range [...]struct {
		key string
		t   *time.Time
	}{
		{`,"created_at":`, &j.CreatedAt},
		{`,"started_at":`, j.StartedAt},
		{`,"updated_at":`, &j.UpdatedAt},
		{`,"finished_at":`, j.FinishedAt},
		{`,"expires_at":`, &j.ExpiresAt},
	} {
		b = append(b, f.key...)
		if b, ok = appendTimePtr(b, f.t); !ok {
			return b, false
		}
	}
	b = append(b, `,"links":{"self":`...)
	b = appendString(b, j.Links.Self)
	b = append(b, `,"events":`...)
	b = appendString(b, j.Links.Events)
	b = append(b, `,"page":`...)
	b = appendString(b, j.Links.Page)
	return append(b, "}}"...), true
}

func appendStage(b []byte, s *StageStatus) ([]byte, bool) {
	ok := true
	b = append(b, `{"name":`...)
	b = appendString(b, s.Name)
	b = append(b, `,"state":`...)
	b = appendString(b, string(s.State))
	b = append(b, `,"attempts":`...)
	b = strconv.AppendInt(b, int64(s.Attempts), 10)
	b = append(b, `,"started_at":`...)
	if b, ok = appendTimePtr(b, s.StartedAt); !ok {
		return b, false
	}
	b = append(b, `,"finished_at":`...)
	if b, ok = appendTimePtr(b, s.FinishedAt); !ok {
		return b, false
	}
	return append(b, '}'), true
}

func appendTimePtr(b []byte, t *time.Time) ([]byte, bool) {
	if t == nil {
		return append(b, "null"...), true
	}
	return appendTime(b, *t)
}

// appendTime writes t as time.Time's MarshalJSON does (RFC 3339 with
// nanoseconds), or reports false where MarshalJSON fails.
func appendTime(b []byte, t time.Time) ([]byte, bool) {
	b = append(b, '"')
	tb, err := t.AppendText(b)
	if err != nil {
		return b, false
	}
	return append(tb, '"'), true
}

// appendFloat writes f as encoding/json writes a float of that many bits
// (ES6 number formatting), or reports false for NaN and the infinities, which it
// refuses.
func appendFloat(b []byte, f float64, bits int) ([]byte, bool) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return b, false
	}
	abs, format := math.Abs(f), byte('f')
	if abs != 0 && (bits == 64 && (abs < 1e-6 || abs >= 1e21) || bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21)) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, bits)
	if format == 'e' {
		// e-09 to e-9, as encoding/json does
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, true
}

// appendRaw writes a json.RawMessage as encoding/json does: null when nil,
// else compacted, or reports false when it is not valid JSON.
func appendRaw(b []byte, raw json.RawMessage) ([]byte, bool) {
	if raw == nil {
		return append(b, "null"...), true
	}
	if compactJSON(raw) {
		return append(b, raw...), true
	}
	buf := bytes.NewBuffer(b)
	if err := json.Compact(buf, raw); err != nil {
		return b, false
	}
	return buf.Bytes(), true
}

// compactJSON reports whether raw is one valid JSON value with no
// whitespace outside its strings, which json.Compact leaves as it is.
// Staged writes its raw values (outputs, partial results) so; anything
// else it leaves to json.Compact.
func compactJSON(raw []byte) bool {
	s := compactScanner{b: raw}
	return s.value(0) && s.i == len(raw)
}

type compactScanner struct {
	b []byte
	i int
}

func (s *compactScanner) next() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *compactScanner) value(depth int) bool {
	if depth > 100 {
		return false
	}
	switch c := s.next(); {
	case c == '"':
		return s.str()
	case c == '{':
		s.i++
		if s.next() == '}' {
			s.i++
			return true
		}
		for {
			if s.next() != '"' || !s.str() || s.next() != ':' {
				return false
			}
			s.i++
			if !s.value(depth + 1) {
				return false
			}
			switch s.next() {
			case ',':
				s.i++
			case '}':
				s.i++
				return true
			default:
				return false
			}
		}
	case c == '[':
		s.i++
		if s.next() == ']' {
			s.i++
			return true
		}
		for {
			if !s.value(depth + 1) {
				return false
			}
			switch s.next() {
			case ',':
				s.i++
			case ']':
				s.i++
				return true
			default:
				return false
			}
		}
	case c == 't':
		return s.lit("true")
	case c == 'f':
		return s.lit("false")
	case c == 'n':
		return s.lit("null")
	case c == '-' || '0' <= c && c <= '9':
		return s.number()
	}
	return false
}

func (s *compactScanner) lit(l string) bool {
	if len(s.b)-s.i >= len(l) && string(s.b[s.i:s.i+len(l)]) == l {
		s.i += len(l)
		return true
	}
	return false
}

// str passes over a string at its quote; escapes are checked as JSON's
// grammar says, and the bytes of the string are not (json.Compact copies
// them as they are).
func (s *compactScanner) str() bool {
	s.i++
	for s.i < len(s.b) {
		switch c := s.b[s.i]; {
		case c == '"':
			s.i++
			return true
		case c < 0x20:
			return false
		case c == '\\':
			if s.i+1 >= len(s.b) {
				return false
			}
			switch s.b[s.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i += 2
			case 'u':
				if s.i+6 > len(s.b) {
					return false
				}
				for _, h := range s.b[s.i+2 : s.i+6] {
					if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
						return false
					}
				}
				s.i += 6
			default:
				return false
			}
			continue
		}
		s.i++
	}
	return false
}

func (s *compactScanner) number() bool {
	digits := func() bool {
		start := s.i
		for s.i < len(s.b) && '0' <= s.b[s.i] && s.b[s.i] <= '9' {
			s.i++
		}
		return s.i > start
	}
	if s.next() == '-' {
		s.i++
	}
	if s.next() == '0' {
		s.i++
	} else if !digits() {
		return false
	}
	if s.next() == '.' {
		s.i++
		if !digits() {
			return false
		}
	}
	if c := s.next(); c == 'e' || c == 'E' {
		s.i++
		if c := s.next(); c == '+' || c == '-' {
			s.i++
		}
		if !digits() {
			return false
		}
	}
	return true
}

// appendString writes s quoted as encoding/json does with HTML escaping
// off: \" \\ \b \f \n \r \t, \u00XX for the other control characters,
// \ufffd for each byte of invalid UTF-8, \u2028 and \u2029 escaped.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"
