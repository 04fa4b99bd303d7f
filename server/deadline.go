package server

import (
	"context"
	"sync/atomic"
	"time"
)

// deadlines hands out contexts that end a timeout from now, shared by the
// requests of a few milliseconds: for the submit, the API's hot path,
// whose Redis calls a context per request (context.WithTimeout: a timer
// started and stopped, a Done channel, its registration with the
// request's context; four allocations) made 3% of the API's CPU. A
// context from get ends between timeout and timeout+grain from the call.
// It does not end with the request: a submit whose client has gone
// finishes its create (one script: done or not done either way), as it
// would had the client stayed.
type deadlines struct {
	timeout time.Duration
	grain   time.Duration
	cur     atomic.Pointer[sharedDeadline]
}

// deadlineGrains is how many of its contexts a deadlines makes per timeout,
// at most: its grain is the timeout / deadlineGrains.
const deadlineGrains = 128

type sharedDeadline struct {
	ctx    context.Context
	cancel context.CancelFunc // not called: the context ends at its deadline
	at     time.Time
}

func newDeadlines(timeout time.Duration) *deadlines {
	return &deadlines{timeout: timeout, grain: timeout / deadlineGrains}
}

// get returns a context that ends timeout to timeout+grain from now.
func (d *deadlines) get() context.Context {
	want := time.Now().Add(d.timeout)
	if c := d.cur.Load(); c != nil && !c.at.Before(want) && c.at.Sub(want) <= d.grain {
		return c.ctx
	}
	c := &sharedDeadline{at: want.Add(d.grain)}
	c.ctx, c.cancel = context.WithDeadline(context.Background(), c.at)
	d.cur.Store(c) // a racing get may replace it: each context is right
	return c.ctx
}
