package server

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/staged-dev/staged/internal/store"

	"github.com/redis/go-redis/v9"
)

// hub holds the process's one Redis subscription to store.EventsChannel
// (payload: a job id, published on every record write) and fans each
// message out to the local watchers of that job. Watchers cost a map entry
// and a channel: no goroutine and no Redis connection each.
//
// There are two kinds of watchers. A plain watcher (watch, used by ?wait)
// is only signalled and re-reads the record itself. A feed watcher
// (watchEvents, used by SSE streams) is also handed the job's new stream
// entries: on a message for a job that has caught-up feed watchers, one
// short-lived reader goroutine per job reads the entries after the last id
// the hub delivered for that job, once, and hands the same entries (shared,
// never modified) to every feed watcher that is at an id inside or at the
// start of them. A feed watcher that is anywhere else (just connected,
// resumed with Last-Event-ID, dropped for a full buffer, or after a failed
// read) is marked stale and signalled instead, and catches up with its own
// XRANGE from the last id it sent, then reports where it is (caughtUp).
//
// go-redis re-establishes the subscription by itself after a disconnect;
// every (re)subscription marks every feed watcher stale and signals all
// watchers, since messages published while it was down are lost and the
// watchers must re-read.
//
// On a Redis Cluster the hub subscribes instead to the job's own shard
// channel (store.EventsShardChannel, SSUBSCRIBE on the master of the job's
// slot, through store.ShardSub) while the job has watchers here, so that a
// record write's notice reaches only that master and the API processes
// watching the job. The subscription is asked for when the job's first
// watcher registers and becomes active some time later, maybe after the
// watcher's first read: its confirmation ("ssubscribe", and again after
// any re-subscription) marks the job's feed watchers stale and signals its
// watchers, which re-read, as on a (re)subscription above. So no write is
// missed between a watcher's first read and the subscription.
type hub struct {
	log    *slog.Logger
	ps     *redis.PubSub
	shards *store.ShardSub // on a Cluster, instead of ps
	// read returns up to n entries of job id's stream after id after.
	read    func(ctx context.Context, id, after string, n int64) ([]store.Event, error)
	timeout time.Duration // of one read

	// msgs counts every message (and resubscription); a job's seq is the
	// count at its last message, or at its first watcher: it never goes
	// back, even when the job's watchers come and go.
	msgs atomic.Uint64

	mu       sync.Mutex
	watchers map[string]*jobWatch

	ctx     context.Context // canceled by close: ends readers' reads
	cancel  context.CancelFunc
	readers sync.WaitGroup
	done    chan struct{}
}

// jobWatch is the watchers of one job and the hub's shared reading of the
// job's stream. Guarded by hub.mu.
type jobWatch struct {
	ws map[*watcher]struct{}
	// last is the id of the last entry the hub delivered, or the position
	// of the first feed watcher to catch up ("" before): the next shared
	// read starts after it.
	last  string
	dirty bool // a message came since the reader's last read began
	// seq is hub.msgs at the job's last message (or when it was first
	// watched), so that long polls can tell a read that saw a change from
	// one that may not have (sharedReads).
	seq     uint64
	reading bool // a reader goroutine runs for this job
}

// maxPending bounds the entries handed to one feed watcher and not yet
// taken; past it the watcher is dropped to its own catch-up read.
const maxPending = 4 * eventsBatch

// watcher receives a signal on C, buffered 1, whenever its job may have
// changed. Signals coalesce: one pending signal means "look again".
type watcher struct {
	C    chan struct{}
	id   string
	h    *hub
	feed bool // handed stream entries (watchEvents), else signals only

	// Feed state, guarded by h.mu. at is "" when the watcher must read
	// for itself; otherwise it has been handed every entry up to id at:
	// the last id its handler sent, followed by pending.
	at      string
	pending [][]store.Event // shared slices: read-only
	npend   int             // entries in pending
	stale   bool            // set whenever the hub signals without handing entries
}

func newHub(rdb redis.UniversalClient, log *slog.Logger, timeout time.Duration) *hub {
	h := newHubWith(log, store.NewStore(rdb).Events, timeout)
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		h.shards = store.NewShardSub(cc, log, store.EventsChannel)
		go h.run(h.shards.C())
		return h
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// An error here (Redis down) is not fatal: the channel below keeps
	// reconnecting and subscribes when Redis is back.
	h.ps = rdb.Subscribe(ctx, store.EventsChannel)
	go h.run(h.ps.ChannelWithSubscriptions(redis.WithChannelSize(1024)))
	return h
}

