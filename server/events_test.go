package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/internal/store"

	"github.com/staged-dev/staged/internal/redistest"
)

// sseBlock is one block of a stream: an event, or a comment.
type sseBlock struct {
	id, event, data, comment string
}

// sseReader reads a text/event-stream.
type sseReader struct {
	t   *testing.T
	res *http.Response
	r   *bufio.Reader
}

// openEvents connects to job id's stream. The request gives up after
// streamLimit: a safety net for a hung test, not a measure of speed (a
// burst of hundreds of events to a score of streams takes a while on a
// loaded machine).
func (e *env) openEvents(id string, header ...string) *sseReader {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), streamLimit)
	e.t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", e.url+"/v1/jobs/"+id+"/events", nil)
	if len(header) == 1 { // a query string
		req.URL.RawQuery = header[0]
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { res.Body.Close() })
	return &sseReader{t: e.t, res: res, r: bufio.NewReader(res.Body)}
}

// block returns the next block, or io.EOF when the server closed the stream.
func (s *sseReader) block() (sseBlock, error) {
	var b sseBlock
	seen := false
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			if err == io.EOF && !seen && line == "" {
				return b, io.EOF
			}
			return b, err
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			if seen {
				return b, nil
			}
			continue
		}
		seen = true
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "":
			b.comment = value
		case "id":
			b.id = value
		case "event":
			b.event = value
		case "data":
			if b.data != "" {
				b.data += "\n"
			}
			b.data += value
		default:
			s.t.Errorf("unexpected SSE field %q", line)
		}
	}
}

// next returns the next event, skipping comments; it fails the test on
// anything but an event.
func (s *sseReader) next() (sseBlock, *api.Job) {
	s.t.Helper()
	for {
		b, err := s.block()
		if err != nil {
			s.t.Fatalf("reading the stream: %v", err)
		}
		if b.comment != "" && b.event == "" {
			continue
		}
		if b.id == "" || b.event != "job" {
			s.t.Fatalf("event without id or not a job event: %+v", b)
		}
		return b, decodeJob(s.t, []byte(b.data))
	}
}

// rest returns the ids of the stream's events up to the server's end of
// the stream (after the final event); unlike next and closed it may run
// on any goroutine. A read error ends it, with what was read so far and
// the error's text as a last id, which fails the caller's comparison.
func (s *sseReader) rest() []string {
	var ids []string
	for {
		b, err := s.block()
		switch {
		case err == io.EOF:
			return ids
		case err != nil:
			return append(ids, "error: "+err.Error())
		case b.comment != "" && b.event == "":
		case b.id == "" || b.event != "job":
			return append(ids, fmt.Sprintf("not a job event: %+v", b))
		default:
			ids = append(ids, b.id)
		}
	}
}

// summary shortens a list of ids for a failure message.
func summary(ids []string) string {
	if len(ids) <= 4 {
		return fmt.Sprint(ids)
	}
	return fmt.Sprintf("[%s %s ... %s %s]", ids[0], ids[1], ids[len(ids)-2], ids[len(ids)-1])
}

// closed asserts the server ends the stream now.
func (s *sseReader) closed() {
	s.t.Helper()
	if b, err := s.block(); err != io.EOF {
		s.t.Fatalf("stream not closed: %+v, %v", b, err)
	}
}

// eventIDs returns the ids of job id's stream entries.
func (e *env) eventIDs(id string) []string {
	e.t.Helper()
	msgs, err := e.rdb.XRange(context.Background(), store.EventsKey(id), "-", "+").Result()
	if err != nil {
		e.t.Fatal(err)
	}
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	return ids
}

