package server

import (
	"log/slog"
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestHubSignals(t *testing.T) {
	tests := []struct {
		name string
		msg  any
		want map[string]bool // watcher -> signalled
	}{
		{"a change of a", &redis.Message{Channel: "staged:events", Payload: "a"}, map[string]bool{"a1": true, "a2": true, "b": false}},
		{"a change of an unwatched job", &redis.Message{Channel: "staged:events", Payload: "z"}, map[string]bool{"a1": false, "a2": false, "b": false}},
		{"(re)subscribed: everyone re-reads", &redis.Subscription{Kind: "subscribe", Channel: "staged:events", Count: 1}, map[string]bool{"a1": true, "a2": true, "b": true}},
		{"unsubscribed", &redis.Subscription{Kind: "unsubscribe", Channel: "staged:events"}, map[string]bool{"a1": false, "a2": false, "b": false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &hub{log: slog.New(slog.DiscardHandler), watchers: map[string]map[*watcher]struct{}{}, done: make(chan struct{})}
			ws := map[string]*watcher{"a1": h.watch("a"), "a2": h.watch("a"), "b": h.watch("b")}
			ch := make(chan any, 1)
			ch <- tt.msg
			close(ch)
			h.run(ch) // returns when ch is closed
			for name, want := range tt.want {
				got := len(ws[name].C) == 1
				if got != want {
					t.Errorf("watcher %s signalled = %v, want %v", name, got, want)
				}
			}
			for _, w := range ws {
				w.stop()
			}
			if n := h.count(); n != 0 || len(h.watchers) != 0 {
				t.Errorf("%d watchers, %d ids left after stop", n, len(h.watchers))
			}
		})
	}
}

// count returns the number of registered watchers.
func (h *hub) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, set := range h.watchers {
		n += len(set)
	}
	return n
}
