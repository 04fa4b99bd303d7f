package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"mime"
	"net/http"
	"time"

	"github.com/staged-dev/staged/api"
)

// Watch follows job id through its event stream (GET /v1/jobs/{id}/events,
// Server-Sent Events) and yields each record as it changes, ending after the
// first finished record. When the connection drops it reconnects with
// Last-Event-ID, so no change is missed, backing off between attempts (see
// WithReconnect). It yields a non-nil error once, and ends, when the API
// refuses the stream (a *Problem: say 404 for an unknown or expired job),
// when reconnecting fails too often, or when ctx is done.
//
//	for j, err := range c.Watch(ctx, id) {
//		if err != nil { return err }
//		fmt.Println(j.State, j.Progress)
//	}
func (c *Client) Watch(ctx context.Context, id string) iter.Seq2[*api.Job, error] {
	return func(yield func(*api.Job, error) bool) {
		w := watcher{c: c, id: id, yield: yield}
		if err := w.run(ctx); err != nil {
			yield(nil, fmt.Errorf("client.Watch %s: %w", id, err))
		}
	}
}

type watcher struct {
	c      *Client
	id     string
	yield  func(*api.Job, error) bool
	lastID string        // Last-Event-ID for the next connection
	retry  time.Duration // the server's retry: hint
}

// healthyAfter is how long a connection must have stayed open to count as
// a success even without events.
const healthyAfter = 5 * time.Second

// errBadEvent marks an event whose record cannot be decoded: a bug, not
// something a reconnect fixes.
var errBadEvent = errors.New("malformed event")

// errStop means the consumer stopped the loop or the job finished: end
// quietly.
var errStop = errors.New("stop")

func (w *watcher) run(ctx context.Context) error {
	failures := 0
	for {
		opened := time.Now()
		received, err := w.stream(ctx)
		if errors.Is(err, errStop) {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if p := (*Problem)(nil); errors.As(err, &p) && !retryableStatus(p.Status) || errors.Is(err, errBadEvent) {
			return err
		}
		// A connection that delivered events, or stayed open a while (a
		// quiet stage, then an idle time-out), was a success: only
		// connections that fail straight away count towards giving up.
		if received || time.Since(opened) > healthyAfter {
			failures = 0
		}
		failures++
		if failures > w.c.recTries {
			if err == nil {
				err = errors.New("the event stream kept closing before the job finished")
			}
			return fmt.Errorf("giving up after %d attempts to reconnect: %w", failures-1, err)
		}
		if err := sleepCtx(ctx, w.backoff(failures, err)); err != nil {
			return err
		}
	}
}

// backoff is the pause before reconnect attempt n (1-based): the server's
// retry: hint or the minimum, doubling per failure, at most the maximum, and
// at least a 429/503's Retry-After (also capped).
func (w *watcher) backoff(n int, err error) time.Duration {
	d := w.c.recMin
	if w.retry > 0 {
		d = w.retry
	}
	for i := 1; i < n && d < w.c.recMax; i++ {
		d *= 2
	}
	var p *Problem
	if errors.As(err, &p) && p.RetryAfter > d {
		d = p.RetryAfter
	}
	return min(d, w.c.recMax)
}

func retryableStatus(s int) bool {
	return s == http.StatusRequestTimeout || s == http.StatusTooManyRequests || s >= 500
}

// stream reads one connection. It reports whether it received any event, and
// returns errStop when the watch is over, or why the connection ended (nil
// for a clean close before the job finished).
func (w *watcher) stream(ctx context.Context) (received bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	hdr := http.Header{"Accept": {"text/event-stream"}, "Cache-Control": {"no-cache"}}
	if w.lastID != "" {
		hdr.Set("Last-Event-ID", w.lastID)
	}
	resp, err := w.c.send(ctx, http.MethodGet, jobPath(w.id)+"/events", hdr, nil)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNoContent {
		// The server's "nothing more after that id": the job finished.
		return false, w.final(ctx)
	}
	if resp.StatusCode != http.StatusOK {
		return false, readProblem(resp)
	}
	if ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); ct != "text/event-stream" {
		return false, &Problem{Status: resp.StatusCode, Title: "Not an event stream",
			Detail: fmt.Sprintf("the server answered %q instead of text/event-stream", ct)}
	}
	body := io.Reader(resp.Body)
	if w.c.idle > 0 {
		ir := newIdleReader(resp.Body, w.c.idle, cancel)
		defer ir.t.Stop()
		body = ir
	}
	r := newSSEReader(body, maxEventSize)
	for {
		ev, err := r.Next()
		w.lastID = r.LastEventID()
		if r.Retry() > 0 {
			w.retry = r.Retry()
		}
		if err == io.EOF {
			return received, nil
		}
		if err != nil {
			return received, err
		}
		received = true
		j, err := decodeEvent(ev)
		if err != nil {
			return received, err
		}
		if j == nil {
			continue
		}
		if !w.yield(j, nil) || j.State.Terminal() {
			return received, errStop
		}
	}
}

// final yields the finished record after the server said the stream is over.
func (w *watcher) final(ctx context.Context) error {
	j, err := w.c.get(ctx, w.id, 0)
	if err != nil {
		return err
	}
	if !j.State.Terminal() {
		return &Problem{Status: http.StatusNoContent, Title: "Event stream ended",
			Detail: "the server ended the stream but the job is " + string(j.State)}
	}
	w.yield(j, nil)
	return errStop
}

// decodeEvent returns the record an event carries, nil for events that carry
// none (keep-alives, types this client does not know), or the Problem of an
// "error" event.
func decodeEvent(ev sseEvent) (*api.Job, error) {
	switch ev.Type {
	case "message", "job", "update", "state":
	case "error", "problem":
		p := &Problem{}
		if err := json.Unmarshal([]byte(ev.Data), p); err != nil || (p.Title == "" && p.Detail == "") {
			return nil, &Problem{Title: "Event stream error", Detail: ev.Data}
		}
		return nil, p
	default:
		return nil, nil
	}
	var j api.Job
	if err := json.Unmarshal([]byte(ev.Data), &j); err != nil {
		return nil, fmt.Errorf("%w %s: %w", errBadEvent, ev.ID, err)
	}
	if j.ID == "" { // not a record: a keep-alive or a future event
		return nil, nil
	}
	return &j, nil
}

// idleReader cancels the stream's context when no bytes arrive for d, so a
// connection that silently died (no FIN, no RST) is noticed and replaced.
type idleReader struct {
	r io.Reader
	d time.Duration
	t *time.Timer
}

func newIdleReader(r io.Reader, d time.Duration, cancel context.CancelFunc) *idleReader {
	return &idleReader{r: r, d: d, t: time.AfterFunc(d, cancel)}
}

func (r *idleReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.t.Reset(r.d)
	}
	return n, err
}