func TestEventsLive(t *testing.T) {
	e := newEnv(t)
	j := e.submit(`{"type":"double"}`, http.StatusAccepted)
	s := e.openEvents(j.ID)
	if ct := s.res.Header.Get("Content-Type"); s.res.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("status %d, Content-Type %q", s.res.StatusCode, ct)
	}
	b1, j1 := s.next()
	if j1.State != api.StateQueued || j1.ID != j.ID {
		t.Fatalf("first event %+v", b1)
	}
	w := e.claim(j.ID)
	id2 := w.save(api.StateRunning)
	b2, j2 := s.next()
	if b2.id != id2 || j2.State != api.StateRunning || string(j2.Partial) != `{"step":1}` {
		t.Fatalf("second event %+v, want id %s running", b2, id2)
	}
	id3 := w.save(api.StateSucceeded)
	b3, j3 := s.next()
	if b3.id != id3 || j3.State != api.StateSucceeded || string(j3.Result) != `{"answer":42}` {
		t.Fatalf("third event %+v, want id %s succeeded", b3, id3)
	}
	s.closed()
	redistest.Eventually(t, 5*time.Second, "the watcher unregistered", func() bool { return e.srv.hub.count() == 0 })
}

func TestEventsResume(t *testing.T) {
	e := newEnv(t)
	j := e.submit(`{"type":"double"}`, http.StatusAccepted)
	e.finish(j.ID)
	ids := e.eventIDs(j.ID) // running, succeeded: submit writes no event
	if len(ids) != 2 {
		t.Fatalf("stream has %d entries, want 2", len(ids))
	}
	tests := []struct {
		name    string
		header  []string
		wantIDs []string // then the stream closes
		want204 bool
	}{
		{name: "no Last-Event-ID: the final record", wantIDs: ids[1:]},
		{name: "from the first", header: []string{"Last-Event-ID", ids[0]}, wantIDs: ids[1:]},
		{name: "from the first, by query", header: []string{"last_event_id=" + ids[0]}, wantIDs: ids[1:]},
		{name: "from the start", header: []string{"Last-Event-ID", "0"}, wantIDs: ids},
		{name: "after the final event", header: []string{"Last-Event-ID", ids[1]}, want204: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := e.openEvents(j.ID, tt.header...)
			if tt.want204 {
				if s.res.StatusCode != http.StatusNoContent {
					t.Fatalf("status %d, want 204", s.res.StatusCode)
				}
				return
			}
			for i, want := range tt.wantIDs {
				b, got := s.next()
				if b.id != want {
					t.Fatalf("event %d id %s, want %s", i, b.id, want)
				}
				if last := i == len(tt.wantIDs)-1; last != got.State.Terminal() {
					t.Fatalf("event %d state %s", i, got.State)
				}
			}
			s.closed()
		})
	}
}

func TestEventsResumeRunning(t *testing.T) {
	e := newEnv(t)
	e.srv.store.EventsBytes, e.store.EventsBytes = 1<<20, 1<<20 // keep every write
	j := e.submit(`{"type":"double"}`, http.StatusAccepted)
	w := e.claim(j.ID)
	w.save(api.StateRunning)
	// Many progress writes: catching up takes several reads.
	var want []string
	for i := 0; i < 2*eventsBatch+17; i++ {
		want = append(want, w.save(api.StateRunning))
	}
	first := e.eventIDs(j.ID)[0] // the first running save
	s := e.openEvents(j.ID, "Last-Event-ID", first)
	for i, id := range want {
		b, _ := s.next()
		if b.id != id {
			t.Fatalf("catch-up event %d id %s, want %s", i, b.id, id)
		}
	}
	last := w.save(api.StateSucceeded)
	if b, got := s.next(); b.id != last || got.State != api.StateSucceeded {
		t.Fatalf("final event %+v", b)
	}
	s.closed()
}

func TestEventsHeartbeat(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Heartbeat = 20 * time.Millisecond })
	j := e.submit(`{"type":"double"}`, http.StatusAccepted)
	s := e.openEvents(j.ID)
	s.next()
	for i := 0; i < 2; i++ {
		b, err := s.block()
		if err != nil || b.comment != "ping" || b.id != "" {
			t.Fatalf("block %d: %+v %v, want a ping comment", i, b, err)
		}
	}
}

