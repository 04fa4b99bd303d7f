package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The keys of the auth tests: two tenants and an admin.
const (
	acmeKey   = "acme-5ecret-e2e-7f3a9c"
	globexKey = "globex-5ecret-e2e-b81d04"
	opsKey    = "ops-admin-5ecret-e2e-22e6f1"
)

// keyEnv configures those keys on a staged process.
func keyEnv() []string {
	return []string{"STAGED_API_KEYS=acme=" + acmeKey + ",globex=" + globexKey, "STAGED_ADMIN_KEYS=ops=" + opsKey}
}

// doAuth sends one request with the header pairs (e.g. "Authorization",
// "Bearer ..."); contentType "" sends none.
func (s *stack) doAuth(method, path, contentType string, body []byte, header ...string) *response {
	s.t.Helper()
	req, err := http.NewRequest(method, s.baseURL+path, bytes.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := s.http.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatalf("%s %s: reading: %v", method, path, err)
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: b}
}

func bearer(secret string) []string { return []string{"Authorization", "Bearer " + secret} }

// submitAs submits body with key's secret and expects 202.
func (s *stack) submitAs(key, body string, header ...string) *job {
	s.t.Helper()
	r := s.doAuth("POST", "/v1/jobs", "application/json", []byte(body), append(bearer(key), header...)...)
	if r.status != http.StatusAccepted {
		s.t.Fatalf("POST /v1/jobs %s: %d %s", body, r.status, r.body)
	}
	return decodeJob(s.t, r.body)
}

// waitDoneAs polls job id with key until it is finished.
func (s *stack) waitDoneAs(key, id string, limit time.Duration) *job {
	s.t.Helper()
	var j *job
	s.waitFor(limit, "job "+id+" to finish", func() (bool, string) {
		r := s.doAuth("GET", "/v1/jobs/"+id, "", nil, bearer(key)...)
		if r.status != 200 {
			return false, fmt.Sprintf("%d %s", r.status, r.body)
		}
		j = decodeJob(s.t, r.body)
		return j.terminal(), j.summary()
	})
	return j
}

