package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/staged-dev/staged/internal/store"
)

// Limits of the SSE tests.
const (
	streamLimit = 30 * time.Second // one stream, from open to close
	closeLimit  = 2 * time.Second  // terminal event → the server closes
)

// sseEvent is one event as the wire carried it.
type sseEvent struct {
	id, typ, data string
	at            time.Time // when the test read it
}

// sseConn is one GET /v1/jobs/{id}/events connection, read by a goroutine
// into events, which is closed when the server ends the stream.
type sseConn struct {
	status int
	header http.Header
	events chan sseEvent
	cancel context.CancelFunc

	mu       sync.Mutex
	readErr  error     // why reading stopped, nil for a clean EOF
	closedAt time.Time // when the stream ended
	comments int       // ": ..." lines (heartbeats)
}

// openEvents opens job id's event stream, resuming after last when it is
// not "" (as the Last-Event-ID header, or as ?last_event_id= when
// viaQuery). It fails the test unless the server answers.
func (s *stack) openEvents(id, last string, viaQuery bool) *sseConn {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), streamLimit)
	url := s.baseURL + "/v1/jobs/" + id + "/events"
	if last != "" && viaQuery {
		url += "?last_event_id=" + last
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		cancel()
		s.t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	if last != "" && !viaQuery {
		req.Header.Set("Last-Event-ID", last)
	}
	resp, err := streamClient.Do(req)
	if err != nil {
		cancel()
		s.t.Fatalf("GET %s (Last-Event-ID %q): %v", url, last, err)
	}
	c := &sseConn{status: resp.StatusCode, header: resp.Header, events: make(chan sseEvent, 1024), cancel: cancel}
	s.t.Cleanup(cancel)
	go c.read(resp.Body)
	return c
}

// streamClient has no overall timeout: streams bound themselves.
var streamClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

// read parses the text/event-stream (LF line ends, as staged writes them)
// into c.events.
func (c *sseConn) read(body io.ReadCloser) {
	defer body.Close()
	defer close(c.events)
	br := bufio.NewReaderSize(body, 64<<10)
	var ev sseEvent
	var data []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			c.mu.Lock()
			if err != io.EOF {
				c.readErr = err
			} else if line != "" {
				c.readErr = fmt.Errorf("stream ended inside a line: %q", line)
			}
			c.closedAt = time.Now()
			c.mu.Unlock()
			return
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if data != nil {
				ev.data = strings.Join(data, "\n")
				ev.at = time.Now()
				c.events <- ev
			}
			ev, data = sseEvent{}, nil
		case strings.HasPrefix(line, ":"):
			c.mu.Lock()
			c.comments++
			c.mu.Unlock()
		default:
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "id":
				ev.id = value
			case "event":
				ev.typ = value
			case "data":
				data = append(data, value)
			}
		}
	}
}

// collect reads events until the stream closes or limit passes; closed
// says which. stop, when not nil, is called for each event and ends the
// collection early (the connection stays open) when it returns true.
func (c *sseConn) collect(limit time.Duration, stop func(sseEvent) bool) (evs []sseEvent, closed bool) {
	timer := time.NewTimer(limit)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-c.events:
			if !ok {
				return evs, true
			}
			evs = append(evs, ev)
			if stop != nil && stop(ev) {
				return evs, false
			}
		case <-timer.C:
			return evs, false
		}
	}
}

// ended returns when the stream ended and why (nil: a clean close).
func (c *sseConn) ended() (time.Time, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closedAt, c.readErr
}

// streamID is a Redis stream entry id "ms-seq", the SSE id staged sends.
type streamID struct{ ms, seq uint64 }

func parseStreamID(s string) (streamID, bool) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return streamID{}, false
	}
	ms, err1 := strconv.ParseUint(a, 10, 64)
	seq, err2 := strconv.ParseUint(b, 10, 64)
	return streamID{ms, seq}, err1 == nil && err2 == nil
}

