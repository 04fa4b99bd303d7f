package server

import (
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/time/rate"

	"github.com/staged-dev/staged/tasks"
)

// Failed-authentication limit defaults.
const (
	// AuthFailuresDefault is how many failed authentications one client
	// address may make in a burst; they refill at that many per minute.
	AuthFailuresDefault = 20
	// authFailuresMaxClients bounds the addresses tracked; past it, the
	// ones whose allowance is full again are forgotten.
	authFailuresMaxClients = 10000
)

// authFailures limits failed authentications per client address (the
// peer's IP, as for the rate limit): each request that brings a wrong key
// takes a token from the address's bucket (golang.org/x/time/rate, in
// process: a guessing client is stopped without a Redis round trip, and
// works with Redis down), and while the bucket is empty every request from
// that address that needs a key is refused with 429 and Retry-After, so
// that guessing gets no answer at all. A request without credentials (a
// browser before its password prompt) takes nothing.
type authFailures struct {
	limit rate.Limit
	burst int

	mu      sync.Mutex
	clients map[string]*rate.Limiter
}

func newAuthFailures(perMinute int) *authFailures {
	return &authFailures{limit: rate.Limit(float64(perMinute) / 60), burst: perMinute, clients: map[string]*rate.Limiter{}}
}

// blocked returns how long ip must wait before it may try again, 0 if it
// may now.
func (a *authFailures) blocked(ip string, now time.Time) time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	l := a.clients[ip]
	if l == nil || l.TokensAt(now) >= 1 {
		return 0
	}
	missing := 1 - l.TokensAt(now)
	return time.Duration(math.Ceil(missing / float64(a.limit) * float64(time.Second)))
}

// failed counts a failed authentication from ip.
func (a *authFailures) failed(ip string, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	l := a.clients[ip]
	if l == nil {
		if len(a.clients) >= authFailuresMaxClients {
			for k, c := range a.clients {
				if c.TokensAt(now) >= float64(a.burst) {
					delete(a.clients, k)
				}
			}
		}
		if len(a.clients) >= authFailuresMaxClients {
			return // every tracked client is guessing: count none new
		}
		l = rate.NewLimiter(a.limit, a.burst)
		a.clients[ip] = l
	}
	l.AllowN(now, 1)
}

// guard refuses, with 429 and Retry-After, a client address that has used
// up its failed authentications.
func (s *Server) guardAuthFailures(c echo.Context) error {
	wait := s.authFails.blocked(c.RealIP(), time.Now())
	if wait <= 0 {
		return nil
	}
	secs := ceilSeconds(wait)
	c.Response().Header().Set(echo.HeaderRetryAfter, strconv.Itoa(secs))
	return tasks.Errorf(tasks.ERATELIMITED, "too many failed authentications from this address; retry in %d s", secs)
}
