package server

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
)

// TestOpenAPICoversRoutes: /openapi.json is OpenAPI 3.1 and describes
// exactly the routes routes.go registers. (e2e/openapi_test.go validates
// real answers of the running server against it.)
func TestOpenAPICoversRoutes(t *testing.T) {
	e := newEnv(t)
	res, b := e.do("GET", "/openapi.json", "", nil)
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("/openapi.json: %d %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1.") {
		t.Errorf("openapi %q, want 3.1.x", doc.OpenAPI)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method := range ops {
			documented[strings.ToUpper(method)+" "+path] = true
		}
	}
	param := regexp.MustCompile(`:(\w+)`)
	served := map[string]bool{"GET /monitoring/": true} // asynqmon's pages and API: one entry
	for _, r := range e.srv.echo.Routes() {
		if strings.HasPrefix(r.Path, monitoringPath) || strings.HasPrefix(r.Name, "github.com/labstack/echo") {
			continue
		}
		served[r.Method+" "+param.ReplaceAllString(r.Path, "{$1}")] = true
	}
	for k := range served {
		if !documented[k] {
			t.Errorf("%s is served but not in openapi.json", k)
		}
	}
	for k := range documented {
		if !served[k] {
			t.Errorf("%s is in openapi.json but not served", k)
		}
	}
	if len(served) < 10 {
		t.Errorf("only %d routes found: %v", len(served), served)
	}
}