func TestEventsWithoutStream(t *testing.T) {
	// The stream is gone but the record is there: the record is sent with
	// id 0-0, and later writes follow.
	e := newEnv(t)
	j := e.submit(`{"type":"double"}`, http.StatusAccepted)
	e.rdb.Del(context.Background(), store.EventsKey(j.ID))
	s := e.openEvents(j.ID)
	b, got := s.next()
	if b.id != fallbackEventID || got.ID != j.ID || got.State != api.StateQueued {
		t.Fatalf("event %+v", b)
	}
	w := e.claim(j.ID)
	id := w.save(api.StateSucceeded)
	if b, _ := s.next(); b.id != id {
		t.Fatalf("event %+v, want id %s", b, id)
	}
	s.closed()
}

func TestEventsHubResubscribes(t *testing.T) {
	// Kill the hub's connection: after go-redis resubscribes, watchers are
	// signalled and re-read, so a write made meanwhile is not missed.
	e := newEnv(t)
	j := e.submit(`{"type":"double"}`, http.StatusAccepted)
	s := e.openEvents(j.ID)
	s.next()
	ctx := context.Background()
	killed, err := e.rdb.ClientKillByFilter(ctx, "TYPE", "pubsub").Result()
	if err != nil || killed == 0 {
		t.Fatalf("CLIENT KILL TYPE pubsub: %d %v", killed, err)
	}
	id := e.claim(j.ID).save(api.StateRunning) // published while the hub may be away
	if b, _ := s.next(); b.id != id {
		t.Fatalf("event %+v, want %s", b, id)
	}
}

// streamLimit bounds one test stream (see openEvents).
const streamLimit = 2 * time.Minute

func TestEventsManyWatchers(t *testing.T) {
	n := 1000
	if testing.Short() {
		n = 100
	}
	e := newEnv(t, func(c *Config) { c.MaxStreamsPerKey = n })
	j := e.submit(`{"type":"double"}`, http.StatusAccepted)
	tr := &http.Transport{MaxIdleConnsPerHost: n}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	ctx, cancel := context.WithTimeout(context.Background(), streamLimit)
	defer cancel()

	// The watchers connect at most connecting at a time: what is tested is
	// that the hub holds n of them, not how fast a loaded machine accepts
	// n connections at once. A watcher's error ends the wait at once.
	const connecting = 50
	slots := make(chan struct{}, connecting)
	var wg sync.WaitGroup
	connected := make(chan struct{}, n)
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			slots <- struct{}{}
			errs <- watchToEnd(ctx, client, e.url+"/v1/jobs/"+j.ID+"/events", connected, func() { <-slots })
		}()
	}
	for i := 0; i < n; i++ {
		select {
		case <-connected:
		case err := <-errs:
			t.Fatalf("a watcher failed after %d of %d connected: %v", i, n, err)
		case <-ctx.Done():
			t.Fatalf("only %d of %d watchers connected", i, n)
		}
	}
	if got := e.srv.hub.count(); got != n {
		t.Fatalf("hub has %d watchers, want %d", got, n)
	}
	e.finish(j.ID)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := e.srv.hub.count(); got != 0 {
		t.Errorf("%d watchers left", got)
	}
}

// watchToEnd reads a stream until it closes, signalling connected after the
// first event; it fails unless the last event is a finished record. done
// is called once the stream has its first event or failed.
func watchToEnd(ctx context.Context, c *http.Client, url string, connected chan<- struct{}, done func()) error {
	var once sync.Once
	defer once.Do(done)
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	res, err := c.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		return fmt.Errorf("status %d: %s", res.StatusCode, b)
	}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var last string
	first := true
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			last = data
			if first {
				connected <- struct{}{}
				once.Do(done)
				first = false
			}
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if !recordState([]byte(last)).Terminal() {
		return errors.New("stream ended before the final record: " + last)
	}
	return nil
}

