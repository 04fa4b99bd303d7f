package server

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/staged-dev/staged/internal/store"

	"github.com/redis/go-redis/v9"
)

// fakeStream is one job's event stream for a hub without Redis: entry ids
// "N-0", N from 1.
type fakeStream struct {
	mu    sync.Mutex
	evs   []store.Event
	reads int   // calls of read
	err   error // returned by read when set
	// hook, when set, runs inside read before it reads.
	hook func()
}

// add appends n entries and returns their ids.
func (f *fakeStream) add(n int) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []string
	for range n {
		id := strconv.Itoa(len(f.evs)+1) + "-0"
		f.evs = append(f.evs, store.Event{ID: id, Data: []byte(`{"state":"running","n":"` + id + `"}`)})
		ids = append(ids, id)
	}
	return ids
}

func (f *fakeStream) read(_ context.Context, _, after string, n int64) ([]store.Event, error) {
	f.mu.Lock()
	f.reads++
	hook, err := f.hook, f.err
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	from := 0
	if after != "" && after != "0" {
		from, _ = strconv.Atoi(strings.TrimSuffix(after, "-0"))
	}
	var out []store.Event
	for _, ev := range f.evs[min(from, len(f.evs)):] {
		if int64(len(out)) == n {
			break
		}
		out = append(out, store.Event{ID: ev.ID, Data: ev.Data})
	}
	return out, nil
}

func (f *fakeStream) readCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads
}

func newTestHub(f *fakeStream) *hub {
	return newHubWith(slog.New(slog.DiscardHandler), f.read, 5*time.Second)
}

// feed delivers msgs to h as its subscription would, and waits for the
// readers they started.
func (h *hub) feed(msgs ...any) {
	ch := make(chan any, len(msgs))
	for _, m := range msgs {
		ch <- m
	}
	close(ch)
	h.done = make(chan struct{})
	h.run(ch) // returns when ch is closed
	h.readers.Wait()
}

func msg(id string) *redis.Message { return &redis.Message{Channel: store.EventsChannel, Payload: id} }

// handed returns the ids handed to w and whether it must read for itself.
func handed(w *watcher) (ids []string, behind bool) {
	batches, behind := w.take()
	for _, evs := range batches {
		for _, ev := range evs {
			ids = append(ids, ev.ID)
		}
	}
	return ids, behind
}

func signalled(w *watcher) bool {
	select {
	case <-w.C:
		return true
	default:
		return false
	}
}

