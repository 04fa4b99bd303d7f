package execstage

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
)

// readLines calls fn with each line of r (without its line ending), at
// most limit(start of the line) bytes of it; cut says the rest of the line
// was dropped. Memory stays within the largest limit however long a line
// is. It returns fn's first error, or nil at the end of r.
func readLines(r io.Reader, limit func(first []byte) int, fn func(line []byte, cut bool) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var line []byte
	for {
		max, seen := -1, 0
		line = line[:0]
		for {
			chunk, err := br.ReadSlice('\n')
			if max < 0 && len(chunk) > 0 {
				max = limit(chunk)
			}
			seen += len(chunk)
			if room := max - len(line); room > 0 {
				line = append(line, chunk[:min(len(chunk), room)]...)
			}
			if err == bufio.ErrBufferFull {
				continue
			}
			if seen > 0 {
				content := seen
				if bytes.HasSuffix(chunk, []byte("\n")) {
					content--
				}
				if ferr := fn(trimEOL(line), content > max); ferr != nil {
					return ferr
				}
			}
			if err != nil {
				return nil // EOF, or the pipe was closed
			}
			break
		}
	}
}

func trimEOL(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte("\n"))
	return bytes.TrimSuffix(b, []byte("\r"))
}

// discard reads r to its end.
func discard(r io.Reader) (int64, error) { return io.Copy(io.Discard, r) }

// isMessage says whether a stdout line is a protocol message.
func isMessage(line []byte) bool { return bytes.HasPrefix(line, []byte(Prefix)) }

// message is one parsed protocol message: exactly one of result, failure,
// or progress and/or partial.
type message struct {
	result      json.RawMessage
	failure     *failMessage
	hasProgress bool
	progress    float64
	partial     json.RawMessage
}

// parseMessage parses a message line (Prefix, then one JSON object). Its
// errors say what is wrong in terms a stage author can act on.
func parseMessage(line []byte) (*message, error) {
	body := bytes.TrimSpace(line[len(Prefix):])
	show := body
	if len(show) > 80 {
		show = append(show[:77:77], "..."...)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("the stage sent a malformed message %q: %s (see docs/PROTOCOL.md)", show, fmt.Sprintf(format, args...))
	}
	var fields map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&fields); err != nil {
		return nil, bad("not a JSON object: %v", err)
	}
	if dec.More() {
		return nil, bad("more than one JSON value on the line")
	}
	m := &message{}
	for k, v := range fields {
		switch k {
		case "result":
			m.result = v
		case "error":
			var s string
			if err := json.Unmarshal(v, &s); err != nil || s == "" {
				return nil, bad(`"error" must be a non-empty string`)
			}
			if m.failure == nil {
				m.failure = &failMessage{}
			}
			m.failure.msg = s
		case "permanent":
			var b bool
			if err := json.Unmarshal(v, &b); err != nil {
				return nil, bad(`"permanent" must be true or false`)
			}
			if m.failure == nil {
				m.failure = &failMessage{}
			}
			m.failure.permanent = b
		case "progress":
			if err := json.Unmarshal(v, &m.progress); err != nil {
				return nil, bad(`"progress" must be a number from 0 to 1`)
			}
			m.hasProgress = true
		case "partial":
			m.partial = v
		default:
			return nil, bad("unknown field %q (a message has result; or error and permanent; or progress and partial)", k)
		}
	}
	kinds := 0
	for _, ok := range []bool{m.result != nil, m.failure != nil, m.hasProgress || m.partial != nil} {
		if ok {
			kinds++
		}
	}
	switch {
	case kinds == 0:
		return nil, bad("it has none of result, error, progress or partial")
	case kinds > 1:
		return nil, bad("result, error and progress/partial go in separate messages")
	case m.failure != nil && m.failure.msg == "":
		return nil, bad(`"permanent" needs an "error" message`)
	}
	return m, nil
}
