package tasks

import (
	"bytes"
	"encoding/json"
	"strconv"
)

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// Marshal encodes v as JSON without escaping <, > and & (so "->" stays
// readable on the wire) and without a trailing newline. Use it for
// everything staged writes: records, checkpoints, results.
func Marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
