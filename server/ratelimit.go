package server

import (
	"context"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"

	"github.com/staged-dev/staged/internal/store"
	"github.com/staged-dev/staged/tasks"
)

// Rate limiter keys: redis_rate prefixes them with "rate:" and sets a TTL
// on every write (the time until the key's bucket is full again), so they
// expire by themselves.
const (
	rateKeyTenant = "staged:rl:key:" // + the key's name
	rateKeyIP     = "staged:rl:ip:"  // + the client's IP, when the API is open
	// rateLogEvery spaces the warnings about a failing limiter.
	rateLogEvery = 10 * time.Second
	// rateBatchDiv and rateBatchMax: a process takes at most 1/rateBatchDiv
	// of a key's burst, and at most rateBatchMax tokens, from Redis at once.
	rateBatchDiv = 10
	rateBatchMax = 1000
	// rateLease is how long tokens taken from Redis may be spent locally;
	// unspent ones are dropped then, so no process hoards a key's budget.
	rateLease = time.Second
	// rateSweepAt is the number of local buckets above which expired ones
	// are dropped.
	rateSweepAt = 4096
)

// The rate limit's answer headers, as net/http's Header.Set would store
// (and write) them: RateLimit-Limit and so on, canonicalised. Written into
// the header map directly, they cost no canonicalisation per request.
const (
	hdrRateLimit     = "Ratelimit-Limit"
	hdrRateRemaining = "Ratelimit-Remaining"
	hdrRateReset     = "Ratelimit-Reset"
)

// rateLimiter is a GCRA limiter in Redis (redis_rate), shared by every API
// process on the same Redis, with a local layer in front (localBucket): a
// process takes up to a tenth of a key's burst (at most 1000 tokens) from
// Redis in one call and spends it locally within a second, so a busy key
// costs one Redis call per batch instead of one per request, and the limit
// stays shared: every token is counted in Redis. A limit under 20/s has
// batches of one: exact, as before. A request that spends a local token
// costs a map lookup under a read lock, the bucket's lock, one clock read
// and no allocation.
type rateLimiter struct {
	lim       *redis_rate.Limiter
	limit     redis_rate.Limit
	perSecond float64
	batch     int          // tokens taken from Redis at once
	limitHdr  string       // RateLimit-Limit, formatted once
	lastWarn  atomic.Int64 // unix nanos of the last "limiter failed" warning

	mu sync.RWMutex
	// buckets by who is limited: [0] keys by name, [1] client IPs.
	buckets [2]map[string]*localBucket
}

func newRateLimiter(rdb redis.UniversalClient, perSecond float64) *rateLimiter {
	if perSecond <= 0 {
		return nil
	}
	l := limitFor(perSecond)
	return &rateLimiter{lim: redis_rate.NewLimiter(rdb), limit: l, perSecond: perSecond,
		batch: min(max(1, l.Burst/rateBatchDiv), rateBatchMax), limitHdr: strconv.Itoa(l.Burst),
		buckets: [2]map[string]*localBucket{{}, {}}}
}

// limitFor turns requests per second into a redis_rate limit: the burst is
// one second's worth (at least 1); a fractional rate is kept exact by
// counting over a longer period.
func limitFor(perSecond float64) redis_rate.Limit {
	burst := max(1, int(math.Ceil(perSecond)))
	if perSecond == math.Trunc(perSecond) && perSecond <= math.MaxInt32 {
		return redis_rate.Limit{Rate: int(perSecond), Period: time.Second, Burst: burst}
	}
	const scale = 1000
	return redis_rate.Limit{Rate: max(1, int(math.Round(perSecond*scale))), Period: scale * time.Second, Burst: burst}
}

// rateLimit limits the requests of each key (by its name) or, when the API
// is open, of each client IP, to Config.RateLimit per second with a burst
// of one second's worth. Every answer carries RateLimit-Limit,
// RateLimit-Remaining and RateLimit-Reset; a request over the limit gets a
// 429 problem with Retry-After (whole seconds, rounded up).
//
// When Redis cannot answer, the request goes through (fail open, with a
// warning at most every rateLogEvery): a limiter must not turn an outage
// of its counters into an outage of the routes that need no Redis. But
// the request's Redis budget is spent: the limiter's call waited for it
// already, and the handler's own calls fail at once (redisCtx), so a
// request that needs Redis answers 503 after one Redis time-out, not two.
func (s *Server) rateLimit(next echo.HandlerFunc) echo.HandlerFunc {
	rl := s.limiter
	if rl == nil {
		return next
	}
	return func(c echo.Context) error {
		kind, name := byIP, c.RealIP()
		if t := tenantOf(c); t != "" {
			kind, name = byKey, t
		}
		res, err := rl.take(c.Request().Context(), kind, name, s.cfg.RedisTimeout)
		if err != nil {
			rl.warn(s, err)
			if store.Unavailable(err) {
				req := c.Request()
				c.SetRequest(req.WithContext(context.WithValue(req.Context(), redisSpentKey{}, err)))
			}
			return next(c)
		}
		h := c.Response().Header()
		v := make([]string, 3) // the three headers' values in one allocation
		v[0] = rl.limitHdr
		v[1] = strconv.Itoa(res.remaining)
		v[2] = strconv.Itoa(max(0, int((res.resetAfter+time.Second-1)/time.Second)))
		h[hdrRateLimit], h[hdrRateRemaining], h[hdrRateReset] = v[0:1:1], v[1:2:2], v[2:3:3]
		if res.allowed {
			return next(c)
		}
		retry := ceilSeconds(res.retryAfter)
		h.Set(echo.HeaderRetryAfter, strconv.Itoa(retry))
		return tasks.Errorf(tasks.ERATELIMITED, "too many requests: the limit is %s requests per second per key; retry in %d s",
			strconv.FormatFloat(rl.perSecond, 'g', -1, 64), retry)
	}
}