func (a streamID) less(b streamID) bool { return a.ms < b.ms || a.ms == b.ms && a.seq < b.seq }

// checkEvents asserts the wire form of every event of one connection: a
// "job" event with an id, ids increasing, data a record of job id. It
// returns the decoded records.
func checkEvents(t *testing.T, what, id string, evs []sseEvent) []*job {
	t.Helper()
	var prev streamID
	jobs := make([]*job, 0, len(evs))
	for i, ev := range evs {
		sid, ok := parseStreamID(ev.id)
		switch {
		case !ok:
			t.Fatalf("%s: event %d has id %q, want a stream id ms-seq", what, i, ev.id)
		case i > 0 && !prev.less(sid):
			t.Fatalf("%s: event %d id %s does not increase (previous %s)", what, i, ev.id, evs[i-1].id)
		case ev.typ != "job":
			t.Fatalf("%s: event %d (%s) has type %q, want job", what, i, ev.id, ev.typ)
		}
		prev = sid
		var j job
		if err := json.Unmarshal([]byte(ev.data), &j); err != nil {
			t.Fatalf("%s: event %s data is not a job record: %v: %.200s", what, ev.id, err, ev.data)
		}
		if j.ID != id {
			t.Fatalf("%s: event %s is a record of job %q, want %s", what, ev.id, j.ID, id)
		}
		j.raw = []byte(ev.data)
		jobs = append(jobs, &j)
	}
	return jobs
}

// streamEntry is one entry of a job's event stream in Redis.
type streamEntry struct{ id, rec string }

// xrange returns every entry of job id's event stream strictly after
// after ("" for all): what a client resuming from after must receive.
func (s *stack) xrange(id, after string) []streamEntry {
	s.t.Helper()
	start := "-"
	if after != "" {
		start = "(" + after
	}
	msgs, err := s.rdb.XRange(context.Background(), store.EventsKey(id), start, "+").Result()
	if err != nil {
		s.t.Fatalf("XRANGE %s %s +: %v", store.EventsKey(id), start, err)
	}
	out := make([]streamEntry, len(msgs))
	for i, m := range msgs {
		rec, _ := m.Values["rec"].(string)
		out[i] = streamEntry{m.ID, rec}
	}
	return out
}

// sameAsStream fails unless evs are exactly the entries, ids and data.
func sameAsStream(t *testing.T, what string, evs []sseEvent, want []streamEntry) {
	t.Helper()
	n := max(len(evs), len(want))
	for i := range n {
		switch {
		case i >= len(evs):
			t.Fatalf("%s: %d events, the stream holds %d: missing %s and %d more", what, len(evs), len(want), want[i].id, len(want)-i-1)
		case i >= len(want):
			t.Fatalf("%s: %d events, the stream holds %d: extra event %s", what, len(evs), len(want), evs[i].id)
		case evs[i].id != want[i].id:
			t.Fatalf("%s: event %d has id %s, the stream's entry is %s", what, i, evs[i].id, want[i].id)
		case evs[i].data != want[i].rec:
			t.Fatalf("%s: event %s data differs from the stream's entry:\n got %.300s\nwant %.300s", what, evs[i].id, evs[i].data, want[i].rec)
		}
	}
}

func ids(evs []sseEvent) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.id
	}
	return out
}

