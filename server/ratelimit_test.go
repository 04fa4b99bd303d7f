package server

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestRateLimit(t *testing.T) {
	e := newEnv(t, withKeys, func(c *Config) { c.RateLimit = 2 })
	acme, globex := bearer(acmeSecret), bearer(globexSecret)
	path := "/v1/jobs/" + unknownID

	// A burst of one second's worth (2) goes through; the next is 429.
	for i := range 2 {
		res, b := e.do("GET", path, "", nil, acme...)
		if res.StatusCode != 404 {
			t.Fatalf("request %d: %d %s", i+1, res.StatusCode, b)
		}
		if got := res.Header.Get("RateLimit-Limit"); got != "2" {
			t.Errorf("RateLimit-Limit %q", got)
		}
		if got := res.Header.Get("RateLimit-Remaining"); got != strconv.Itoa(1-i) {
			t.Errorf("request %d: RateLimit-Remaining %q", i+1, got)
		}
	}
	res, b := e.do("GET", path, "", nil, acme...)
	assertProblem(t, res, b, http.StatusTooManyRequests, "the limit is 2 requests per second per key")
	if ra, err := strconv.Atoi(res.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 1 {
		t.Errorf("Retry-After %q, want 1 (whole seconds, rounded up)", res.Header.Get("Retry-After"))
	}
	if res.Header.Get("RateLimit-Remaining") != "0" || res.Header.Get("RateLimit-Reset") == "" {
		t.Errorf("429 headers: %v", res.Header)
	}
	// The limit is per key: another tenant is not affected, nor are the
	// open routes.
	if res, b := e.do("GET", path, "", nil, globex...); res.StatusCode != 404 {
		t.Errorf("another key: %d %s", res.StatusCode, b)
	}
	for range 5 {
		if res, _ := e.do("GET", "/healthz", "", nil); res.StatusCode != 200 {
			t.Fatalf("healthz under the limit: %d", res.StatusCode)
		}
		if res, _ := e.do("GET", "/metrics", "", nil); res.StatusCode != 200 {
			t.Fatalf("metrics under the limit: %d", res.StatusCode)
		}
	}
	// Its keys in Redis expire by themselves.
	ctx := context.Background()
	keys, err := e.rdb.Keys(ctx, "rate:staged:rl:*").Result()
	if err != nil || len(keys) != 2 {
		t.Fatalf("limiter keys %v (%v), want one per key used", keys, err)
	}
	for _, k := range keys {
		if ttl := e.rdb.PTTL(ctx, k).Val(); ttl <= 0 || ttl > 2*time.Second {
			t.Errorf("%s has TTL %v", k, ttl)
		}
	}
	// And the key gets through again once its burst has refilled.
	redisWait(t, 3*time.Second, "the limit to let acme through again", func() bool {
		res, _ := e.do("GET", path, "", nil, acme...)
		return res.StatusCode == 404
	})
}

// redisWait polls cond every 50ms (a rate limit refills by time).
func redisWait(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRateLimitOpenAPI: without keys the limit is per client IP.
func TestRateLimitOpenAPI(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RateLimit = 1 })
	if res, _ := e.do("GET", "/v1/pipelines", "", nil); res.StatusCode != 200 {
		t.Fatalf("first: %d", res.StatusCode)
	}
	// A client cannot dodge the limit by claiming another address.
	res, b := e.do("GET", "/v1/pipelines", "", nil, "X-Forwarded-For", "203.0.113.9", "X-Real-IP", "203.0.113.9")
	assertProblem(t, res, b, 429, "retry in 1 s")
	if keys := e.rdb.Keys(context.Background(), "rate:staged:rl:ip:*").Val(); len(keys) != 1 || !strings.HasSuffix(keys[0], ":127.0.0.1") {
		t.Errorf("limiter keys %v, want one for 127.0.0.1", keys)
	}
}

