package server

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
)

func TestPanicIsAProblem(t *testing.T) {
	e := newEnv(t)
	e.srv.echo.GET("/test/panic", func(c echo.Context) error { panic("boom") })
	res, b := e.do("GET", "/test/panic", "", nil)
	p := assertProblem(t, res, b, http.StatusInternalServerError, "internal error")
	if strings.Contains(string(b), "boom") || p.Detail != "internal error" {
		t.Errorf("the panic leaked to the client: %s", b)
	}
	if logs := e.logs.String(); !strings.Contains(logs, "boom") || !strings.Contains(logs, "panic in handler") {
		t.Errorf("the panic was not logged: %s", logs)
	}
	// And the server still serves.
	if res, _ := e.do("GET", "/healthz", "", nil); res.StatusCode != 200 {
		t.Errorf("healthz after a panic: %d", res.StatusCode)
	}
}

func TestRequestLog(t *testing.T) {
	e := newEnv(t)
	res, _ := e.do("GET", "/v1/jobs/"+unknownID, "", nil, "Authorization", "Bearer s3cret", "X-Request-ID", "")
	rid := res.Header.Get("X-Request-ID")
	if rid == "" {
		t.Fatal("no X-Request-ID on the response")
	}
	var line map[string]any
	for _, l := range strings.Split(strings.TrimSpace(e.logs.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "request" {
			line = m
		}
	}
	if line == nil {
		t.Fatalf("no request line in %s", e.logs.String())
	}
	want := map[string]any{"level": "INFO", "method": "GET", "path": "/v1/jobs/" + unknownID, "status": float64(404), "request_id": rid}
	for k, v := range want {
		if line[k] != v {
			t.Errorf("log %s = %v, want %v", k, line[k], v)
		}
	}
	if _, ok := line["duration"]; !ok {
		t.Errorf("log line has no duration: %v", line)
	}
	if strings.Contains(e.logs.String(), "s3cret") {
		t.Errorf("the Authorization header was logged")
	}
}
