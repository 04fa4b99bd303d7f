package server

import (
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
)

func TestJobPage(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name     string
		id       string
		want     int
		contains []string
	}{
		{"a job", unknownID, 200, []string{`id="state"`, `id="progress"`, `id="stages"`, `id="result"`, `id="partial"`, `id="error"`, "EventSource", "/events"}},
		{"malformed id", "not-a-job", 404, []string{"Job not found"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, b := e.do("GET", "/jobs/"+tt.id, "", nil)
			if res.StatusCode != tt.want || res.Header.Get("Content-Type") != echo.MIMETextHTMLCharsetUTF8 {
				t.Fatalf("status %d, type %q", res.StatusCode, res.Header.Get("Content-Type"))
			}
			for _, s := range tt.contains {
				if !strings.Contains(string(b), s) {
					t.Errorf("page lacks %q", s)
				}
			}
			if strings.Contains(string(b), "http://") || strings.Contains(string(b), "https://") {
				t.Errorf("page refers to another origin")
			}
			csp := res.Header.Get("Content-Security-Policy")
			if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "style-src 'sha256-") {
				t.Errorf("CSP = %q", csp)
			}
		})
	}
}
