package server

import (
	"net/http"
	"strconv"
	"testing"
	"time"
)

func TestFailedAuthLimited(t *testing.T) {
	tests := []struct {
		name, path string
		wrong      []string
		right      []string
	}{
		{"wrong bearer keys", "/v1/jobs/" + unknownID, bearer("guess"), bearer(acmeSecret)},
		{"wrong Basic passwords", "/monitoring/api/queues", []string{"Authorization", "Basic " + basic("admin", "guess")},
			[]string{"Authorization", "Basic " + basic("admin", opsSecret)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, withKeys)
			// Requests without any credentials are not guesses.
			for range 2 * AuthFailuresDefault {
				if res, _ := e.do("GET", tt.path, "", nil); res.StatusCode != http.StatusUnauthorized {
					t.Fatalf("no credentials: %d", res.StatusCode)
				}
			}
			for i := range AuthFailuresDefault {
				if res, _ := e.do("GET", tt.path, "", nil, tt.wrong...); res.StatusCode != http.StatusUnauthorized {
					t.Fatalf("guess %d: %d, want 401", i+1, res.StatusCode)
				}
			}
			for _, h := range [][]string{tt.wrong, tt.right} {
				res, b := e.do("GET", tt.path, "", nil, h...)
				assertProblem(t, res, b, http.StatusTooManyRequests, "too many failed authentications")
				if ra, err := strconv.Atoi(res.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 60 {
					t.Errorf("Retry-After %q", res.Header.Get("Retry-After"))
				}
			}
		})
	}
}

func TestAuthFailuresRefill(t *testing.T) {
	a := newAuthFailures(60) // one a second
	now := time.Now()
	for range 60 {
		a.failed("192.0.2.1", now)
	}
	if w := a.blocked("192.0.2.1", now); w <= 0 || w > time.Second {
		t.Errorf("blocked for %v, want up to 1s", w)
	}
	if w := a.blocked("192.0.2.2", now); w != 0 {
		t.Errorf("another address blocked for %v", w)
	}
	if w := a.blocked("192.0.2.1", now.Add(time.Second)); w != 0 {
		t.Errorf("still blocked after a refill: %v", w)
	}
}
