package server

import (
	"net/http"
	"strings"
	"testing"
)

func TestMonitoring(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name, path string
		wantType   string
	}{
		{"dashboard", "/monitoring/", "text/html"},
		{"without the slash", "/monitoring", "text/html"},
		{"its API", "/monitoring/api/queues", "text/plain"}, // asynqmon answers JSON as text/plain
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, b := e.do("GET", tt.path, "", nil)
			if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), tt.wantType) {
				t.Fatalf("status %d, type %q: %.200s", res.StatusCode, res.Header.Get("Content-Type"), b)
			}
		})
	}
	// Read-only: no deletes through the dashboard.
	res, _ := e.do("DELETE", "/monitoring/api/queues/default", "", nil)
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("DELETE through the dashboard: %d", res.StatusCode)
	}
}
