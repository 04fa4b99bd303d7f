package server

import (
	"context"
	"net/http"
	"testing"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/internal/store"
)

// As in production, a finished job keeps no event stream, only its final
// event (the record, with the id it was written with): a resume from any
// earlier id gets that event, a resume from it gets 204, and a new watcher
// gets it with its real id.
func TestEventsFinishedFinalOnly(t *testing.T) {
	e := newEnv(t)
	e.srv.store.KeepAllEvents, e.store.KeepAllEvents = false, false
	j := e.submit(`{"type":"double"}`, http.StatusAccepted)
	w := e.claim(j.ID)
	first := w.save(api.StateRunning)
	w.save(api.StateRunning)
	last := w.save(api.StateSucceeded)
	if n, _ := e.rdb.Exists(context.Background(), store.EventsKey(j.ID)).Result(); n != 0 {
		t.Fatalf("the finished job still has its event stream")
	}
	for _, from := range []string{"", "0", first} {
		var s *sseReader
		if from == "" {
			s = e.openEvents(j.ID)
		} else {
			s = e.openEvents(j.ID, "Last-Event-ID", from)
		}
		b, got := s.next()
		if b.id != last || got.State != api.StateSucceeded || string(got.Result) != `{"answer":42}` {
			t.Fatalf("from %q: event %s %+v, want %s succeeded", from, b.id, got, last)
		}
		s.closed()
	}
	res := e.openStream("/v1/jobs/"+j.ID+"/events", "Last-Event-ID", last)
	res.Body.Close()
	if res.StatusCode != http.StatusNoContent {
		t.Fatalf("resume after the final event: %d, want 204", res.StatusCode)
	}
}
