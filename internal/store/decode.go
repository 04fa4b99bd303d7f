package store

import (
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/staged-dev/staged/api"
)

// decodeRecord is api.DecodeJob for the claim, without reflection: the
// record as staged writes it (api.Marshal of an api.Job: known keys, once
// each, strings without escapes) is parsed directly; anything else (an
// unknown or repeated key, an escape, a number or literal out of place,
// invalid JSON) goes to api.DecodeJob, whose answer it then is. The two
// agree on every input the fast path accepts (FuzzDecodeRecord).
//
// The record comes as Redis's reply, a string: its strings (id, type,
// stage names, links) are parts of it, not copies, and live as long as
// the job does.
func decodeRecord(rec string) (*api.Job, error) {
	d := newStringDecoder(rec)
	var j api.Job
	if d.job(&j) && d.end() {
		return &j, nil
	}
	return api.DecodeJob([]byte(rec))
}

// recDecoder is a cursor on a record; every method reports false on
// anything outside the fast path.
type recDecoder struct {
	b []byte
	// src is what b reads in place (newStringDecoder): str takes its
	// strings from it.
	src string
	i   int
	// times holds the times the record's pointers point to, allocated
	// together.
	times []time.Time
}

// newStringDecoder returns a decoder of s, whose bytes it reads in place.
func newStringDecoder(s string) recDecoder {
	return recDecoder{b: unsafe.Slice(unsafe.StringData(s), len(s)), src: s}
}

func (d *recDecoder) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *recDecoder) end() bool { d.ws(); return d.i == len(d.b) }

// peek returns the next non-space byte, 0 at the end.
func (d *recDecoder) peek() byte {
	d.ws()
	if d.i < len(d.b) {
		return d.b[d.i]
	}
	return 0
}

func (d *recDecoder) eat(c byte) bool {
	if d.peek() == c {
		d.i++
		return true
	}
	return false
}

func (d *recDecoder) lit(s string) bool {
	d.ws()
	if len(d.b)-d.i >= len(s) && string(d.b[d.i:d.i+len(s)]) == s {
		d.i += len(s)
		return true
	}
	return false
}

// rawString returns the bytes between the quotes of a string without
// escapes or control characters, in valid UTF-8.
func (d *recDecoder) rawString() ([]byte, bool) {
	if !d.eat('"') {
		return nil, false
	}
	start, ascii := d.i, true
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			s := d.b[start:d.i]
			d.i++
			if !ascii && !utf8.Valid(s) {
				return nil, false
			}
			return s, true
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= 0x80:
			ascii = false
		}
		d.i++
	}
	return nil, false
}

func (d *recDecoder) str(p *string) bool {
	if d.lit("null") {
		return true
	}
	d.ws()
	start := d.i + 1 // after the quote, if it is a string
	s, ok := d.rawString()
	*p = d.src[start : start+len(s)]
	return ok
}

// state is str for a state; a known one is not copied.
func (d *recDecoder) state(p *api.State) bool {
	if d.lit("null") {
		return true
	}
	s, ok := d.rawString()
	switch api.State(s) {
	case api.StateQueued:
		*p = api.StateQueued
	case api.StateRunning:
		*p = api.StateRunning
	case api.StateRetrying:
		*p = api.StateRetrying
	case api.StateSucceeded:
		*p = api.StateSucceeded
	case api.StateFailed:
		*p = api.StateFailed
	case api.StateCanceled:
		*p = api.StateCanceled
	case api.StatePending:
		*p = api.StatePending
	default:
		*p = api.State(s)
	}
	return ok
}

// number returns a JSON number's text.
func (d *recDecoder) number() ([]byte, bool) {
	d.ws()
	start := d.i
	digits := func() int {
		n := 0
		for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
			d.i++
			n++
		}
		return n
	}
	if d.i < len(d.b) && d.b[d.i] == '-' {
		d.i++
	}
	if d.i < len(d.b) && d.b[d.i] == '0' {
		d.i++
	} else if digits() == 0 {
		return nil, false
	}
	if d.i < len(d.b) && d.b[d.i] == '.' {
		d.i++
		if digits() == 0 {
			return nil, false
		}
	}
	if d.i < len(d.b) && (d.b[d.i] == 'e' || d.b[d.i] == 'E') {
		d.i++
		if d.i < len(d.b) && (d.b[d.i] == '+' || d.b[d.i] == '-') {
			d.i++
		}
		if digits() == 0 {
			return nil, false
		}
	}
	return d.b[start:d.i], true
}

