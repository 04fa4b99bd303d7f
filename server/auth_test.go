package server

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

const (
	acmeSecret   = "acme-secret-0123456789"
	globexSecret = "globex-secret-9876543210"
	opsSecret    = "ops-admin-secret-abcdef"
)

// withKeys configures two tenants (acme, globex) and an admin key (ops).
func withKeys(c *Config) {
	c.Keys = []Key{
		KeyFromSecret("acme", acmeSecret, false),
		KeyFromSecret("globex", globexSecret, false),
		KeyFromSecret("ops", opsSecret, true),
	}
}

func bearer(secret string) []string { return []string{"Authorization", "Bearer " + secret} }

func TestAuth(t *testing.T) {
	e := newEnv(t, withKeys)
	body := `{"type":"double"}`
	tests := []struct {
		name    string
		header  []string
		want    int
		detail  string
		tenant  string // the job's owner in Redis, when created
		noChall bool
	}{
		{name: "no key", want: 401, detail: "this API needs a key"},
		{name: "wrong key", header: bearer("nope"), want: 401, detail: "the API key is not valid"},
		{name: "empty bearer", header: []string{"Authorization", "Bearer "}, want: 401, detail: "not valid"},
		{name: "other scheme", header: []string{"Authorization", "Token " + acmeSecret}, want: 401, detail: "not valid"},
		{name: "basic is only for the dashboard", header: []string{"Authorization", "Basic " + basic("acme", acmeSecret)}, want: 401},
		{name: "secret with a suffix", header: bearer(acmeSecret + "x"), want: 401},
		{name: "right key", header: bearer(acmeSecret), want: 202, tenant: "acme"},
		{name: "scheme is case-insensitive", header: []string{"Authorization", "bearer " + globexSecret}, want: 202, tenant: "globex"},
		{name: "an admin key is a tenant too", header: bearer(opsSecret), want: 202, tenant: "ops"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, b := e.do("POST", "/v1/jobs", "application/json", strings.NewReader(body), tt.header...)
			if tt.want != 202 {
				assertProblem(t, res, b, tt.want, tt.detail)
				if got := res.Header.Get("WWW-Authenticate"); got != bearerChallenge {
					t.Errorf("WWW-Authenticate %q, want %q", got, bearerChallenge)
				}
				return
			}
			if res.StatusCode != 202 {
				t.Fatalf("status %d: %s", res.StatusCode, b)
			}
			j := decodeJob(t, b)
			owner, err := e.rdb.HGet(context.Background(), "staged:job:{"+j.ID+"}", "tenant").Result()
			if err != nil || owner != tt.tenant {
				t.Errorf("job owner %q (%v), want %q", owner, err, tt.tenant)
			}
		})
	}
	// Every /v1 route needs the key; the open routes do not.
	for _, path := range []string{"/v1/pipelines", "/v1/jobs/" + unknownID, "/v1/jobs/" + unknownID + "/events"} {
		if res, b := e.do("GET", path, "", nil); res.StatusCode != 401 {
			t.Errorf("GET %s without a key: %d %s", path, res.StatusCode, b)
		}
	}
	if res, b := e.do("POST", "/v1/jobs/"+unknownID+"/cancel", "", nil); res.StatusCode != 401 {
		t.Errorf("cancel without a key: %d %s", res.StatusCode, b)
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics", "/openapi.json", "/jobs/" + unknownID} {
		if res, b := e.do("GET", path, "", nil); res.StatusCode != 200 {
			t.Errorf("GET %s without a key: %d %.200s", path, res.StatusCode, b)
		}
	}
	if strings.Contains(e.logs.String(), acmeSecret) || strings.Contains(e.logs.String(), "nope") {
		t.Errorf("a presented secret was logged:\n%s", e.logs.String())
	}
}

func basic(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
}

// TestTenantIsolation: a job is its submitter's. Another tenant gets 404
// on every job endpoint, and its Idempotency-Keys are its own.
func TestTenantIsolation(t *testing.T) {
	e := newEnv(t, withKeys)
	acme, globex := bearer(acmeSecret), bearer(globexSecret)
	j := e.submit(`{"type":"double"}`, 202, acme...)
	self := "/v1/jobs/" + j.ID

	tests := []struct {
		name, method, path string
	}{
		{"get", "GET", self},
		{"long poll", "GET", self + "?wait=100ms"},
		{"events", "GET", self + "/events"},
		{"events resumed", "GET", self + "/events?last_event_id=0"},
		{"cancel", "POST", self + "/cancel"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, b := e.do(tt.method, tt.path, "", nil, globex...)
			assertProblem(t, res, b, 404, "not yours")
		})
	}
	// The owner still sees it, untouched by the other tenant's cancel.
	res, b := e.do("GET", self, "", nil, acme...)
	if res.StatusCode != 200 || decodeJob(t, b).State != "queued" {
		t.Fatalf("owner's GET: %d %s", res.StatusCode, b)
	}
	// Idempotency-Keys are per tenant: the same key is a new job for each
	// tenant, and a repeat only within one.
	idem := []string{"Idempotency-Key", "order-1"}
	a1 := e.submit(`{"type":"double"}`, 202, append(acme, idem...)...)
	g1 := e.submit(`{"type":"double"}`, 202, append(globex, idem...)...)
	if a1.ID == g1.ID {
		t.Fatalf("two tenants' submits with one Idempotency-Key made one job %s", a1.ID)
	}
	if again := e.submit(`{"type":"double"}`, 200, append(globex, idem...)...); again.ID != g1.ID {
		t.Errorf("globex's repeat got %s, want its own %s", again.ID, g1.ID)
	}
	// The owner's stream works.
	stream := e.openStream(self+"/events", acme...)
	defer stream.Body.Close()
	if stream.StatusCode != 200 {
		t.Fatalf("owner's events: %d", stream.StatusCode)
	}
	line, err := bufio.NewReader(stream.Body).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "id: ") {
		t.Errorf("owner's stream starts with %q (%v)", line, err)
	}
}