// Who a bucket limits: an API key by its name, or a client IP.
const (
	byKey = 0
	byIP  = 1
)

// rateKeys are the Redis key prefixes of byKey and byIP.
var rateKeys = [2]string{byKey: rateKeyTenant, byIP: rateKeyIP}

// redisSpentKey marks a request context whose Redis budget the rate
// limiter used up on an unreachable Redis; its value is the limiter's error.
type redisSpentKey struct{}

// warn logs a limiter failure at most once per rateLogEvery.
func (rl *rateLimiter) warn(s *Server, err error) {
	now := time.Now().UnixNano()
	last := rl.lastWarn.Load()
	if now-last < int64(rateLogEvery) || !rl.lastWarn.CompareAndSwap(last, now) {
		return
	}
	s.log.Warn("rate limiter cannot reach Redis; letting requests through", "err", err)
}

// ceilSeconds is d in whole seconds, rounded up, at least 1.
func ceilSeconds(d time.Duration) int {
	return max(1, int((d+time.Second-1)/time.Second))
}

// localBucket is one key's tokens taken from Redis and not yet spent.
type localBucket struct {
	key       string // in Redis (without redis_rate's "rate:")
	mu        sync.Mutex
	tokens    int
	expires   time.Time
	remaining int       // Redis's count after the last refill
	resetAt   time.Time // when Redis's bucket is full again
}

// rateResult is what take decided, and the headers' figures.
type rateResult struct {
	allowed    bool
	remaining  int
	resetAfter time.Duration
	retryAfter time.Duration // when not allowed
}

// take spends one token of the bucket of (kind, name): a local one if any
// is left, else one of a batch taken from Redis (not under the bucket's
// lock, so a slow Redis delays no other request).
func (rl *rateLimiter) take(ctx context.Context, kind int, name string, timeout time.Duration) (rateResult, error) {
	b := rl.bucket(kind, name)
	now := time.Now()
	b.mu.Lock()
	if b.tokens > 0 && now.Before(b.expires) {
		b.tokens--
		res := rateResult{allowed: true, remaining: b.remaining + b.tokens, resetAfter: b.resetAt.Sub(now)}
		b.mu.Unlock()
		return res, nil
	}
	b.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res, err := rl.lim.AllowAtMost(ctx, b.key, rl.limit, rl.batch)
	if err != nil {
		return rateResult{}, err
	}
	if res.Allowed == 0 {
		return rateResult{remaining: res.Remaining, resetAfter: res.ResetAfter, retryAfter: res.RetryAfter}, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !now.Before(b.expires) {
		b.tokens = 0
	}
	b.tokens += res.Allowed - 1
	b.expires = now.Add(rateLease)
	b.remaining, b.resetAt = res.Remaining, now.Add(res.ResetAfter)
	return rateResult{allowed: true, remaining: res.Remaining + b.tokens, resetAfter: res.ResetAfter}, nil
}

// bucket returns the local bucket of (kind, name), making it if needed;
// past rateSweepAt buckets of that kind, the expired ones are dropped
// first.
func (rl *rateLimiter) bucket(kind int, name string) *localBucket {
	rl.mu.RLock()
	b := rl.buckets[kind][name]
	rl.mu.RUnlock()
	if b != nil {
		return b
	}
	rl.mu.Lock()
	defer rl.mu.Unlock()
	m := rl.buckets[kind]
	if b = m[name]; b != nil {
		return b
	}
	if len(m) >= rateSweepAt {
		now := time.Now()
		for k, x := range m {
			if x.mu.TryLock() {
				if !now.Before(x.expires) {
					delete(m, k)
				}
				x.mu.Unlock()
			}
		}
	}
	b = &localBucket{key: rateKeys[kind] + name}
	m[name] = b
	return b
}