func (d *recDecoder) int(p *int) bool {
	if d.lit("null") {
		return true
	}
	s, ok := d.number()
	if !ok {
		return false
	}
	n, err := strconv.ParseInt(string(s), 10, strconv.IntSize)
	*p = int(n)
	return err == nil
}

func (d *recDecoder) float(p *float64) bool {
	if d.lit("null") {
		return true
	}
	s, ok := d.number()
	if !ok {
		return false
	}
	f, err := strconv.ParseFloat(string(s), 64)
	*p = f
	return err == nil
}

func (d *recDecoder) bool(p *bool) bool {
	switch {
	case d.lit("null"):
	case d.lit("true"):
		*p = true
	case d.lit("false"):
		*p = false
	default:
		return false
	}
	return true
}

// time decodes as time.Time's UnmarshalJSON does (it is called).
func (d *recDecoder) time(p *time.Time) bool {
	if d.lit("null") {
		return true
	}
	start := d.i
	if _, ok := d.rawString(); !ok {
		return false
	}
	return p.UnmarshalJSON(d.b[start:d.i]) == nil
}

func (d *recDecoder) timePtr(p **time.Time) bool {
	if d.lit("null") {
		*p = nil
		return true
	}
	if len(d.times) == 0 {
		d.times = make([]time.Time, 12)
	}
	t := &d.times[0]
	d.times = d.times[1:]
	*p = t
	return d.time(t)
}

// raw captures any JSON value (a json.RawMessage; null is kept as null).
func (d *recDecoder) raw(p *json.RawMessage) bool {
	d.ws()
	start := d.i
	if !d.skip(0) {
		return false
	}
	*p = append(json.RawMessage(nil), d.b[start:d.i]...)
	return true
}

// skip passes over one JSON value; escapes are allowed in it.
func (d *recDecoder) skip(depth int) bool {
	if depth > 100 {
		return false
	}
	switch c := d.peek(); {
	case c == '"':
		d.i++
		for d.i < len(d.b) {
			switch c := d.b[d.i]; {
			case c == '"':
				d.i++
				return true
			case c == '\\':
				if !d.escape() {
					return false
				}
				continue
			case c < 0x20:
				return false
			}
			d.i++
		}
		return false
	case c == '{':
		d.i++
		if d.eat('}') {
			return true
		}
		for {
			if d.peek() != '"' || !d.skip(depth+1) || !d.eat(':') || !d.skip(depth+1) {
				return false
			}
			if d.eat('}') {
				return true
			}
			if !d.eat(',') {
				return false
			}
		}
	case c == '[':
		d.i++
		if d.eat(']') {
			return true
		}
		for {
			if !d.skip(depth + 1) {
				return false
			}
			if d.eat(']') {
				return true
			}
			if !d.eat(',') {
				return false
			}
		}
	case c == 't':
		return d.lit("true")
	case c == 'f':
		return d.lit("false")
	case c == 'n':
		return d.lit("null")
	default:
		_, ok := d.number()
		return ok
	}
}

// escape passes over a string's escape sequence, at its backslash.
func (d *recDecoder) escape() bool {
	if d.i+1 >= len(d.b) {
		return false
	}
	switch d.b[d.i+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		d.i += 2
		return true
	case 'u':
		if d.i+6 > len(d.b) {
			return false
		}
		for _, h := range d.b[d.i+2 : d.i+6] {
			if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
				return false
			}
		}
		d.i += 6
		return true
	}
	return false
}

// object calls field for each key of an object (null: none), given as
// the entry of keys it is; a key not in keys, or seen twice, is refused.
func (d *recDecoder) object(keys []string, field func(key string) bool) bool {
	if d.lit("null") {
		return true
	}
	if !d.eat('{') {
		return false
	}
	if d.eat('}') {
		return true
	}
	var seen uint64 // bit i: keys[i] (at most 64 keys)
	for {
		k, ok := d.rawString()
		if !ok || !d.eat(':') {
			return false
		}
		i := 0
		for i < len(keys) && keys[i] != string(k) {
			i++
		}
		if i == len(keys) || seen&(1<<i) != 0 {
			return false
		}
		seen |= 1 << i
		if !field(keys[i]) {
			return false
		}
		if d.eat('}') {
			return true
		}
		if !d.eat(',') {
			return false
		}
	}
}