// openStream starts GET path (an event stream) with the header pairs.
func (e *env) openStream(path string, header ...string) *http.Response {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	e.t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", e.url+path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	return res
}

func TestDashboardAuth(t *testing.T) {
	e := newEnv(t, withKeys)
	tests := []struct {
		name   string
		header []string
		want   int
	}{
		{"no key", nil, 401},
		{"wrong key", bearer("nope"), 401},
		{"a tenant's key", bearer(acmeSecret), 401},
		{"a tenant's key by basic auth", []string{"Authorization", "Basic " + basic("acme", acmeSecret)}, 401},
		{"malformed basic auth", []string{"Authorization", "Basic !!!"}, 401},
		{"admin key", bearer(opsSecret), 200},
		{"admin key by basic auth", []string{"Authorization", "Basic " + basic("anyone", opsSecret)}, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, path := range []string{"/monitoring/", "/monitoring/api/queues"} {
				res, b := e.do("GET", path, "", nil, tt.header...)
				if res.StatusCode != tt.want {
					t.Fatalf("GET %s: %d, want %d: %.200s", path, res.StatusCode, tt.want, b)
				}
				if tt.want != 401 {
					continue
				}
				assertProblem(t, res, b, 401, "admin key")
				ch := res.Header.Values("WWW-Authenticate")
				if len(ch) != 2 || !strings.HasPrefix(ch[0], `Basic realm="staged"`) || ch[1] != bearerChallenge {
					t.Errorf("challenges %q, want Basic and Bearer", ch)
				}
			}
		})
	}
	if strings.Contains(e.logs.String(), opsSecret) {
		t.Errorf("the admin secret was logged")
	}
}

func TestMonitoringWrite(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MonitoringWrite = true })
	res, b := e.do("DELETE", "/monitoring/api/queues/nosuchqueue", "", nil)
	if res.StatusCode == http.StatusMethodNotAllowed {
		t.Errorf("DELETE with MonitoringWrite: %d %s, want the dashboard to accept writes", res.StatusCode, b)
	}
}

func TestKeyring(t *testing.T) {
	var keys []Key
	for i := range 50 {
		keys = append(keys, KeyFromSecret(fmt.Sprintf("t%d", i), fmt.Sprintf("secret-%d", i), i == 49))
	}
	r, err := newKeyring(keys)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 17, 49} {
		k, ok := r.match(fmt.Sprintf("secret-%d", i))
		if !ok || k.Name != fmt.Sprintf("t%d", i) || k.Admin != (i == 49) {
			t.Errorf("match secret-%d = %v %v", i, k, ok)
		}
	}
	for _, s := range []string{"", "secret-", "secret-50", "secret-1 ", "SECRET-1"} {
		if k, ok := r.match(s); ok {
			t.Errorf("match(%q) = %v", s, k)
		}
	}
	if fmt.Sprint(keys[0]) != "t0" || fmt.Sprint(keys[49]) != "t49 (admin)" {
		t.Errorf("Key's String shows %q, %q", keys[0], keys[49])
	}

	bad := []struct {
		name string
		keys []Key
		want string
	}{
		{"same secret twice", []Key{KeyFromSecret("a", "s", false), KeyFromSecret("b", "s", true)}, "same secret"},
		{"bad name", []Key{KeyFromSecret("a:b", "s", false)}, "Config.Keys[0]"},
		{"no name", []Key{{Digest: sha256.Sum256([]byte("s"))}}, "Config.Keys[0]"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := newKeyring(tt.keys); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
	// Rotation: two secrets for one name are fine.
	if _, err := newKeyring([]Key{KeyFromSecret("a", "old", false), KeyFromSecret("a", "new", false)}); err != nil {
		t.Errorf("two secrets for one name: %v", err)
	}
}

// TestAuthConstantTime is a smoke check that the time to refuse a key does
// not depend on how much of a real secret it shares: the compare is of
// digests, over every key. (The guarantee is by construction, in
// keyring.match; timing is noisy, so the bound is loose.)
func TestAuthConstantTime(t *testing.T) {
	if testing.Short() {
		t.Skip("timing")
	}
	r, _ := newKeyring([]Key{KeyFromSecret("a", acmeSecret, false), KeyFromSecret("b", globexSecret, false)})
	measure := func(s string) time.Duration {
		best := time.Hour
		for range 20 {
			start := time.Now()
			for range 2000 {
				r.match(s)
			}
			best = min(best, time.Since(start))
		}
		return best
	}
	near := acmeSecret[:len(acmeSecret)-1] + "!"
	far := strings.Repeat("!", len(acmeSecret))
	var dn, df time.Duration
	for range 3 { // a busy machine gets three tries
		dn, df = measure(near), measure(far)
		if ratio := float64(dn) / float64(df); ratio < 1.5 && ratio > 1/1.5 {
			return
		}
	}
	t.Errorf("refusing a near-miss took %v, a far miss %v", dn, df)
}
