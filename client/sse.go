package client

import (
	"bufio"
	"bytes"
	"io"
	"strconv"
	"strings"
	"time"
)

// sseEvent is one dispatched Server-Sent Event.
type sseEvent struct {
	// ID is the last event ID when the event was dispatched: the event's
	// own id: field, or the latest one before it.
	ID string
	// Type is the event: field, "message" when there was none.
	Type string
	// Data is the data: lines joined by "\n".
	Data string
}

// sseReader parses a text/event-stream as the WHATWG HTML standard
// (§9.2.6) says: lines end in CRLF, LF or CR; ":" starts a comment; a field
// name is followed by an optional ":" and one optional space; "data" lines
// accumulate; "id" sets the last event ID (ignored when it holds a NUL);
// "retry" takes only digits; a blank line dispatches; an event without data
// is not dispatched; an unfinished event at the end of the stream is dropped.
type sseReader struct {
	sc      *bufio.Scanner
	lastID  string
	retry   time.Duration
	started bool
}

func newSSEReader(r io.Reader, maxLine int) *sseReader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, min(4096, maxLine)), maxLine)
	sc.Split(newlineSplitter())
	return &sseReader{sc: sc}
}

// LastEventID is the id to send as Last-Event-ID when reconnecting.
func (r *sseReader) LastEventID() string { return r.lastID }

// Retry is the reconnection time the server asked for, 0 if it did not.
func (r *sseReader) Retry() time.Duration { return r.retry }

// Next returns the next event. At the end of the stream it returns io.EOF,
// or the read error that ended it.
func (r *sseReader) Next() (sseEvent, error) {
	var (
		data    strings.Builder
		hasData bool
		typ     string
		id      = r.lastID
	)
	for r.sc.Scan() {
		line := r.sc.Text()
		if !r.started {
			r.started = true
			line = strings.TrimPrefix(line, "\uFEFF")
		}
		if line == "" {
			r.lastID = id
			if !hasData {
				typ = ""
				continue
			}
			if typ == "" {
				typ = "message"
			}
			return sseEvent{ID: id, Type: typ, Data: data.String()}, nil
		}
		if line[0] == ':' {
			continue
		}
		field, value, found := strings.Cut(line, ":")
		if found {
			value = strings.TrimPrefix(value, " ")
		}
		switch field {
		case "event":
			typ = value
		case "data":
			if hasData {
				data.WriteByte('\n')
			}
			data.WriteString(value)
			hasData = true
		case "id":
			if !strings.ContainsRune(value, 0) {
				id = value
			}
		case "retry":
			if n, err := strconv.ParseUint(value, 10, 32); err == nil && isDigits(value) {
				r.retry = time.Duration(n) * time.Millisecond
			}
		}
	}
	if err := r.sc.Err(); err != nil {
		return sseEvent{}, err
	}
	return sseEvent{}, io.EOF
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// newlineSplitter returns a bufio.SplitFunc that yields lines ending in
// "\r\n", "\n" or "\r". A line ending in "\r" is yielded at once (so a
// stream using bare CRs is not held back waiting for the next byte); a "\n"
// right after it is then skipped.
func newlineSplitter() bufio.SplitFunc {
	skipLF := false
	return func(data []byte, atEOF bool) (int, []byte, error) {
		start := 0
		if skipLF && len(data) > 0 {
			skipLF = false
			if data[0] == '\n' {
				start = 1
			}
		}
		if i := bytes.IndexAny(data[start:], "\r\n"); i >= 0 {
			end := start + i
			skipLF = data[end] == '\r'
			return end + 1, data[start:end], nil
		}
		if atEOF && len(data) > start {
			return len(data), data[start:], nil
		}
		return start, nil, nil
	}
}