// The keys of the record's objects, as api.Job's json tags name them.
var (
	jobKeys = []string{"id", "type", "state", "stage", "progress", "stages", "partial", "result", "error", "attempt", "queue",
		"digest", "cancel_requested", "next_attempt_at", "created_at", "started_at", "updated_at", "finished_at", "expires_at", "links"}
	stageRefKeys = []string{"index", "name", "total"}
	errorKeys    = []string{"stage", "message"}
	linksKeys    = []string{"self", "events", "page"}
	stageKeys    = []string{"name", "state", "attempts", "started_at", "finished_at"}
	optionsKeys  = []string{"retention", "timeout", "max_retries", "queue"}
)

func (d *recDecoder) job(j *api.Job) bool {
	if d.peek() != '{' { // a record is an object
		return false
	}
	return d.object(jobKeys, func(k string) bool {
		switch k {
		case "id":
			return d.str(&j.ID)
		case "type":
			return d.str(&j.Type)
		case "state":
			return d.state(&j.State)
		case "stage":
			return d.object(stageRefKeys, func(k string) bool {
				switch k {
				case "index":
					return d.int(&j.Stage.Index)
				case "name":
					return d.str(&j.Stage.Name)
				case "total":
					return d.int(&j.Stage.Total)
				}
				return false
			})
		case "progress":
			return d.float(&j.Progress)
		case "stages":
			return d.stages(&j.Stages, j.Stage.Total)
		case "partial":
			return d.raw(&j.Partial)
		case "result":
			return d.raw(&j.Result)
		case "error":
			if d.lit("null") {
				j.Error = nil
				return true
			}
			j.Error = &api.JobError{}
			return d.object(errorKeys, func(k string) bool {
				switch k {
				case "stage":
					return d.str(&j.Error.Stage)
				case "message":
					return d.str(&j.Error.Message)
				}
				return false
			})
		case "attempt":
			return d.int(&j.Attempt)
		case "queue":
			return d.str(&j.Queue)
		case "digest":
			return d.str(&j.Digest)
		case "cancel_requested":
			return d.bool(&j.CancelRequested)
		case "next_attempt_at":
			return d.timePtr(&j.NextAttemptAt)
		case "created_at":
			return d.time(&j.CreatedAt)
		case "started_at":
			return d.timePtr(&j.StartedAt)
		case "updated_at":
			return d.time(&j.UpdatedAt)
		case "finished_at":
			return d.timePtr(&j.FinishedAt)
		case "expires_at":
			return d.time(&j.ExpiresAt)
		case "links":
			return d.object(linksKeys, func(k string) bool {
				switch k {
				case "self":
					return d.str(&j.Links.Self)
				case "events":
					return d.str(&j.Links.Events)
				case "page":
					return d.str(&j.Links.Page)
				}
				return false
			})
		}
		return false
	})
}

// stages decodes the list of stages; total (the record's stage.total,
// before it) is how many there are likely to be.
func (d *recDecoder) stages(p *[]api.StageStatus, total int) bool {
	if d.lit("null") {
		*p = nil
		return true
	}
	if !d.eat('[') {
		return false
	}
	ss := make([]api.StageStatus, 0, min(max(total, 0), 128))
	if !d.eat(']') {
		for {
			var s api.StageStatus
			if d.peek() != '{' {
				return false
			}
			ok := d.object(stageKeys, func(k string) bool {
				switch k {
				case "name":
					return d.str(&s.Name)
				case "state":
					return d.state(&s.State)
				case "attempts":
					return d.int(&s.Attempts)
				case "started_at":
					return d.timePtr(&s.StartedAt)
				case "finished_at":
					return d.timePtr(&s.FinishedAt)
				}
				return false
			})
			if !ok {
				return false
			}
			ss = append(ss, s)
			if d.eat(']') {
				break
			}
			if !d.eat(',') {
				return false
			}
		}
	}
	*p = ss
	return true
}

// decodeOptions is json.Unmarshal of a job's options (the claim ignores
// an error, as before), on the same fast path.
func decodeOptions(opts string, o *api.Options) {
	d := newStringDecoder(opts)
	var v api.Options
	ok := d.peek() == '{' && d.object(optionsKeys, func(k string) bool {
		switch k {
		case "retention":
			return d.duration(&v.Retention)
		case "timeout":
			return d.duration(&v.Timeout)
		case "max_retries":
			return d.int(&v.MaxRetries)
		case "queue":
			return d.str(&v.Queue)
		}
		return false
	}) && d.end()
	if ok {
		*o = v
		return
	}
	_ = json.Unmarshal([]byte(opts), o)
}

func (d *recDecoder) duration(p *time.Duration) bool {
	if d.lit("null") {
		return true
	}
	s, ok := d.number()
	if !ok {
		return false
	}
	n, err := strconv.ParseInt(string(s), 10, 64)
	*p = time.Duration(n)
	return err == nil
}
