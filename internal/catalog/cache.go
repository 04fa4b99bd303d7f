package catalog

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// RefreshDefault is how often a Cache rereads the catalogue besides the
// change notifications.
const RefreshDefault = 2 * time.Second

// Cache is an API process's copy of the catalogue: reread when a worker
// publishes a change (pub/sub), every Refresh, and when a submit names a
// type it does not know.
type Cache struct {
	rdb     redis.UniversalClient
	refresh time.Duration
	log     *slog.Logger

	mu      sync.Mutex
	snap    *Snapshot
	loading chan struct{} // closed when the load in flight ends
}

// NewCache returns a cache of the catalogue in rdb; refresh 0 means
// RefreshDefault.
func NewCache(rdb redis.UniversalClient, refresh time.Duration, log *slog.Logger) *Cache {
	if refresh <= 0 {
		refresh = RefreshDefault
	}
	if log == nil {
		log = slog.Default()
	}
	return &Cache{rdb: rdb, refresh: refresh, log: log}
}

// Run keeps the cache fresh until ctx is done.
func (c *Cache) Run(ctx context.Context) {
	sub := c.rdb.Subscribe(ctx, Channel)
	defer sub.Close()
	ch := sub.Channel()
	t := time.NewTicker(c.refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
		case <-t.C:
		}
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if _, err := c.load(lctx); err != nil && ctx.Err() == nil {
			c.log.Debug("cannot read the pipeline catalogue", "err", err)
		}
		cancel()
	}
}

// Get returns the current snapshot, reading it when there is none yet or
// when it is older than maxAge (0: any age will do). When the read fails
// (Redis down) it returns the last snapshot read, if any.
func (c *Cache) Get(ctx context.Context, maxAge time.Duration) (*Snapshot, error) {
	c.mu.Lock()
	s := c.snap
	c.mu.Unlock()
	if s != nil && (maxAge == 0 || time.Since(s.At) < maxAge) {
		return s, nil
	}
	fresh, err := c.load(ctx)
	if err != nil && s != nil {
		return s, nil
	}
	return fresh, err
}

// Lookup returns the snapshot to accept a job of type name with: the
// cached one, or a fresh one when the cached one does not know name (a
// worker may have just published it). Concurrent rereads are one read.
func (c *Cache) Lookup(ctx context.Context, name string) (*Snapshot, error) {
	s, err := c.Get(ctx, 2*c.refresh) // bounded staleness even without Run
	if err != nil {
		return nil, err
	}
	if _, ok := s.Pipelines[name]; ok {
		return s, nil
	}
	return c.load(ctx) // shared with the loads under way
}

// load reads the catalogue; concurrent callers share one read.
func (c *Cache) load(ctx context.Context) (*Snapshot, error) {
	c.mu.Lock()
	if ch := c.loading; ch != nil {
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		c.mu.Lock()
		s := c.snap
		c.mu.Unlock()
		if s == nil {
			return c.load(ctx)
		}
		return s, nil
	}
	ch := make(chan struct{})
	c.loading = ch
	prev := c.snap
	c.mu.Unlock()

	s, err := Load(ctx, c.rdb, prev)
	c.mu.Lock()
	if err == nil {
		c.snap = s
	}
	c.loading = nil
	c.mu.Unlock()
	close(ch)
	return s, err
}