func TestHubSignals(t *testing.T) {
	tests := []struct {
		name string
		msg  any
		want map[string]bool // watcher -> signalled
	}{
		{"a change of a", msg("a"), map[string]bool{"a1": true, "a2": true, "b": false}},
		{"a change of an unwatched job", msg("z"), map[string]bool{"a1": false, "a2": false, "b": false}},
		{"(re)subscribed: everyone re-reads", &redis.Subscription{Kind: "subscribe", Channel: "staged:events", Count: 1}, map[string]bool{"a1": true, "a2": true, "b": true}},
		{"unsubscribed", &redis.Subscription{Kind: "unsubscribe", Channel: "staged:events"}, map[string]bool{"a1": false, "a2": false, "b": false}},
		// On a Cluster: the job's own shard channel.
		{"a change of a on its shard channel", &redis.Message{Channel: store.EventsShardChannel("a"), Payload: "{a}"}, map[string]bool{"a1": true, "a2": true, "b": false}},
		{"a's shard channel (re)subscribed: a's watchers re-read", &redis.Subscription{Kind: "ssubscribe", Channel: store.EventsShardChannel("a"), Count: 1}, map[string]bool{"a1": true, "a2": true, "b": false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newTestHub(&fakeStream{})
			ws := map[string]*watcher{"a1": h.watch("a"), "a2": h.watch("a"), "b": h.watch("b")}
			h.feed(tt.msg)
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

// A caught-up feed watcher of a job whose shard channel is (re)subscribed
// must read for itself: writes made before the subscription sent no
// message it could have seen.
func TestHubShardResubscribed(t *testing.T) {
	f := &fakeStream{}
	f.add(3)
	h := newTestHub(f)
	w, other := h.watchEvents("a"), h.watchEvents("b")
	defer w.stop()
	defer other.stop()
	for _, x := range []*watcher{w, other} {
		if !x.caughtUp("3-0") {
			t.Fatal("caughtUp refused")
		}
	}
	before := h.seq("a")
	h.feed(&redis.Subscription{Kind: "ssubscribe", Channel: store.EventsShardChannel("a"), Count: 1})
	if !signalled(w) {
		t.Fatal("a's feed watcher not signalled")
	}
	if _, behind := handed(w); !behind {
		t.Errorf("a's feed watcher not told to read for itself")
	}
	if h.seq("a") <= before {
		t.Errorf("a's message count stayed at %d: a long poll could reuse an older read", before)
	}
	if signalled(other) {
		t.Errorf("b's watcher signalled by a's subscription")
	}
}

// TestHubSharedRead: one read per message for all caught-up feed
// watchers, the same entries (shared) handed to each; plain watchers are
// signalled as before.
func TestHubSharedRead(t *testing.T) {
	f := &fakeStream{}
	f.add(3)
	h := newTestHub(f)
	const n = 50
	ws := make([]*watcher, n)
	for i := range ws {
		ws[i] = h.watchEvents("a")
		if !ws[i].caughtUp("3-0") {
			t.Fatal("caughtUp refused")
		}
	}
	plain := h.watch("a")

	for round := range 3 {
		ids := f.add(2)
		h.feed(msg("a"))
		if got := f.readCount(); got != round+1 {
			t.Fatalf("round %d: %d reads in all, want %d: one per message", round, got, round+1)
		}
		if !signalled(plain) {
			t.Errorf("round %d: the plain watcher was not signalled", round)
		}
		var first *store.Event
		for i, w := range ws {
			if !signalled(w) {
				t.Fatalf("round %d: watcher %d not signalled", round, i)
			}
			batches, behind := w.take()
			if behind || len(batches) != 1 || len(batches[0]) != 2 || batches[0][0].ID != ids[0] || batches[0][1].ID != ids[1] {
				t.Fatalf("round %d: watcher %d handed %v (behind %v), want %v", round, i, batches, behind, ids)
			}
			if first == nil {
				first = &batches[0][0]
			} else if &batches[0][0] != first {
				t.Fatalf("round %d: watcher %d was handed a copy, not the shared entries", round, i)
			}
		}
	}

	// A message with nothing new: one read, nothing handed, no signal.
	h.feed(msg("a"))
	for i, w := range ws {
		if signalled(w) {
			t.Fatalf("watcher %d signalled for nothing", i)
		}
	}
	for _, w := range ws {
		w.stop()
	}
	plain.stop()
	if n := h.count(); n != 0 {
		t.Errorf("%d watchers left", n)
	}
}

// TestHubPositions: a feed watcher is handed exactly the entries after its
// own position when that is in the shared read; any other is made to read
// for itself.
func TestHubPositions(t *testing.T) {
	f := &fakeStream{}
	f.add(5)
	h := newTestHub(f)
	atStart := h.watchEvents("a") // the hub reads after its position, 2-0
	atStart.caughtUp("2-0")
	inside := h.watchEvents("a") // later, inside the read
	inside.caughtUp("4-0")
	atEnd := h.watchEvents("a") // has it all already
	atEnd.caughtUp("5-0")
	ahead := h.watchEvents("a") // somewhere the read does not reach
	ahead.caughtUp("9-0")
	fresh := h.watchEvents("a") // connected, not caught up yet

	h.feed(msg("a"))
	for _, c := range []struct {
		name   string
		w      *watcher
		want   string
		behind bool
		signal bool
	}{
		{"at the start", atStart, "3-0 4-0 5-0", false, true},
		{"inside", inside, "5-0", false, true},
		{"at the end", atEnd, "", false, false},
		{"ahead", ahead, "", true, true},
		{"not caught up", fresh, "", true, true},
	} {
		sig := signalled(c.w)
		ids, behind := handed(c.w)
		if got := strings.Join(ids, " "); got != c.want || behind != c.behind || sig != c.signal {
			t.Errorf("%s: handed %q behind %v signalled %v, want %q %v %v", c.name, got, behind, sig, c.want, c.behind, c.signal)
		}
	}
}

// TestHubReadDuringCatchUp: a shared read delivered while a watcher reads
// for itself makes it read again, since its own read may end before what
// the hub delivered, where the next shared read begins.
func TestHubReadDuringCatchUp(t *testing.T) {
	f := &fakeStream{}
	f.add(2)
	h := newTestHub(f)
	a := h.watchEvents("a")
	a.caughtUp("2-0")
	b := h.watchEvents("a") // catching up: read up to 2-0 …
	f.add(1)                // … then 3-0 is written and read by the hub
	h.feed(msg("a"))
	if ids, _ := handed(a); strings.Join(ids, " ") != "3-0" {
		t.Fatalf("a handed %v", ids)
	}
	if b.caughtUp("2-0") {
		t.Fatal("b reported caught up at 2-0 after the hub delivered 3-0")
	}
	if !signalled(b) {
		t.Fatal("b not signalled to read again")
	}
	if _, behind := b.take(); !behind {
		t.Fatal("b not behind")
	}
	if !b.caughtUp("3-0") { // its second read
		t.Fatal("b's second report refused")
	}
	f.add(1)
	h.feed(msg("a"))
	for name, w := range map[string]*watcher{"a": a, "b": b} {
		if ids, behind := handed(w); strings.Join(ids, " ") != "4-0" || behind {
			t.Errorf("%s handed %v behind %v, want 4-0", name, ids, behind)
		}
	}
}

// TestHubFullReads: a full read is followed by another; a watcher that
// does not take its entries is dropped to its own reads past maxPending,
// and the others are not held back.
func TestHubFullReads(t *testing.T) {
	f := &fakeStream{}
	f.add(1)
	h := newTestHub(f)
	fast, slow := h.watchEvents("a"), h.watchEvents("a")
	fast.caughtUp("1-0")
	slow.caughtUp("1-0")
	n := maxPending + 2*eventsBatch
	ids := f.add(n)
	// The reader goes on after each full read: fast takes as it goes.
	var got []string
	f.hook = func() {
		more, behind := handed(fast)
		if behind {
			t.Error("fast fell behind")
		}
		got = append(got, more...)
	}
	h.feed(msg("a"))
	f.hook = nil
	more, _ := handed(fast)
	got = append(got, more...)
	if strings.Join(got, " ") != strings.Join(ids, " ") {
		t.Fatalf("fast handed %d entries, want %d in order", len(got), len(ids))
	}
	if want := n/eventsBatch + 1; f.readCount() != want {
		t.Errorf("%d reads, want %d", f.readCount(), want)
	}
	batches, behind := slow.take()
	if !behind || len(batches) != 0 {
		t.Errorf("slow: %d batches pending, behind %v; want none, behind", len(batches), behind)
	}
}

// TestHubReadError: a failed shared read makes the caught-up watchers read
// for themselves.
func TestHubReadError(t *testing.T) {
	f := &fakeStream{}
	f.add(1)
	h := newTestHub(f)
	w := h.watchEvents("a")
	w.caughtUp("1-0")
	f.err = errors.New("boom")
	f.add(1)
	h.feed(msg("a"))
	if ids, behind := handed(w); len(ids) != 0 || !behind {
		t.Fatalf("handed %v behind %v, want nothing, behind", ids, behind)
	}
}

// TestHubResubscribe: a (re)subscription makes every feed watcher read for
// itself, entries already handed first.
func TestHubResubscribe(t *testing.T) {
	f := &fakeStream{}
	f.add(1)
	h := newTestHub(f)
	w := h.watchEvents("a")
	w.caughtUp("1-0")
	f.add(1)
	h.feed(msg("a"))
	h.feed(&redis.Subscription{Kind: "subscribe", Channel: store.EventsChannel, Count: 1})
	if ids, behind := handed(w); strings.Join(ids, " ") != "2-0" || !behind {
		t.Fatalf("handed %v behind %v, want 2-0 then behind", ids, behind)
	}
	if !w.caughtUp("2-0") {
		t.Fatal("caughtUp refused after the re-read")
	}
}

// TestHubConcurrent races messages, shared reads, takes, own reads and
// stops (run with -race): every watcher ends with every entry, in order,
// once.
func TestHubConcurrent(t *testing.T) {
	f := &fakeStream{}
	h := newTestHub(f)
	const watchers, writes = 20, 300
	ch := make(chan any, writes+10)
	h.done = make(chan struct{})
	go h.run(ch)

	var wg sync.WaitGroup
	results := make([][]string, watchers)
	for i := range watchers {
		w := h.watchEvents("a")
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.stop()
			var got []string
			last := "0"
			w.signal()
			for last != strconv.Itoa(writes)+"-0" {
				<-w.C
				batches, behind := w.take()
				for _, evs := range batches {
					for _, ev := range evs {
						got, last = append(got, ev.ID), ev.ID
					}
				}
				if behind {
					for {
						evs, _ := f.read(context.Background(), "a", last, eventsBatch)
						for _, ev := range evs {
							got, last = append(got, ev.ID), ev.ID
						}
						if len(evs) < eventsBatch {
							break
						}
					}
					w.caughtUp(last)
				}
			}
			results[i] = got
		}()
	}
	for i := range writes {
		f.add(1)
		ch <- msg("a")
		if i%50 == 0 {
			ch <- &redis.Subscription{Kind: "subscribe", Channel: store.EventsChannel, Count: 1}
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("watchers did not get every entry")
	}
	close(ch)
	<-h.done
	h.readers.Wait()
	for i, got := range results {
		if len(got) != writes {
			t.Fatalf("watcher %d got %d entries, want %d", i, len(got), writes)
		}
		for j, id := range got {
			if id != strconv.Itoa(j+1)+"-0" {
				t.Fatalf("watcher %d entry %d is %s", i, j, id)
			}
		}
	}
	t.Logf("%d reads for %d writes to %d watchers", f.readCount(), writes, watchers)
}

// count returns the number of registered watchers.
func (h *hub) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, js := range h.watchers {
		n += len(js.ws)
	}
	return n
}
