package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/internal/catalog"
	"github.com/staged-dev/staged/internal/jsonscan"
	"github.com/staged-dev/staged/internal/store"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/labstack/echo/v4"

	"github.com/staged-dev/staged/tasks"
)

// Submit limits.
const (
	// MaxRetriesLimit is the largest max_retries a submit may ask for.
	MaxRetriesLimit = 25
	// MaxRetention is the longest retention a submit may ask for.
	MaxRetention = 30 * 24 * time.Hour
	// MaxTimeout is the longest per-attempt timeout a submit may ask for:
	// the live TTL of a job's keys, which a silent stage must not outlive.
	MaxTimeout = store.LiveTTLDefault
	// maxQueueName is the longest queue name.
	maxQueueName = 64
	// maxIdempotencyKey is the longest Idempotency-Key.
	maxIdempotencyKey = 255
)

// submitRequest is the body of POST /v1/jobs.
type submitRequest struct {
	Type       string          `json:"type"`
	Input      json.RawMessage `json:"input"`
	Retention  string          `json:"retention"`
	Timeout    string          `json:"timeout"`
	MaxRetries *int            `json:"max_retries"`
	Queue      string          `json:"queue"`
}

const submitFields = "type, input, retention, timeout, max_retries, queue"

// submission is a validated submit: the pipeline, the normalised input
// (defaults applied), the job's stages (which may depend on the input) and
// the options with every default resolved.
type submission struct {
	pipeline *tasks.Pipeline
	digest   string // of the definition the job is accepted under
	input    json.RawMessage
	stages   []tasks.Stage // nil when the worker builds them from the input
	opts     api.Options
	warnings []byte // a JSON array said in the answer (no live worker runs the pipeline), or nil
}

// noWorkerWarning is the warnings of a submit accepted under entry e,
// which no live worker runs, as withWarnings inserts them. The server
// keeps the last one made: a run of submits of one pipeline formats and
// encodes it once per catalogue read.
type noWorkerWarning struct {
	e    *catalog.Entry
	json []byte
}

// noWorkerWarning returns the warnings of a submit accepted under e.
func (s *Server) noWorkerWarning(e *catalog.Entry) []byte {
	if w := s.noWorker.Load(); w != nil && w.e == e {
		return w.json
	}
	msg := fmt.Sprintf("no live worker runs pipeline %q right now (last seen %s); "+
		"the job waits in its queue until one does", e.Def.Name, e.LastSeen.Format(time.RFC3339))
	b, _ := json.Marshal([]string{msg})
	s.noWorker.Store(&noWorkerWarning{e: e, json: b})
	return b
}

