package e2e

import (
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/staged-dev/staged/internal/redistest"
)

// redisPassword is the password of the secrets test's redis-server.
const redisPassword = "redis-pa55word-e2e-4c19aa"

// TestSecretsNotLogged runs api and worker with API keys and a Redis
// password, exercises the API (jobs, streams, cancel, the dashboard, failed
// auth, a key put in a query string by mistake), runs an api with a wrong
// Redis password, and then scans every line those processes wrote: no
// configured or presented secret appears in any of them.
func TestSecretsNotLogged(t *testing.T) {
	t.Parallel()
	binary(t)
	srv := redistest.Start(t, redistest.Options{Password: redisPassword})
	if srv.Embedded {
		t.Fatalf("e2e needs a real redis-server: install redis-server")
	}
	s := &stack{t: t, redis: srv, rdb: srv.Client(), http: &http.Client{Timeout: 15 * time.Second}}
	secrets := []string{acmeKey, globexKey, opsKey}
	if srv.Password != "" {
		secrets = append(secrets, srv.Password)
	} else {
		t.Logf("STAGED_TEST_REDIS_URL has no password: checking the API keys only")
	}
	presented := "wrong-" + acmeKey[:len(acmeKey)-3] // a failed login's secret
	wrongRedis := "not-the-redis-pa55word-91"
	secrets = append(secrets, presented, wrongRedis,
		base64.StdEncoding.EncodeToString([]byte("ops:"+opsKey)))

	apiProc := s.startAPI(keyEnv()...)
	worker := s.startWorker(keyEnv()...)

	// A job from start to end, watched; a cancel; another tenant's 404.
	j := s.submitAs(acmeKey, `{"type":"chain","input":{"data":"secret-test","stages":3}}`)
	s.doAuth("GET", "/v1/jobs/"+j.ID+"/events", "", nil, bearer(acmeKey)...)
	s.waitDoneAs(acmeKey, j.ID, 20*time.Second)
	long := s.submitAs(globexKey, `{"type":"sleep","input":{"stages":2,"ms":5000}}`)
	s.doAuth("POST", "/v1/jobs/"+long.ID+"/cancel", "", nil, bearer(globexKey)...)
	s.doAuth("GET", "/v1/jobs/"+j.ID, "", nil, bearer(globexKey)...)
	// Failed auth, the dashboard both ways, a key in the query string.
	for _, r := range []*response{
		s.doAuth("GET", "/v1/jobs/"+j.ID, "", nil, bearer(presented)...),
		s.doAuth("POST", "/v1/jobs", "application/json", []byte(`{"type":"chain"}`), "Authorization", presented),
		s.doAuth("GET", "/monitoring/", "", nil, "Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("ops:"+presented))),
	} {
		if r.status != 401 {
			t.Errorf("a wrong key got %d", r.status)
		}
	}
	// The dashboard shows the job's task, whose payload is only its id and
	// generation: never the job's input.
	admin := []string{"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte("ops:"+opsKey))}
	s.waitFor(10*time.Second, "the dashboard to list the finished job's task", func() (bool, string) {
		r := s.doAuth("GET", "/monitoring/api/queues/"+builtinQueue("default", "chain")+"/completed_tasks", "", nil, admin...)
		if r.status != 200 {
			return false, strconv.Itoa(r.status)
		}
		if strings.Contains(string(r.body), "secret-test") {
			t.Fatalf("the dashboard shows a job's input: %.500s", r.body)
		}
		return strings.Contains(string(r.body), j.ID), string(r.body)
	})
	if r := s.doAuth("GET", "/v1/jobs/"+j.ID+"?wait=bad&key="+acmeKey, "", nil, bearer(acmeKey)...); r.status != 400 {
		t.Errorf("bad wait: %d", r.status)
	}
	s.cli([]string{"STAGED_API_KEY=" + acmeKey}, "status", j.ID).want(t, "status", 0, j.ID)

	// An api with the wrong Redis password: it logs that Redis refuses it.
	addr := "127.0.0.1:" + strconv.Itoa(redistest.FreePort(t))
	bad := startProc(t, "api-wrong-password", []string{
		"STAGED_REDIS_URL=redis://:" + wrongRedis + "@" + srv.Addr + "/0", "STAGED_LOG_FORMAT=json", "STAGED_ADDR=" + addr,
	}, "api")
	s.waitFor(readyLimit, "the api with a wrong Redis password to answer 503 on /readyz", func() (bool, string) {
		res, err := s.http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		res.Body.Close()
		return res.StatusCode == 503, res.Status
	})
	// And stops cleanly, so that everything it would log is logged.
	for _, p := range []*proc{apiProc, worker, bad} {
		p.signal(15)
		p.waitExit(exitLimit)
	}

	outputs := map[string]string{"api": apiProc.out.String(), "worker": worker.out.String(), "api-wrong-password": bad.out.String()}
	for name, out := range outputs {
		if len(out) == 0 {
			t.Errorf("%s wrote nothing: the scan would prove nothing", name)
		}
		for _, secret := range secrets {
			if i := strings.Index(out, secret); i >= 0 {
				t.Errorf("%s's output contains a secret: ...%s...", name, excerpt(out, i, len(secret)))
			}
		}
	}
	if !strings.Contains(outputs["api"], `"status":401`) {
		t.Errorf("the api did not log the failed logins (the scan must cover them)")
	}
	if !strings.Contains(strings.ToLower(outputs["api-wrong-password"]), "redis") {
		t.Errorf("the api with a wrong password did not log about Redis")
	}
}

// excerpt shows the text around a secret found at i, the secret masked.
func excerpt(s string, i, n int) string {
	from, to := max(0, i-80), min(len(s), i+n+80)
	return s[from:i] + "<SECRET>" + s[i+n:to]
}
