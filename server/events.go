package server

import (
	"bytes"
	"context"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/internal/store"

	"github.com/labstack/echo/v4"
)

const (
	// eventsBatch is how many stream entries one read takes.
	eventsBatch = 100
	// streamWriteTimeout bounds each write to a stream's client, so a stuck
	// client cannot hold its handler forever.
	streamWriteTimeout = 30 * time.Second
	// fallbackEventID is the id of an event made from the record itself when
	// the job's event stream is empty or gone (it is trimmed and expires
	// with the record, so this is rare). It sorts before every real entry:
	// a client resuming from it gets every entry written since.
	fallbackEventID = "0-0"
)

// streamEvents is GET /v1/jobs/:id/events, Server-Sent Events: one "job"
// event per record write, each with the stream entry id as its SSE id.
//
// Without Last-Event-ID (header, or ?last_event_id=) the stream starts with
// the latest record; with it, with every entry after that id. It ends after
// an event whose record is finished. A client resuming after the final
// event gets 204 No Content, which tells EventSource to stop reconnecting.
// A comment line ": ping" is sent every Config.Heartbeat.
func (s *Server) streamEvents(c echo.Context) error {
	id := c.Param("id")
	if !api.ValidID(id) {
		return notFound(id)
	}
	last, err := lastEventID(c)
	if err != nil {
		return err
	}
	release, err := s.streams.take(c)
	if err != nil {
		return err
	}
	defer release()
	w := s.hub.watchEvents(id) // before any read: no change is missed
	defer w.stop()
	ctx := c.Request().Context()

	rctx, cancel := s.redisCtx(ctx)
	rec, err := s.store.GetRaw(rctx, id, tenantOf(c))
	var first []store.Event
	if err == nil {
		first, err = s.firstEvents(rctx, id, last, rec)
	}
	cancel()
	if err != nil {
		return err
	}
	if last != "" && len(first) == 0 && recordState(rec).Terminal() {
		return c.NoContent(http.StatusNoContent)
	}

	st := startStream(c, last)
	defer st.end()
	for _, ev := range first {
		if done, err := st.send(ev); done || err != nil {
			return nil
		}
	}
	if len(first) == eventsBatch || !w.caughtUp(st.last) {
		w.signal() // more to catch up on, or the hub says so
	}
	if err := st.flush(); err != nil {
		return nil
	}
	hb := time.NewTicker(s.cfg.Heartbeat)
	defer hb.Stop()
	for {
		select {
		case <-w.C:
			if done := s.sendNew(ctx, st, w); done {
				return nil
			}
		case <-hb.C:
			if err := st.ping(); err != nil {
				return nil
			}
		case <-ctx.Done():
			return nil
		case <-s.stopping:
			return nil
		}
	}
}

// firstEvents returns what a new stream starts with: the entries after
// last, or without last the latest entry (the record itself when the
// stream is empty).
func (s *Server) firstEvents(ctx context.Context, id, last string, rec []byte) ([]store.Event, error) {
	if last != "" {
		return s.store.Events(ctx, id, last, eventsBatch)
	}
	ev, ok, err := s.store.LatestEvent(ctx, id)
	if err != nil {
		return nil, err
	}
	if !ok {
		ev = store.Event{ID: fallbackEventID, Data: rec}
	}
	return []store.Event{ev}, nil
}

// sendNew sends every entry after the last one sent: those the hub
// handed to w (read once for all the job's watchers), then, when w is
// behind, those it reads itself. done is true when the stream must end: a
// finished record was sent, the client is gone, or Redis failed (the
// client reconnects with Last-Event-ID).
func (s *Server) sendNew(ctx context.Context, st *stream, w *watcher) (done bool) {
	batches, behind := w.take()
	for _, evs := range batches {
		for _, ev := range evs {
			if done, err := st.send(ev); done || err != nil {
				return true
			}
		}
	}
	if !behind {
		return len(batches) > 0 && st.flush() != nil
	}
	for {
		rctx, cancel := s.redisCtx(ctx)
		evs, err := s.store.Events(rctx, w.id, st.last, eventsBatch)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("reading job events; ending the stream", "job", w.id, "err", err)
			}
			return true
		}
		for _, ev := range evs {
			if done, err := st.send(ev); done || err != nil {
				return true
			}
		}
		if err := st.flush(); err != nil {
			return true
		}
		if len(evs) < eventsBatch {
			// Caught up, unless the hub signalled w meanwhile: then w.C
			// holds a signal and the next call reads again.
			w.caughtUp(st.last)
			return false
		}
	}
}

// lastEventID returns the id a client resumes from, "" for none.
func lastEventID(c echo.Context) (string, error) {
	v := c.Request().Header.Get("Last-Event-ID")
	if v == "" {
		v = c.QueryParam("last_event_id")
	}
	if v == "" || validEventID(v) {
		return v, nil
	}
	return "", invalid("Last-Event-ID", "Last-Event-ID must be an event id like \"1700000000000-0\", not %q", v)
}

// validEventID reports whether v is a Redis stream id "ms-seq" whose two
// parts each fit in 64 bits (or "0"), and one a stream can be read after:
// the largest id has no successor, and Redis refuses an exclusive range
// that starts there.
func validEventID(v string) bool {
	if v == "0" {
		return true
	}
	ms, seq, ok := strings.Cut(v, "-")
	if !ok || !digits(ms) || !digits(seq) {
		return false
	}
	a, err1 := strconv.ParseUint(ms, 10, 64)
	b, err2 := strconv.ParseUint(seq, 10, 64)
	return err1 == nil && err2 == nil && !(a == math.MaxUint64 && b == math.MaxUint64)
}

// digits reports whether s is 1 to 20 ASCII digits.
func digits(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// stream writes SSE events to one client.
type stream struct {
	res  *echo.Response
	rc   *http.ResponseController
	buf  []byte
	last string // id of the last event sent, or the client's Last-Event-ID
}

func startStream(c echo.Context, last string) *stream {
	res := c.Response()
	h := res.Header()
	h.Set(echo.HeaderContentType, "text/event-stream")
	h.Set(echo.HeaderCacheControl, "no-cache")
	h.Set("X-Accel-Buffering", "no") // tell nginx not to buffer the stream
	res.WriteHeader(http.StatusOK)
	return &stream{res: res, rc: http.NewResponseController(res), last: last}
}

// send writes ev (not flushed) and reports done when its record is final.
func (st *stream) send(ev store.Event) (done bool, err error) {
	b := append(st.buf[:0], "id: "...)
	b = append(b, ev.ID...)
	b = append(b, "\nevent: job\n"...)
	data := ev.Data
	for {
		line, rest, more := bytes.Cut(data, []byte{'\n'})
		b = append(b, "data: "...)
		b = append(b, line...)
		b = append(b, '\n')
		if !more {
			break
		}
		data = rest
	}
	b = append(b, '\n')
	st.buf = b
	if err := st.write(b); err != nil {
		return true, err
	}
	st.last = ev.ID
	if recordState(ev.Data).Terminal() {
		return true, st.flush()
	}
	return false, nil
}

func (st *stream) ping() error {
	if err := st.write([]byte(": ping\n\n")); err != nil {
		return err
	}
	return st.flush()
}

func (st *stream) write(b []byte) error {
	_ = st.rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	_, err := st.res.Write(b)
	return err
}

func (st *stream) flush() error { return st.rc.Flush() }

// end clears the write deadline, which would otherwise outlive the stream
// on a kept-alive connection (the server sets none of its own).
func (st *stream) end() { _ = st.rc.SetWriteDeadline(time.Time{}) }