// digest identifies the submission for Idempotency-Key: the SHA-256 of its
// normalised form, so that formatting and defaults spelt out or left out
// do not make two identical submits differ.
func (s *submission) sum() string {
	b, _ := json.Marshal(struct {
		Type    string          `json:"type"`
		Input   json.RawMessage `json:"input"`
		Options api.Options     `json:"options"`
	}{s.pipeline.Name, s.input, s.opts})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// readSubmitBody checks a submit's Content-Type and reads its body.
func (s *Server) readSubmitBody(req *http.Request) ([]byte, error) {
	if !isJSON(req.Header.Get(echo.HeaderContentType)) {
		return nil, echo.NewHTTPError(http.StatusUnsupportedMediaType,
			fmt.Sprintf("send the job as JSON with Content-Type: application/json (got %q)", req.Header.Get(echo.HeaderContentType)))
	}
	return readBody(req, s.cfg.MaxBody)
}

// readSubmission validates a submit body. It touches no Redis but the
// pipeline catalogue's, when its cache must be read (within ctx).
func (s *Server) readSubmission(ctx context.Context, body []byte) (*submission, error) {
	var err error
	var r submitRequest
	if err := decodeStrict(body, &r); err != nil {
		return nil, err
	}
	sub := &submission{}
	var snap *catalog.Snapshot
	if r.Type == "" {
		snap, err = s.catalog.Get(ctx, 0) // only for the message
	} else {
		snap, err = s.catalog.Lookup(ctx, r.Type)
	}
	if err != nil {
		return nil, &tasks.Error{Code: tasks.EUNAVAILABLE, Message: "the pipeline catalogue is unavailable (Redis does not answer); try again shortly", Err: err}
	}
	if r.Type == "" {
		return nil, invalid("type", "field type is required: one of %s", typeList(snap))
	}
	entries, ok := snap.Entries(r.Type)
	if !ok {
		return nil, &tasks.Error{Code: tasks.EUNPROCESSABLE, Field: "type",
			Message: fmt.Sprintf("unknown job type %q: no worker has published it; the known types are %s", r.Type, typeList(snap))}
	}
	e := entries[0]
	if sub.pipeline, err = e.Pipeline(); err != nil {
		return nil, &tasks.Error{Code: tasks.EUNPROCESSABLE, Field: "type",
			Message: fmt.Sprintf("job type %q cannot be accepted: its published definition is unusable: %v", r.Type, err)}
	}
	sub.digest = e.Def.Digest
	if e.Workers == 0 {
		sub.warnings = s.noWorkerWarning(e)
	}
	if sub.opts, err = s.options(&r, sub.pipeline); err != nil {
		return nil, err
	}
	if sub.input, err = sub.pipeline.Input.Normalize(r.Input); err != nil {
		return nil, err
	}
	if !e.Def.StagesFromInput {
		sub.stages = sub.pipeline.Stages
	}
	return sub, nil
}

// options validates the request's options and resolves their defaults.
func (s *Server) options(r *submitRequest, p *tasks.Pipeline) (api.Options, error) {
	o := api.Options{Retention: s.cfg.Retention, Timeout: p.Timeout, MaxRetries: p.MaxRetries, Queue: store.DefaultQueue}
	if o.Timeout <= 0 {
		o.Timeout = tasks.DefaultJobTimeout
	}
	if d, err := durationField("retention", r.Retention, MaxRetention); err != nil {
		return o, err
	} else if d > 0 {
		o.Retention = d
	}
	if d, err := durationField("timeout", r.Timeout, MaxTimeout); err != nil {
		return o, err
	} else if d > 0 {
		o.Timeout = d
	}
	if r.MaxRetries != nil {
		if n := *r.MaxRetries; n < 0 || n > MaxRetriesLimit {
			return o, tasks.FieldError("max_retries", "field max_retries must be from 0 to %d, not %d", MaxRetriesLimit, n)
		}
		o.MaxRetries = *r.MaxRetries
	}
	if r.Queue != "" {
		if !ValidQueueName(r.Queue) {
			return o, invalid("queue", "field queue must be 1 to %d characters of a-z, 0-9, _ and -, not %q", maxQueueName, r.Queue)
		}
		o.Queue = r.Queue
	}
	// Only a configured queue: no worker takes jobs from another one.
	if !slices.Contains(s.cfg.Queues, o.Queue) {
		if r.Queue == "" {
			return o, tasks.FieldError("queue", "field queue is required: this API has no %q queue; its queues are %s",
				store.DefaultQueue, strings.Join(s.cfg.Queues, ", "))
		}
		return o, tasks.FieldError("queue", "unknown queue %q: the configured queues are %s",
			r.Queue, strings.Join(s.cfg.Queues, ", "))
	}
	return o, nil
}

// durationField parses a duration option: "" is 0 (the default).
func durationField(name, v string, limit time.Duration) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	switch {
	case err != nil:
		return 0, invalid(name, "field %s must be a duration like \"30s\" or \"2h\", not %q", name, v)
	case d < 0:
		return 0, invalid(name, "field %s must not be negative, got %q", name, v)
	case d > limit:
		return 0, tasks.FieldError(name, "field %s must be at most %s, got %q", name, limit, v)
	}
	return d, nil
}