// TestAuth runs api and worker with keys: no key and a wrong key get 401,
// a right one 202; each tenant sees only its own jobs on every job
// endpoint; the dashboard needs the admin key; the CLI sends
// STAGED_API_KEY.
func TestAuth(t *testing.T) {
	t.Parallel()
	s := newStack(t, false)
	s.startAPI(keyEnv()...)
	s.startWorker(keyEnv()...)
	body := []byte(`{"type":"chain","input":{"data":"x","stages":2}}`)

	t.Run("no key", func(t *testing.T) {
		r := s.doAuth("POST", "/v1/jobs", "application/json", body)
		checkProblem(t, r, []int{401}, "Authorization: Bearer")
		if got := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
			t.Errorf("WWW-Authenticate %q", got)
		}
	})
	t.Run("wrong key", func(t *testing.T) {
		r := s.doAuth("POST", "/v1/jobs", "application/json", body, bearer("not-"+acmeKey)...)
		checkProblem(t, r, []int{401}, "not valid")
	})
	acme := s.submitAs(acmeKey, string(body))

	t.Run("tenant isolation", func(t *testing.T) {
		self := "/v1/jobs/" + acme.ID
		for _, c := range []struct{ name, method, path string }{
			{"get", "GET", self},
			{"wait", "GET", self + "?wait=1s"},
			{"events", "GET", self + "/events"},
			{"page data", "GET", self + "/events?last_event_id=0"},
			{"cancel", "POST", self + "/cancel"},
		} {
			r := s.doAuth(c.method, c.path, "", nil, bearer(globexKey)...)
			if r.status != 404 {
				t.Errorf("globex %s %s: %d %s, want 404", c.method, c.path, r.status, r.body)
			}
		}
		if j := s.waitDoneAs(acmeKey, acme.ID, 20*time.Second); j.State != "succeeded" {
			t.Errorf("acme's job: %s (globex's cancel must not touch it)", j.summary())
		}
		// The same Idempotency-Key is a different job for each tenant.
		idem := []string{"Idempotency-Key", "nightly-1"}
		a := s.submitAs(acmeKey, string(body), idem...)
		g := s.submitAs(globexKey, string(body), idem...)
		if a.ID == g.ID {
			t.Errorf("acme and globex got the same job %s for one Idempotency-Key", a.ID)
		}
		r := s.doAuth("POST", "/v1/jobs", "application/json", body, append(bearer(acmeKey), idem...)...)
		if r.status != 200 || decodeJob(t, r.body).ID != a.ID {
			t.Errorf("acme's repeat: %d %s, want 200 with %s", r.status, r.body, a.ID)
		}
	})

	t.Run("dashboard", func(t *testing.T) {
		basicAuth := func(pass string) []string {
			return []string{"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte("ops:"+pass))}
		}
		for _, c := range []struct {
			name   string
			header []string
			want   int
		}{
			{"no key", nil, 401},
			{"tenant key", bearer(acmeKey), 401},
			{"admin key", bearer(opsKey), 200},
			{"admin key by basic auth", basicAuth(opsKey), 200},
			{"wrong password", basicAuth("nope"), 401},
		} {
			r := s.doAuth("GET", "/monitoring/", "", nil, c.header...)
			if r.status != c.want {
				t.Errorf("%s: %d, want %d", c.name, r.status, c.want)
			}
			if c.want == 401 && !strings.Contains(strings.Join(r.header.Values("WWW-Authenticate"), " "), `Basic realm="staged"`) {
				t.Errorf("%s: no Basic challenge: %q", c.name, r.header.Values("WWW-Authenticate"))
			}
		}
	})

	t.Run("cli", func(t *testing.T) {
		s.cli([]string{"STAGED_API_KEY=" + acmeKey}, "status", acme.ID).want(t, "status with acme's key", 0, acme.ID)
		s.cli(nil, "status", acme.ID).want(t, "status without a key", 3, "STAGED_API_KEY")
		s.cli([]string{"STAGED_API_KEY=" + globexKey}, "status", acme.ID).want(t, "status with globex's key", 3, "not yours")
	})

	t.Run("open routes", func(t *testing.T) {
		for _, p := range []string{"/healthz", "/readyz", "/metrics", "/openapi.json", "/jobs/" + acme.ID} {
			if r := s.doAuth("GET", p, "", nil); r.status != 200 {
				t.Errorf("GET %s without a key: %d", p, r.status)
			}
		}
	})
}

// TestAuthKeysFile: keys given as SHA-256 digests in a file work like
// STAGED_API_KEYS, and "admin" opens the dashboard.
func TestAuthKeysFile(t *testing.T) {
	t.Parallel()
	s := newStack(t, false)
	digest := func(secret string) string {
		sum := sha256.Sum256([]byte(secret))
		return "sha256:" + hex.EncodeToString(sum[:])
	}
	file := filepath.Join(t.TempDir(), "keys")
	content := "# staged API keys\n" +
		"acme   " + digest(acmeKey) + "\n\n" +
		"ops    " + digest(opsKey) + "  admin  # the operators\n"
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	apiProc := s.startAPI("STAGED_API_KEYS_FILE=" + file)
	if r := s.doAuth("GET", "/v1/pipelines", "", nil); r.status != 401 {
		t.Errorf("no key: %d", r.status)
	}
	if r := s.doAuth("GET", "/v1/pipelines", "", nil, bearer(acmeKey)...); r.status != 200 {
		t.Errorf("acme's key from the file: %d %s", r.status, r.body)
	}
	if r := s.doAuth("GET", "/monitoring/", "", nil, bearer(acmeKey)...); r.status != 401 {
		t.Errorf("acme on the dashboard: %d", r.status)
	}
	if r := s.doAuth("GET", "/monitoring/", "", nil, bearer(opsKey)...); r.status != 200 {
		t.Errorf("ops on the dashboard: %d", r.status)
	}
	if out := apiProc.out.String(); strings.Contains(out, acmeKey) || strings.Contains(out, digest(acmeKey)[7:]) {
		t.Errorf("the api logged a key or its digest:\n%s", out)
	}
}

