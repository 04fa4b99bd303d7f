package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestHealth(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name       string
		path       string
		policy     string // maxmemory-policy to set first, "" to leave
		wantBody   string
		wantStatus int
	}{
		{name: "alive", path: "/healthz", wantStatus: 200, wantBody: `{"status":"ok"}`},
		{name: "ready", path: "/readyz", wantStatus: 200, wantBody: `{"status":"ready","redis":"ok"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, b := e.do("GET", tt.path, "", nil)
			if res.StatusCode != tt.wantStatus || !jsonEqual(b, tt.wantBody) {
				t.Fatalf("status %d body %s, want %d %s", res.StatusCode, b, tt.wantStatus, tt.wantBody)
			}
		})
	}
}

func TestReadyzWarnsOnEviction(t *testing.T) {
	e := newEnv(t)
	if err := e.rdb.ConfigSet(context.Background(), "maxmemory-policy", "allkeys-lru").Err(); err != nil {
		t.Skipf("CONFIG SET refused: %v", err)
	}
	res, b := e.do("GET", "/readyz", "", nil)
	want := `{"status":"ready","redis":"ok","warnings":["redis maxmemory-policy is allkeys-lru; set noeviction or jobs can be evicted"]}`
	if res.StatusCode != 200 || !jsonEqual(b, want) {
		t.Fatalf("status %d body %s, want %s", res.StatusCode, b, want)
	}
}

func TestReadyzRedisDown(t *testing.T) {
	e := newEnv(t)
	j := e.submit(`{"type":"double"}`, http.StatusAccepted)
	e.redis.Kill()
	tests := []struct {
		name, method, path, body string
	}{
		{"readyz", "GET", "/readyz", ""},
		{"get", "GET", "/v1/jobs/" + j.ID, ""},
		{"submit", "POST", "/v1/jobs", `{"type":"double"}`},
		{"cancel", "POST", "/v1/jobs/" + j.ID + "/cancel", ""},
		{"events", "GET", "/v1/jobs/" + j.ID + "/events", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			var res *http.Response
			var b []byte
			if tt.body != "" {
				res, b = e.do(tt.method, tt.path, "application/json", stringsReader(tt.body))
			} else {
				res, b = e.do(tt.method, tt.path, "", nil)
			}
			assertProblem(t, res, b, http.StatusServiceUnavailable, "")
			if d := time.Since(start); d > 4*time.Second {
				t.Errorf("answered after %v", d)
			}
		})
	}
	// Healthz does not depend on Redis.
	if res, _ := e.do("GET", "/healthz", "", nil); res.StatusCode != 200 {
		t.Errorf("healthz %d with Redis down", res.StatusCode)
	}
}

func jsonEqual(a []byte, b string) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}

func stringsReader(s string) io.Reader { return strings.NewReader(s) }