// newHubWith returns a hub without a subscription: run feeds it.
func newHubWith(log *slog.Logger, read func(ctx context.Context, id, after string, n int64) ([]store.Event, error), timeout time.Duration) *hub {
	h := &hub{log: log, read: read, timeout: timeout, watchers: map[string]*jobWatch{}, done: make(chan struct{})}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	return h
}

func (h *hub) run(ch <-chan any) {
	defer close(h.done)
	for m := range ch {
		switch m := m.(type) {
		case *redis.Message:
			if id := store.ShardKey(m.Channel); id != "" {
				h.notify(id)
			} else {
				h.notify(m.Payload)
			}
		case *redis.Subscription:
			switch m.Kind {
			case "subscribe":
				h.log.Debug("hub subscribed", "channel", m.Channel)
				h.notifyAll()
			case "ssubscribe":
				h.resubscribed(store.ShardKey(m.Channel))
			}
		}
	}
}

// watch registers a plain watcher of job id. Register before reading the
// job's state, so that no change after the read is missed; stop it when
// done.
func (h *hub) watch(id string) *watcher { return h.add(id, false) }

// watchEvents registers a feed watcher of job id, stale until its handler
// reports with caughtUp. Register before the first read; stop it when done.
func (h *hub) watchEvents(id string) *watcher { return h.add(id, true) }

func (h *hub) add(id string, feed bool) *watcher {
	w := &watcher{C: make(chan struct{}, 1), id: id, h: h, feed: feed}
	h.mu.Lock()
	js := h.watchers[id]
	if js == nil {
		js = &jobWatch{ws: map[*watcher]struct{}{}, seq: h.msgs.Load()}
		h.watchers[id] = js
		if h.shards != nil {
			h.shards.SSubscribe(store.EventsShardChannel(id))
		}
	}
	js.ws[w] = struct{}{}
	h.mu.Unlock()
	return w
}

// stop unregisters w.
func (w *watcher) stop() {
	h := w.h
	h.mu.Lock()
	if js := h.watchers[w.id]; js != nil {
		delete(js.ws, w)
		if len(js.ws) == 0 {
			delete(h.watchers, w.id) // a running reader finds no one and ends
			if h.shards != nil {
				h.shards.SUnsubscribe(store.EventsShardChannel(w.id))
			}
		}
	}
	w.pending, w.npend = nil, 0
	h.mu.Unlock()
}

func (w *watcher) signal() {
	select {
	case w.C <- struct{}{}:
	default:
	}
}

// reread marks a feed watcher stale (it must read for itself) and signals
// it. Entries already handed stay pending: they precede what it will read.
// h.mu is held.
func (w *watcher) reread() {
	w.at, w.stale = "", true
	w.signal()
}

// take returns (and forgets) the entries handed to w, in order, and
// whether it must then read for itself from the last id it sent. When it
// must, w stays stale until caughtUp reports where the read ended.
func (w *watcher) take() (batches [][]store.Event, behind bool) {
	h := w.h
	h.mu.Lock()
	defer h.mu.Unlock()
	batches, w.pending, w.npend = w.pending, nil, 0
	if w.at == "" || w.stale {
		w.at, w.stale = "", false
		return batches, true
	}
	return batches, false
}

// caughtUp reports that w's handler has sent every entry up to id last
// and found no more, by a read that began after its take (or after
// watchEvents). From then on w is handed entries, unless the hub made it
// stale meanwhile (it was then signalled, and reads again): ok says which.
func (w *watcher) caughtUp(last string) (ok bool) {
	h := w.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if w.stale || last == "" {
		return false
	}
	w.at = last
	if js := h.watchers[w.id]; js != nil && js.last == "" {
		js.last = last
	}
	return true
}

// notify handles a message for job id: plain and stale feed watchers are
// signalled; if some feed watcher is caught up, the job's reader reads the
// new entries for them.
func (h *hub) notify(id string) {
	n := h.msgs.Add(1)
	h.mu.Lock()
	defer h.mu.Unlock()
	js := h.watchers[id]
	if js == nil {
		return
	}
	js.seq = n
	shared := false
	for w := range js.ws {
		switch {
		case !w.feed:
			w.signal()
		case w.at == "" || js.last == "":
			w.reread() // it may be reading now: stale, so it reads again
		default:
			shared = true // the reader hands it the entries, or rereads it
		}
	}
	if !shared {
		return
	}
	js.dirty = true
	if !js.reading {
		js.reading = true
		h.readers.Add(1)
		go h.reader(id, js)
	}
}

