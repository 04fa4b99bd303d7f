package server

import (
	"testing"
	"time"
)

// The submits of one grain share a context, which ends timeout to
// timeout+grain after each of them began.
func TestDeadlinesShared(t *testing.T) {
	const timeout = time.Hour // a grain of 28 s: the calls below fall in one
	d := newDeadlines(timeout)
	a := d.get()
	mid := time.Now()
	b := d.get()
	after := time.Now()
	if a != b {
		t.Fatal("two gets within a grain made two contexts")
	}
	at, ok := a.Deadline()
	// Not before timeout from the second get began, nor after timeout+grain.
	if !ok || at.Before(mid.Add(timeout)) || at.After(after.Add(timeout+d.grain)) {
		t.Fatalf("deadline %v (%v), want from %v to %v", at, ok, mid.Add(timeout), after.Add(timeout+d.grain))
	}
	if a.Err() != nil {
		t.Fatalf("context ended already: %v", a.Err())
	}
}

// A context from get ends at its deadline.
func TestDeadlinesEnd(t *testing.T) {
	d := newDeadlines(10 * time.Millisecond)
	ctx := d.get()
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the context did not end")
	}
	if d.get() == ctx {
		t.Fatal("get handed out a context that has ended")
	}
}
