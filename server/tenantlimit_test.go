package server

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/staged-dev/staged/internal/store"
)

// A tenant may have TenantMaxLive live jobs; the next submit is 429 with a
// problem saying why, other tenants are not affected, and a finished or
// canceled job makes room again.
func TestTenantMaxLive(t *testing.T) {
	e := newEnv(t, withKeys, func(c *Config) { c.TenantMaxLive = 2 })
	acme, globex := bearer(acmeSecret), bearer(globexSecret)
	body := `{"type":"double","input":{"n":1}}`
	first := e.submit(body, http.StatusAccepted, acme...)
	second := e.submit(body, http.StatusAccepted, acme...)
	res, b := e.do("POST", "/v1/jobs", "application/json", strings.NewReader(body), acme...)
	assertProblem(t, res, b, http.StatusTooManyRequests, `tenant "acme" has 2 live jobs (queued or running), the most allowed (STAGED_TENANT_MAX_LIVE=2)`)
	e.submit(body, http.StatusAccepted, globex...)

	e.finish(first.ID)
	third := e.submit(body, http.StatusAccepted, acme...)
	res, b = e.do("POST", "/v1/jobs", "application/json", strings.NewReader(body), acme...)
	assertProblem(t, res, b, http.StatusTooManyRequests, "live jobs")
	if res, b := e.do("POST", "/v1/jobs/"+second.ID+"/cancel", "", nil, acme...); res.StatusCode >= 300 {
		t.Fatalf("cancel: %d %s", res.StatusCode, b)
	}
	e.submit(body, http.StatusAccepted, acme...)
	live, err := e.rdb.ZRange(context.Background(), store.LiveKey("acme"), 0, -1).Result()
	if err != nil || len(live) != 2 || !contains(live, third.ID) {
		t.Errorf("acme's live jobs = %v, %v; want 2 with %s", live, err, third.ID)
	}
	if ttl := e.rdb.PTTL(context.Background(), store.LiveKey("acme")).Val(); ttl <= 0 {
		t.Errorf("live set TTL %v", ttl)
	}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
