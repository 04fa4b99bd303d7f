package client

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func readAll(t *testing.T, r *sseReader) []sseEvent {
	t.Helper()
	var evs []sseEvent
	for {
		ev, err := r.Next()
		if err == io.EOF {
			return evs
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		evs = append(evs, ev)
	}
}

func TestSSEReader(t *testing.T) {
	tests := []struct {
		name   string
		stream string
		want   []sseEvent
		lastID string
		retry  time.Duration
	}{
		{
			name:   "one event",
			stream: "id: 1\ndata: {\"a\":1}\n\n",
			want:   []sseEvent{{ID: "1", Type: "message", Data: `{"a":1}`}},
			lastID: "1",
		},
		{
			name:   "multi-line data joined by newline",
			stream: "data: first\ndata: second\ndata:\ndata: fourth\n\n",
			want:   []sseEvent{{Type: "message", Data: "first\nsecond\n\nfourth"}},
		},
		{
			name:   "event type and comments",
			stream: ": hello\nevent: job\n: keep-alive\ndata: x\n\n:ping\n\n",
			want:   []sseEvent{{Type: "job", Data: "x"}},
		},
		{
			name:   "only one leading space is stripped; no space is fine",
			stream: "data:x\n\ndata:  y\n\n",
			want:   []sseEvent{{Type: "message", Data: "x"}, {Type: "message", Data: " y"}},
		},
		{
			name:   "field without colon",
			stream: "data\ndata\n\n",
			want:   []sseEvent{{Type: "message", Data: "\n"}},
		},
		{
			name:   "CRLF and CR line endings",
			stream: "id: a\r\ndata: 1\r\n\r\nid: b\rdata: 2\r\rdata: 3\n\n",
			want: []sseEvent{
				{ID: "a", Type: "message", Data: "1"},
				{ID: "b", Type: "message", Data: "2"},
				{ID: "b", Type: "message", Data: "3"},
			},
			lastID: "b",
		},
		{
			name:   "id persists, empty id resets, NUL id ignored",
			stream: "id: 7\ndata: a\n\ndata: b\n\nid\ndata: c\n\nid: 8\ndata: d\n\nid: x\x00y\ndata: e\n\n",
			want: []sseEvent{
				{ID: "7", Type: "message", Data: "a"},
				{ID: "7", Type: "message", Data: "b"},
				{ID: "", Type: "message", Data: "c"},
				{ID: "8", Type: "message", Data: "d"},
				{ID: "8", Type: "message", Data: "e"},
			},
			lastID: "8",
		},
		{
			name:   "event without data is not dispatched but sets the id",
			stream: "id: 5\nevent: job\n\ndata: z\n\n",
			want:   []sseEvent{{ID: "5", Type: "message", Data: "z"}},
			lastID: "5",
		},
		{
			name:   "unfinished event at the end is dropped",
			stream: "data: a\n\nid: 9\ndata: half",
			want:   []sseEvent{{Type: "message", Data: "a"}},
			lastID: "",
		},
		{
			name:   "retry takes digits only; unknown fields ignored",
			stream: "retry: 1500\nfoo: bar\ndata: a\n\nretry: 12x\ndata: b\n\n",
			want:   []sseEvent{{Type: "message", Data: "a"}, {Type: "message", Data: "b"}},
			retry:  1500 * time.Millisecond,
		},
		{
			name:   "leading BOM",
			stream: "\uFEFFdata: a\n\n",
			want:   []sseEvent{{Type: "message", Data: "a"}},
		},
		{
			name:   "colon in value kept",
			stream: "data: {\"url\":\"http://x\"}\n\n",
			want:   []sseEvent{{Type: "message", Data: `{"url":"http://x"}`}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Whole, and one byte per Read (line endings split across reads).
			for _, r := range []io.Reader{strings.NewReader(tt.stream), iotest.OneByteReader(strings.NewReader(tt.stream))} {
				sr := newSSEReader(r, 1<<20)
				got := readAll(t, sr)
				if !equalEvents(got, tt.want) {
					t.Fatalf("events:\n got %q\nwant %q", got, tt.want)
				}
				if sr.LastEventID() != tt.lastID {
					t.Errorf("LastEventID = %q, want %q", sr.LastEventID(), tt.lastID)
				}
				if sr.Retry() != tt.retry {
					t.Errorf("Retry = %v, want %v", sr.Retry(), tt.retry)
				}
			}
		})
	}
}

func equalEvents(a, b []sseEvent) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A bare CR ends its line at once: the event it completes is dispatched
// without waiting for the next byte.
func TestSSEReaderCRDoesNotWait(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close()
	r := newSSEReader(pr, 1<<20)
	go pw.Write([]byte("data: a\r\r"))
	ev, err := r.Next()
	if err != nil || ev.Data != "a" {
		t.Fatalf("Next = %+v, %v", ev, err)
	}
}

func TestSSEReaderLineTooLong(t *testing.T) {
	r := newSSEReader(strings.NewReader("data: "+strings.Repeat("x", 100)+"\n\n"), 64)
	if _, err := r.Next(); err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("Next = %v, want a too-long error", err)
	}
}