// reader reads job id's new entries while messages keep coming (or a read
// was full) and delivers each read. One runs per job at a time, only while
// there is reading to do.
func (h *hub) reader(id string, js *jobWatch) {
	defer h.readers.Done()
	for {
		h.mu.Lock()
		if !js.dirty || len(js.ws) == 0 {
			js.reading = false
			h.mu.Unlock()
			return
		}
		js.dirty = false
		after := js.last
		h.mu.Unlock()

		ctx, cancel := context.WithTimeout(h.ctx, h.timeout)
		evs, err := h.read(ctx, id, after, eventsBatch)
		cancel()
		if err != nil && h.ctx.Err() == nil {
			h.log.Warn("hub: reading job events; its streams read for themselves", "job", id, "err", err)
		}

		h.mu.Lock()
		h.deliver(js, after, evs, err)
		if err == nil && len(evs) == eventsBatch {
			js.dirty = true // there may be more
		}
		h.mu.Unlock()
	}
}

// deliver hands evs, the entries after id after (or the failure to read
// them), to js's caught-up feed watchers: the tail after its position to
// a watcher whose position is after or one of evs, a reread to any other.
// h.mu is held.
func (h *hub) deliver(js *jobWatch, after string, evs []store.Event, err error) {
	if err != nil {
		for w := range js.ws {
			if w.feed && w.at != "" {
				w.reread()
			}
		}
		return
	}
	if len(evs) == 0 {
		return // nothing after js.last: caught-up watchers have it all
	}
	end := evs[len(evs)-1].ID
	js.last = end
	for w := range js.ws {
		if !w.feed || w.at == end {
			continue
		}
		if w.at == "" {
			// It may be reading for itself, and its read may end before
			// end: it must not report being caught up short of js.last,
			// where the next shared read begins.
			w.reread()
			continue
		}
		tail, ok := entriesAfter(evs, after, w.at)
		switch {
		case !ok:
			w.reread()
		case w.npend+len(tail) > maxPending:
			// Its handler is stuck writing: drop what it was handed; it
			// reads from the last id it sent when it gets to it.
			w.pending, w.npend = nil, 0
			w.reread()
		default:
			w.pending = append(w.pending, tail)
			w.npend += len(tail)
			w.at = end
			w.signal()
		}
	}
}

// entriesAfter returns the entries of evs (the entries after id after)
// that follow id at, if at is after or one of evs.
func entriesAfter(evs []store.Event, after, at string) ([]store.Event, bool) {
	if at == after {
		return evs, true
	}
	for i := range evs {
		if evs[i].ID == at {
			return evs[i+1:], true
		}
	}
	return nil, false
}

// notifyAll signals every watcher and makes every feed watcher reread.
func (h *hub) notifyAll() {
	n := h.msgs.Add(1)
	h.mu.Lock()
	for _, js := range h.watchers {
		js.rereadAll(n)
	}
	h.mu.Unlock()
}

// resubscribed handles the (re)subscription to job id's shard channel:
// messages may have been missed before it, so its watchers re-read.
func (h *hub) resubscribed(id string) {
	n := h.msgs.Add(1)
	h.mu.Lock()
	defer h.mu.Unlock()
	if js := h.watchers[id]; js != nil {
		js.rereadAll(n)
	}
}

// rereadAll marks message n as the job's latest, signals its plain
// watchers and makes its feed watchers reread. The hub's lock is held.
func (js *jobWatch) rereadAll(n uint64) {
	js.seq = n
	for w := range js.ws {
		if w.feed {
			w.reread()
		} else {
			w.signal()
		}
	}
}

// seq returns job id's message count (see jobWatch.seq).
func (h *hub) seq(id string) uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if js := h.watchers[id]; js != nil {
		return js.seq
	}
	return h.msgs.Load()
}

// close ends the subscription and waits for the readers.
func (h *hub) close() error {
	var err error
	if h.shards != nil {
		err = h.shards.Close()
	} else {
		err = h.ps.Close()
	}
	<-h.done
	h.cancel()
	h.readers.Wait()
	return err
}