// TestRateLimit: with STAGED_RATE_LIMIT=2, a burst from one key gets 429
// with Retry-After and RateLimit headers; health and metrics are exempt.
func TestRateLimit(t *testing.T) {
	t.Parallel()
	s := newStack(t, false)
	s.startAPI(append(keyEnv(), "STAGED_RATE_LIMIT=2")...)
	var limited *response
	statuses := map[int]int{}
	for range 10 {
		r := s.doAuth("GET", "/v1/pipelines", "", nil, bearer(acmeKey)...)
		statuses[r.status]++
		if r.status == 429 && limited == nil {
			limited = r
		}
	}
	if limited == nil || statuses[200] < 1 || statuses[200] > 4 {
		t.Fatalf("10 requests at once with a limit of 2/s: %v, want mostly 429", statuses)
	}
	checkProblem(t, limited, []int{429}, "retry in")
	if ra, err := strconv.Atoi(limited.header.Get("Retry-After")); err != nil || ra < 1 {
		t.Errorf("Retry-After %q", limited.header.Get("Retry-After"))
	}
	for _, h := range []string{"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"} {
		if limited.header.Get(h) == "" {
			t.Errorf("429 without %s", h)
		}
	}
	// Another key has its own budget; the probes and metrics have none.
	if r := s.doAuth("GET", "/v1/pipelines", "", nil, bearer(globexKey)...); r.status != 200 {
		t.Errorf("globex during acme's burst: %d", r.status)
	}
	for range 10 {
		for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
			if r := s.doAuth("GET", p, "", nil); r.status != 200 {
				t.Fatalf("GET %s under the limit: %d", p, r.status)
			}
		}
	}
	// Every limiter key in Redis has a TTL.
	keys := s.rdb.Keys(context.Background(), "rate:*").Val()
	if len(keys) == 0 {
		t.Errorf("no limiter keys in Redis")
	}
	for _, k := range keys {
		if ttl := s.rdb.PTTL(context.Background(), k).Val(); ttl <= 0 {
			t.Errorf("limiter key %s has no TTL (%v)", k, ttl)
		}
	}
}

// TestAuthJobPage opens a job's page in headless Chromium with the key in
// the URL fragment: the page follows the job to the end with that key (it
// never reaches the server's logs), and without a key it says one is
// needed.
func TestAuthJobPage(t *testing.T) {
	t.Parallel()
	binary(t)
	b := startBrowser(t)
	s := newStack(t, false)
	apiProc := s.startAPI(keyEnv()...)
	s.startWorker(keyEnv()...)
	id := s.submitAs(acmeKey, `{"type":"sleep","input":{"stages":3,"ms":300}}`).ID

	ctx, cancel := context.WithTimeout(b.ctx, pageLimit)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(s.baseURL+"/jobs/"+id+"#key="+acmeKey)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, pageLimit, "the page to show the job succeeded", func() (bool, string) {
		p, err := b.read(ctx)
		if err != nil {
			return false, err.Error()
		}
		return p.State == "succeeded" && p.Conn == "closed", p.String()
	})
	loc, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href`))
	if err != nil || strings.Contains(loc, acmeKey) {
		t.Errorf("the key stays in the address bar: %q (%v)", loc, err)
	}

	// Another tenant's key: not found. No key in a new tab: a key is needed.
	// (about:blank first: a change of fragment alone would not reload.)
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank"), chromedp.Navigate(s.baseURL+"/jobs/"+id+"#key="+globexKey)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "globex's page to say not found", func() (bool, string) {
		p, err := b.read(ctx)
		if err != nil {
			return false, err.Error()
		}
		return p.NotFound && p.Hidden, p.String()
	})
	tab, cancelTab := chromedp.NewContext(b.ctx)
	defer cancelTab()
	if err := chromedp.Do(tab, chromedp.Navigate(s.baseURL+"/jobs/"+id)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a keyless page to ask for a key", func() (bool, string) {
		title, err := chromedp.Run(tab, chromedp.Evaluate[string](`document.getElementById("notfound").hidden ? "" : document.getElementById("notfound-title").textContent`))
		return err == nil && title == "API key needed", title
	})
	if strings.Contains(apiProc.out.String(), acmeKey) || strings.Contains(apiProc.out.String(), globexKey) {
		t.Errorf("a key reached the api's output")
	}
}
