package server

import (
	"context"
	"math"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"

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
)

// rateLimiter is a GCRA limiter in Redis (redis_rate), shared by every API
// process on the same Redis.
type rateLimiter struct {
	lim       *redis_rate.Limiter
	limit     redis_rate.Limit
	perSecond float64
	limitHdr  string       // RateLimit-Limit, formatted once
	lastWarn  atomic.Int64 // unix nanos of the last "limiter failed" warning
}

func newRateLimiter(rdb redis.UniversalClient, perSecond float64) *rateLimiter {
	if perSecond <= 0 {
		return nil
	}
	l := limitFor(perSecond)
	return &rateLimiter{lim: redis_rate.NewLimiter(rdb), limit: l, perSecond: perSecond,
		limitHdr: strconv.Itoa(l.Burst)}
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
// 429 problem with Retry-After (whole seconds, rounded up). When Redis
// cannot answer, the request goes through: the handler then answers 503
// itself if it needs Redis.
func (s *Server) rateLimit(next echo.HandlerFunc) echo.HandlerFunc {
	rl := s.limiter
	if rl == nil {
		return next
	}
	return func(c echo.Context) error {
		key := rateKeyIP + c.RealIP()
		if t := tenantOf(c); t != "" {
			key = rateKeyTenant + t
		}
		ctx, cancel := context.WithTimeout(c.Request().Context(), s.cfg.RedisTimeout)
		res, err := rl.lim.Allow(ctx, key, rl.limit)
		cancel()
		if err != nil {
			rl.warn(s, err)
			return next(c)
		}
		h := c.Response().Header()
		h.Set("RateLimit-Limit", rl.limitHdr)
		h.Set("RateLimit-Remaining", strconv.Itoa(res.Remaining))
		h.Set("RateLimit-Reset", strconv.Itoa(max(0, int((res.ResetAfter+time.Second-1)/time.Second))))
		if res.Allowed > 0 {
			return next(c)
		}
		retry := ceilSeconds(res.RetryAfter)
		h.Set(echo.HeaderRetryAfter, strconv.Itoa(retry))
		return tasks.Errorf(tasks.ERATELIMITED, "too many requests: the limit is %s requests per second per key; retry in %d s",
			strconv.FormatFloat(rl.perSecond, 'g', -1, 64), retry)
	}
}

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
