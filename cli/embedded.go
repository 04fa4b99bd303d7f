package cli

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
)

// embeddedClockEvery is how often the embedded Redis's key TTLs are moved
// forward by the time that passed.
const embeddedClockEvery = 250 * time.Millisecond

// embeddedRedis is the in-process Redis-compatible server of "staged dev"
// (miniredis). miniredis does not expire keys by itself: its TTLs only
// move when told, so a clock moves them forward by the time that passed,
// and Redis forgets finished jobs as it would in production. TIME and
// PEXPIREAT follow the wall clock, as miniredis has no fixed time set.
type embeddedRedis struct {
	m    *miniredis.Miniredis
	quit chan struct{}
	wg   sync.WaitGroup
}

func startEmbeddedRedis() (*embeddedRedis, error) {
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr("127.0.0.1:0"); err != nil {
		return nil, err
	}
	e := &embeddedRedis{m: m, quit: make(chan struct{})}
	e.wg.Add(1)
	go e.clock(embeddedClockEvery)
	return e, nil
}

// clock fast-forwards the TTLs by the (monotonic) time elapsed per tick.
func (e *embeddedRedis) clock(every time.Duration) {
	defer e.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-e.quit:
			return
		case now := <-t.C:
			e.m.FastForward(now.Sub(last))
			last = now
		}
	}
}

// URL is the redis:// URL of the embedded server.
func (e *embeddedRedis) URL() string { return "redis://" + e.m.Addr() + "/0" }

// Close stops the clock and the server; everything in it is gone.
func (e *embeddedRedis) Close() {
	close(e.quit)
	e.wg.Wait()
	e.m.Close()
}

// banner says loudly what the embedded Redis is and is not.
func (e *embeddedRedis) banner(w io.Writer) {
	fmt.Fprintf(w, `
  ***************************************************************************
  *  staged dev is using an EMBEDDED, IN-MEMORY Redis (miniredis) at
  *  %s
  *  It is for trying staged out: NOTHING SURVIVES EXIT - every job, queue
  *  and result is lost when this process stops - and it is not a real
  *  Redis (single process, no persistence, no replication).
  *  To use a real Redis:
  *      STAGED_REDIS_URL=redis://localhost:6379/0 staged dev
  ***************************************************************************
`, e.m.Addr())
}