// ValidQueueName reports whether q can name a queue: 1 to 64 characters of
// a-z, 0-9, _ and -.
func ValidQueueName(q string) bool {
	if len(q) == 0 || len(q) > maxQueueName {
		return false
	}
	for i := 0; i < len(q); i++ {
		c := q[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func typeList(snap *catalog.Snapshot) string {
	names := snap.Names()
	if len(names) == 0 {
		return "(none: no worker has published a pipeline yet)"
	}
	return strings.Join(names, ", ")
}

// isJSON reports whether a Content-Type is application/json (any parameters).
func isJSON(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	return strings.EqualFold(strings.TrimSpace(mt), echo.MIMEApplicationJSON)
}

// readBody reads the whole (size-limited) body. Going over the limit is an
// *http.MaxBytesError.
func readBody(req *http.Request, limit int64) ([]byte, error) {
	n := int64(0)
	if req.ContentLength > 0 && req.ContentLength <= limit {
		n = req.ContentLength
	}
	// ReadFrom wants bytes.MinRead free before each read, the one that
	// sees EOF too: with that room from the start it never grows.
	buf := bytes.NewBuffer(make([]byte, 0, n+bytes.MinRead))
	if _, err := buf.ReadFrom(req.Body); err != nil {
		var me *http.MaxBytesError
		if errors.As(err, &me) {
			return nil, me
		}
		return nil, invalid("", "could not read the request body: %v", err)
	}
	return buf.Bytes(), nil
}

// decodeStrict decodes one JSON object from body into v, refusing unknown
// fields and trailing data, with messages that say where the problem is.
//
// encoding/json alone is lenient where a request must not be: it rewrites
// invalid UTF-8 to U+FFFD, lets the last of two equal keys win, and matches
// keys case-insensitively. So the body is first checked with
// github.com/go-json-experiment/json's jsontext decoder (the proposed
// encoding/json/v2), which rejects invalid UTF-8 and duplicate names at
// every depth (the input included), and the top-level names are compared
// exactly; then encoding/json decodes, with the messages clients know.
//
// A plain body (decodePlain) skips both: the verdict and the value are the
// same (FuzzDecodePlain compares them), at a tenth of the cost.
func decodeStrict(body []byte, v *submitRequest) error {
	if decodePlain(body, v) {
		return nil
	}
	return decodeFull(body, v)
}

// decodeFull is decodeStrict's way for every body: jsontext, then
// encoding/json.
func decodeFull(body []byte, v *submitRequest) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return invalid("", `request body is empty: send a JSON object like {"type": "...", "input": {...}}`)
	}
	unknown, err := checkStrict(body)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	// Into a copy, which escapes to the heap (encoding/json), so that v
	// need not: the caller's request stays on its stack on the plain way.
	r := *v
	err = dec.Decode(&r)
	*v = r
	if err != nil {
		return jsonError(body, err)
	}
	if rest := bytes.TrimSpace(body[dec.InputOffset():]); len(rest) > 0 {
		line, col := position(body, int(dec.InputOffset()))
		return invalid("", "request body has data after the JSON object, at line %d, column %d", line, col)
	}
	if unknown != "" {
		return invalid(unknown, "unknown field %q: the fields are %s (names are case-sensitive)", unknown, submitFields)
	}
	return nil
}

// decodePlain decodes body into v when it is a plain submit, in one pass
// without allocating: an object of the exact field names, each at most
// once, whose strings have no escapes, whose max_retries is a plain
// integer, and whose input is plain JSON (jsonscan.Value: valid UTF-8, no
// name twice at any depth), with nothing after it. For any other body it
// returns false and leaves v alone: decodeFull decides, and words the
// refusals.
func decodePlain(body []byte, v *submitRequest) bool {
	var r submitRequest
	var seen [6]bool
	i := jsonscan.WS(body, 0)
	if i >= len(body) || body[i] != '{' {
		return false
	}
	if i = jsonscan.WS(body, i+1); i < len(body) && body[i] == '}' {
		i++
	} else {
		for {
			end := jsonscan.String(body, i, true)
			if end < 0 {
				return false
			}
			f := slices.Index(submitFieldNames, string(body[i+1:end-1]))
			if f < 0 || seen[f] {
				return false
			}
			seen[f] = true
			if i = jsonscan.WS(body, end); i >= len(body) || body[i] != ':' {
				return false
			}
			i = jsonscan.WS(body, i+1)
			if end = plainField(body, i, f, &r); end < 0 {
				return false
			}
			if i = jsonscan.WS(body, end); i >= len(body) {
				return false
			}
			if body[i] == '}' {
				i++
				break
			}
			if body[i] != ',' {
				return false
			}
			i = jsonscan.WS(body, i+1)
		}
	}
	if jsonscan.WS(body, i) != len(body) {
		return false
	}
	*v = r
	return true
}

// plainField reads the value at body[i] of field submitFieldNames[f] into
// r, as encoding/json would (null leaves a field as it is), and returns
// its end, or -1 when it is not plain.
func plainField(body []byte, i, f int, r *submitRequest) int {
	if submitFieldNames[f] == "input" {
		end := jsonscan.Value(body, i)
		if end >= 0 {
			r.Input = body[i:end:end]
		}
		return end
	}
	if end := jsonscan.Literal(body, i); end >= 0 {
		if string(body[i:end]) == "null" {
			return end
		}
		return -1
	}
	if submitFieldNames[f] == "max_retries" {
		end, integral := jsonscan.Number(body, i)
		if end < 0 || !integral {
			return -1
		}
		n, ok := jsonscan.Int(body, i, end)
		if !ok || int64(int(n)) != n {
			return -1
		}
		m := int(n)
		r.MaxRetries = &m
		return end
	}
	end := jsonscan.String(body, i, false)
	if end < 0 {
		return -1
	}
	s := string(body[i+1 : end-1])
	switch submitFieldNames[f] {
	case "type":
		r.Type = s
	case "retention":
		r.Retention = s
	case "timeout":
		r.Timeout = s
	case "queue":
		r.Queue = s
	}
	return end
}

// submitFieldNames are the exact names of submitRequest's fields.
var submitFieldNames = strings.Split(submitFields, ", ")

// checkStrict reports invalid UTF-8 and duplicate names anywhere in the
// first JSON value of body. Other syntax errors are left to encoding/json,
// whose messages the API has always given. When that value is an object,
// it also returns its first top-level name that is not exactly one of
// submitFieldNames (encoding/json matches names case-insensitively), for
// decodeStrict to refuse once encoding/json has accepted the body: one
// pass over the body finds both.
func checkStrict(body []byte) (unknown string, err error) {
	d := jsontext.NewDecoder(bytes.NewReader(body))
	if d.PeekKind() == '{' {
		_, err = d.ReadToken()
		for err == nil && d.PeekKind() != '}' {
			var name jsontext.Token
			if name, err = d.ReadToken(); err == nil {
				if n := name.String(); unknown == "" && !slices.Contains(submitFieldNames, n) {
					unknown = n
				}
				err = d.SkipValue()
			}
		}
		if err == nil {
			_, err = d.ReadToken()
		}
	} else {
		_, err = d.ReadValue()
	}
	var se *jsontext.SyntacticError
	if err == nil || !errors.As(err, &se) {
		return unknown, nil
	}
	where := "the request body"
	if p := se.JSONPointer.Parent(); p != "" && errors.Is(se.Err, jsontext.ErrDuplicateName) {
		where = "the object at " + string(p)
	}
	switch {
	case errors.Is(se.Err, jsontext.ErrDuplicateName):
		name := se.JSONPointer.LastToken()
		return "", invalid(fieldOf(se.JSONPointer), "request body has the key %q twice in %s: each key may appear once", name, where)
	case strings.Contains(se.Err.Error(), "invalid UTF-8"):
		line, col := position(body, int(se.ByteOffset))
		return "", invalid(fieldOf(se.JSONPointer), "request body is not valid UTF-8, at line %d, column %d (byte %d): JSON text must be UTF-8", line, col, se.ByteOffset)
	}
	return "", nil
}

// fieldOf turns a JSON pointer like /input/n into the field name input.n.
func fieldOf(p jsontext.Pointer) string {
	return strings.ReplaceAll(strings.TrimPrefix(string(p), "/"), "/", ".")
}

func jsonError(body []byte, err error) error {
	var (
		se *json.SyntaxError
		te *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &se):
		line, col := position(body, int(se.Offset)-1)
		return invalid("", "request body is not valid JSON: %s, at line %d, column %d (byte %d)", se.Error(), line, col, se.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF):
		line, col := position(body, len(body))
		return invalid("", "request body is not valid JSON: it ends too early, at line %d, column %d", line, col)
	case errors.As(err, &te):
		if te.Field == "" {
			return invalid("", "request body must be a JSON object, not %s", te.Value)
		}
		return invalid(te.Field, "field %s must be %s, not %s", te.Field, wantType(te.Field), te.Value)
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return invalid(strings.Trim(name, `"`), "unknown field %s: the fields are %s", name, submitFields)
	}
	return invalid("", "request body is not valid JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
}

func wantType(field string) string {
	switch field {
	case "retention", "timeout":
		return `a duration string like "30s" or "2h"`
	case "max_retries":
		return fmt.Sprintf("an integer from 0 to %d", MaxRetriesLimit)
	default:
		return "a string"
	}
}

// position returns the 1-based line and column of byte offset off.
func position(b []byte, off int) (line, col int) {
	off = min(max(off, 0), len(b))
	line = 1 + bytes.Count(b[:off], []byte{'\n'})
	col = off - bytes.LastIndexByte(b[:off], '\n')
	return line, col
}

// idempotencyKey returns the request's Idempotency-Key header, "" if none.
func idempotencyKey(r *http.Request) (string, error) {
	k := r.Header.Get("Idempotency-Key")
	if k == "" {
		return "", nil
	}
	if len(k) > maxIdempotencyKey {
		return "", invalid("Idempotency-Key", "header Idempotency-Key must be at most %d characters", maxIdempotencyKey)
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] > 0x7e {
			return "", invalid("Idempotency-Key", "header Idempotency-Key must be printable ASCII")
		}
	}
	return k, nil
}
