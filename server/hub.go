package server

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/staged-dev/staged/tasks"
)

// hub holds the process's one Redis subscription to tasks.EventsChannel
// (payload: a job id, published on every record write) and fans each
// message out to the local watchers of that job. Watchers cost a map entry
// and a channel: no goroutine and no Redis connection each.
//
// go-redis re-establishes the subscription by itself after a disconnect;
// every (re)subscription signals all watchers, since messages published
// while it was down are lost and the watchers must re-read.
type hub struct {
	log *slog.Logger
	ps  *redis.PubSub

	mu       sync.Mutex
	watchers map[string]map[*watcher]struct{}

	done chan struct{}
}

// watcher receives a signal on C, buffered 1, whenever its job may have
// changed. Signals coalesce: one pending signal means "re-read".
type watcher struct {
	C  chan struct{}
	id string
	h  *hub
}

func newHub(rdb redis.UniversalClient, log *slog.Logger, timeout time.Duration) *hub {
	h := &hub{log: log, watchers: map[string]map[*watcher]struct{}{}, done: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// An error here (Redis down) is not fatal: the channel below keeps
	// reconnecting and subscribes when Redis is back.
	h.ps = rdb.Subscribe(ctx, tasks.EventsChannel)
	go h.run(h.ps.ChannelWithSubscriptions(redis.WithChannelSize(1024)))
	return h
}

func (h *hub) run(ch <-chan any) {
	defer close(h.done)
	for m := range ch {
		switch m := m.(type) {
		case *redis.Message:
			h.notify(m.Payload)
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				h.log.Debug("hub subscribed", "channel", m.Channel)
				h.notifyAll()
			}
		}
	}
}

// watch registers a watcher of job id. Register before reading the job's
// state, so that no change after the read is missed; stop it when done.
func (h *hub) watch(id string) *watcher {
	w := &watcher{C: make(chan struct{}, 1), id: id, h: h}
	h.mu.Lock()
	set := h.watchers[id]
	if set == nil {
		set = map[*watcher]struct{}{}
		h.watchers[id] = set
	}
	set[w] = struct{}{}
	h.mu.Unlock()
	return w
}

// stop unregisters w.
func (w *watcher) stop() {
	h := w.h
	h.mu.Lock()
	if set := h.watchers[w.id]; set != nil {
		delete(set, w)
		if len(set) == 0 {
			delete(h.watchers, w.id)
		}
	}
	h.mu.Unlock()
}

func (w *watcher) signal() {
	select {
	case w.C <- struct{}{}:
	default:
	}
}

// notify signals the watchers of job id.
func (h *hub) notify(id string) {
	h.mu.Lock()
	for w := range h.watchers[id] {
		w.signal()
	}
	h.mu.Unlock()
}

// notifyAll signals every watcher.
func (h *hub) notifyAll() {
	h.mu.Lock()
	for _, set := range h.watchers {
		for w := range set {
			w.signal()
		}
	}
	h.mu.Unlock()
}

// close ends the subscription.
func (h *hub) close() error {
	err := h.ps.Close()
	<-h.done
	return err
}