// TestSSE follows a 4-stage job over real HTTP: every event has an
// increasing id and carries the record; a stream opened at submit gets
// every change and closes right after the terminal event; two streams
// resuming mid-job with Last-Event-ID (header and ?last_event_id=) get
// exactly the rest, compared with XRANGE of the job's stream; after the
// job finished, a new stream gets the final record and closes, and a
// resume from the final id gets 204.
func TestSSE(t *testing.T) {
	t.Parallel()
	s := newStack(t, false)
	s.startAPI()
	s.startWorker()

	sub := s.submit(`{"type":"sleep","input":{"stages":4,"ms":700}}`)
	id := sub.ID
	full := s.openEvents(id, "", false)
	if full.status != http.StatusOK {
		t.Fatalf("events: status %d, want 200", full.status)
	}
	if ct := full.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("events: Content-Type %q, want text/event-stream", ct)
	}

	// Read the full stream until stage 2 runs, then resume from a few
	// events back: the resumed streams catch up, then follow live.
	head, closed := full.collect(streamLimit, func(ev sseEvent) bool {
		var j job
		return json.Unmarshal([]byte(ev.data), &j) == nil && j.State == "running" && j.Stage.Index >= 2
	})
	if closed || len(head) < 4 {
		t.Fatalf("full stream: %d events before stage 2 (closed %v): %v", len(head), closed, ids(head))
	}
	from := head[len(head)-4].id
	resumed := s.openEvents(id, from, false)
	resumedQ := s.openEvents(id, from, true)
	t.Logf("stage 2 running after %d events; resuming from %s", len(head), from)

	tail, closed := full.collect(streamLimit, nil)
	if !closed {
		t.Fatalf("full stream did not close within %v after %d events", streamLimit, len(head)+len(tail))
	}
	all := append(head, tail...)
	rest, rclosed := resumed.collect(streamLimit, nil)
	restQ, qclosed := resumedQ.collect(streamLimit, nil)
	if !rclosed || !qclosed {
		t.Fatalf("resumed streams closed: header %v, query %v", rclosed, qclosed)
	}

	recs := checkEvents(t, "full stream", id, all)
	checkEvents(t, "resumed stream (Last-Event-ID)", id, rest)
	checkEvents(t, "resumed stream (?last_event_id)", id, restQ)
	final := recs[len(recs)-1]
	if final.State != "succeeded" || final.Progress != 1 {
		t.Fatalf("the last event is not the finished record: %s", final.summary())
	}
	for i, j := range recs[:len(recs)-1] {
		if j.terminal() {
			t.Fatalf("event %d (%s) is terminal (%s) but the stream went on", i, all[i].id, j.State)
		}
	}
	// Each closed right after its terminal event.
	for _, c := range []struct {
		what string
		conn *sseConn
		evs  []sseEvent
	}{{"full", full, all}, {"resumed", resumed, rest}, {"resumed (query)", resumedQ, restQ}} {
		at, err := c.conn.ended()
		if err != nil {
			t.Errorf("%s stream ended with a read error: %v", c.what, err)
		}
		if len(c.evs) == 0 {
			t.Fatalf("%s stream: no events", c.what)
		}
		if gap := at.Sub(c.evs[len(c.evs)-1].at); gap > closeLimit {
			t.Errorf("%s stream closed %v after its terminal event, want at once", c.what, gap)
		}
	}

	// Exactly what Redis holds: the full stream from its first event on
	// (the first is the latest entry at connect time, or the stored record
	// with id 0-0 if the job had no entry yet), the resumed ones after from.
	if all[0].id == "0-0" {
		sameAsStream(t, "full stream", all[1:], s.xrange(id, ""))
	} else {
		entries := s.xrange(id, "")
		for len(entries) > 0 && entries[0].id != all[0].id {
			entries = entries[1:]
		}
		sameAsStream(t, "full stream", all, entries)
	}
	sameAsStream(t, "resumed stream (Last-Event-ID "+from+")", rest, s.xrange(id, from))
	sameAsStream(t, "resumed stream (?last_event_id="+from+")", restQ, s.xrange(id, from))
	if len(rest) < 4 {
		t.Errorf("the resumed stream got %d events, want the 3 before stage 2 and the rest", len(rest))
	}
	seen := map[int]bool{}
	for _, j := range recs {
		if j.State == "running" {
			seen[j.Stage.Index] = true
		}
	}
	if !reflect.DeepEqual(seen, map[int]bool{1: true, 2: true, 3: true, 4: true}) {
		t.Errorf("running stages seen on the full stream: %v, want all of 1..4", seen)
	}
	t.Logf("full stream: %d events (%s … %s); resumed: %d", len(all), all[0].id, all[len(all)-1].id, len(rest))

	// After the job finished: a new stream gets the final record only, and
	// closes; a resume from the final id gets 204; one from mid-job the rest.
	got := s.mustGet(id)
	late := s.openEvents(id, "", false)
	evs, closed := late.collect(streamLimit, nil)
	if late.status != http.StatusOK || !closed || len(evs) != 1 {
		t.Fatalf("stream opened after the job finished: status %d, %d events %v, closed %v; want 200, 1 event, closed",
			late.status, len(evs), ids(evs), closed)
	}
	checkEvents(t, "stream opened after the job finished", id, evs)
	if evs[0].id != all[len(all)-1].id || evs[0].data != string(got.raw) {
		t.Errorf("stream opened after the job finished: event %s %.200s\nwant %s with the stored record %.200s",
			evs[0].id, evs[0].data, all[len(all)-1].id, got.raw)
	}
	done := s.openEvents(id, all[len(all)-1].id, false)
	if evs, closed := done.collect(streamLimit, nil); done.status != http.StatusNoContent || len(evs) != 0 || !closed {
		t.Errorf("resume from the final event: status %d, %d events; want 204 and none", done.status, len(evs))
	}
	mid := all[len(all)/2].id
	again := s.openEvents(id, mid, false)
	evs, closed = again.collect(streamLimit, nil)
	if !closed {
		t.Fatalf("resume after the job finished from %s did not close", mid)
	}
	sameAsStream(t, "resume after the job finished from "+mid, evs, s.xrange(id, mid))

	// An unknown job: 404, not a stream.
	unknown := s.openEvents("0b6c0b6c-0b6c-4b6c-8b6c-0b6c0b6c0b6c", "", false)
	if unknown.status != http.StatusNotFound {
		t.Errorf("events of an unknown job: status %d, want 404", unknown.status)
	}
}