// TestRateLimitRedisDown: a limiter that cannot reach Redis lets the
// request through (the handler answers 503 itself if it needs Redis).
func TestRateLimitRedisDown(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RateLimit = 1; c.RedisTimeout = 200 * time.Millisecond })
	e.redis.Kill()
	res, b := e.do("GET", "/v1/pipelines", "", nil)
	if res.StatusCode != 200 {
		t.Fatalf("pipelines with Redis down: %d %s", res.StatusCode, b)
	}
	if !strings.Contains(e.logs.String(), "rate limiter cannot reach Redis") {
		t.Errorf("no warning logged: %s", e.logs.String())
	}
}

func TestLimitFor(t *testing.T) {
	tests := []struct {
		perSecond float64
		burst     int
	}{
		{100, 100}, {1, 1}, {2.5, 3}, {0.2, 1}, {0.001, 1}, {1e6, 1e6},
	}
	for _, tt := range tests {
		l := limitFor(tt.perSecond)
		got := float64(l.Rate) / l.Period.Seconds()
		if math.Abs(got-tt.perSecond)/tt.perSecond > 1e-3 || l.Burst != tt.burst {
			t.Errorf("limitFor(%v) = %v: %v/s, burst %d", tt.perSecond, l, got, l.Burst)
		}
	}
	if ceilSeconds(time.Millisecond) != 1 || ceilSeconds(1500*time.Millisecond) != 2 || ceilSeconds(-1) != 1 {
		t.Errorf("ceilSeconds")
	}
}

// TestRateLimitBatched: a limit of 100/s is taken from Redis ten tokens at
// a time; the headers count the tokens this process holds, and Redis sees
// one limiter call per ten requests.
func TestRateLimitBatched(t *testing.T) {
	e := newEnv(t, withKeys, func(c *Config) { c.RateLimit = 100 })
	acme := bearer(acmeSecret)
	path := "/v1/jobs/" + unknownID
	ctx := context.Background()
	if err := e.rdb.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		res, b := e.do("GET", path, "", nil, acme...)
		if res.StatusCode != 404 {
			t.Fatalf("request %d: %d %s", i+1, res.StatusCode, b)
		}
		// Redis refills meanwhile, so Remaining is at least the exact count.
		if got, _ := strconv.Atoi(res.Header.Get("RateLimit-Remaining")); got < 99-i || got > 99 {
			t.Errorf("request %d: RateLimit-Remaining %d, want %d..99", i+1, got, 99-i)
		}
	}
	info := e.rdb.Info(ctx, "commandstats").Val()
	calls := 0 // script runs: EVALSHA and EVAL calls, less NOSCRIPT failures
	for _, line := range strings.Split(info, "\n") {
		if strings.HasPrefix(line, "cmdstat_evalsha:") || strings.HasPrefix(line, "cmdstat_eval:") {
			var n, us, rej, failed int
			var per float64
			if _, err := fmt.Sscanf(line[strings.Index(line, ":")+1:], "calls=%d,usec=%d,usec_per_call=%f,rejected_calls=%d,failed_calls=%d",
				&n, &us, &per, &rej, &failed); err != nil {
				t.Fatalf("commandstats line %q: %v", line, err)
			}
			calls += n - failed
		}
	}
	if calls != 2 {
		t.Errorf("%d limiter calls to Redis for 20 requests, want 2 (batches of 10)\n%s", calls, info)
	}
}

// TestRateLimitHeaderNames: the headers the limiter writes into the
// header map directly are under the names Header.Set would use, so that
// Header.Get finds them and the wire shows what it showed before.
func TestRateLimitHeaderNames(t *testing.T) {
	for name, canon := range map[string]string{"RateLimit-Limit": hdrRateLimit, "RateLimit-Remaining": hdrRateRemaining, "RateLimit-Reset": hdrRateReset} {
		if got := http.CanonicalHeaderKey(name); got != canon {
			t.Errorf("%s is written as %q, Header.Set would use %q", name, canon, got)
		}
	}
}