// xranges is how many XRANGE commands Redis has run (INFO commandstats).
// hubSettled returns once the hub has handled every message published
// before the call and job id's reads are done: no shared read runs and
// every stream of the job is caught up (a message comes in order after
// the earlier ones, on the hub's one subscription).
func (e *env) hubSettled(id string) {
	e.t.Helper()
	const barrier = "hub-settled-barrier"
	h := e.srv.hub
	w := h.watch(barrier)
	defer w.stop()
	if err := e.rdb.Publish(context.Background(), store.EventsChannel, barrier).Err(); err != nil {
		e.t.Fatal(err)
	}
	select {
	case <-w.C:
	case <-time.After(30 * time.Second):
		e.t.Fatal("the hub never handled a message published for it")
	}
	redistest.Eventually(e.t, 30*time.Second, "the job's streams caught up", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		js := h.watchers[id]
		if js == nil || js.reading {
			return js == nil
		}
		for x := range js.ws {
			if x.feed && (x.at == "" || x.stale) {
				return false
			}
		}
		return true
	})
}

func (e *env) xranges() int64 {
	e.t.Helper()
	info, err := e.rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "cmdstat_xrange:calls="); ok {
			v, _, _ = strings.Cut(v, ",")
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

func TestEventsSharedRead(t *testing.T) {
	// Caught-up streams of one job share one XRANGE per write; a burst
	// (full reads, coalesced messages, streams that fall behind) and a
	// stream resuming mid-burst still get every entry, in order, once.
	const n = 20
	e := newEnv(t)
	e.srv.store.EventsBytes, e.store.EventsBytes = 1<<20, 1<<20 // keep every write
	j := e.submit(`{"type":"double"}`, http.StatusAccepted)
	w := e.claim(j.ID)
	first := w.save(api.StateRunning)
	ss := make([]*sseReader, n)
	for i := range ss {
		ss[i] = e.openEvents(j.ID)
		if b, _ := ss[i].next(); b.id != first {
			t.Fatalf("stream %d starts with %s, want %s", i, b.id, first)
		}
	}
	redistest.Eventually(t, 30*time.Second, "every stream watching", func() bool { return e.srv.hub.count() == n })

	// The first save's message may reach the hub after the streams caught
	// up (under load); its reads are not the writes' below.
	e.hubSettled(j.ID)
	const k = 10
	x0 := e.xranges()
	for range k {
		id := w.save(api.StateRunning)
		for i, s := range ss {
			if b, _ := s.next(); b.id != id {
				t.Fatalf("stream %d: event %s, want %s", i, b.id, id)
			}
		}
	}
	if got := e.xranges() - x0; got > k {
		t.Errorf("%d XRANGE calls for %d writes to %d caught-up streams, want at most one per write", got, k, n)
	}

	// The burst's events are read as they come, on every stream at once,
	// as a client does: a stream left unread while the others are read
	// fills its socket buffers, and Linux's zero-window probes, whose
	// interval doubles each time, may then leave the rest of it in the
	// server's send buffer for longer than the test waits (seen: the
	// server had written and flushed all 319 events, 160 KB were still
	// unsent, the client read nothing for over 10 s).
	x0 = e.xranges()
	got := make([]chan []string, n+1)
	collect := func(i int, s *sseReader) {
		got[i] = make(chan []string, 1)
		go func() { got[i] <- s.rest() }()
	}
	for i, s := range ss {
		collect(i, s)
	}
	var want []string
	for i := range 3*eventsBatch + 7 {
		want = append(want, w.save(api.StateRunning))
		if i == eventsBatch/2 {
			collect(n, e.openEvents(j.ID, "Last-Event-ID", want[0]))
		}
	}
	want = append(want, w.save(api.StateSucceeded))
	for i, c := range got {
		from := 0
		if i == n { // resumed after want[0]
			from = 1
		}
		if ids := <-c; !slices.Equal(ids, want[from:]) {
			t.Fatalf("stream %d: %d events %s, want the %d events %s", i, len(ids), summary(ids), len(want[from:]), summary(want[from:]))
		}
	}
	t.Logf("burst of %d writes to %d streams: %d XRANGE calls", len(want), n+1, e.xranges()-x0)
	redistest.Eventually(t, 30*time.Second, "the watchers unregistered", func() bool { return e.srv.hub.count() == 0 })
}