// TestSSEIdleStream keeps a stream open on a job that does not change (no
// worker runs): the API sends keep-alive comments (every 15 s by default)
// and keeps the stream open; a cancel of the queued job then arrives as
// the terminal event and the stream closes. A malformed Last-Event-ID is a
// 400 problem.
func TestSSEIdleStream(t *testing.T) {
	t.Parallel()
	s := newStack(t, false)
	s.startAPI()

	id := s.submit(`{"type":"sleep","input":{"stages":2,"ms":100}}`).ID
	c := s.openEvents(id, "", false)
	first, closed := c.collect(5*time.Second, func(sseEvent) bool { return true })
	if closed || len(first) != 1 {
		t.Fatalf("stream of a queued job: %d events, closed %v; want the queued record, open", len(first), closed)
	}
	waitFor(t, 25*time.Second, "a keep-alive comment on the idle stream", func() (bool, string) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if !c.closedAt.IsZero() {
			t.Fatalf("the idle stream closed: %v", c.readErr)
		}
		return c.comments > 0, "no comment yet"
	})
	if r := s.cancel(id); r.status != http.StatusAccepted {
		t.Fatalf("cancel: status %d: %s", r.status, r.body)
	}
	evs, closed := c.collect(10*time.Second, nil)
	if !closed || len(evs) != 1 {
		t.Fatalf("after the cancel: %d events %v, closed %v; want one, then the end", len(evs), ids(evs), closed)
	}
	if j := checkEvents(t, "after the cancel", id, evs)[0]; j.State != "canceled" {
		t.Fatalf("after the cancel the stream sent %s, want canceled", j.summary())
	}
	sameAsStream(t, "after the cancel", evs, s.xrange(id, ""))

	bad := s.openEvents(id, "not-an-id", false)
	body, _ := bad.collect(5*time.Second, nil)
	if bad.status != http.StatusBadRequest || len(body) != 0 {
		t.Errorf("Last-Event-ID not-an-id: status %d, %d events; want 400", bad.status, len(body))
	}
}
