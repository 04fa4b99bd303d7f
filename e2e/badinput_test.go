package e2e

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

// TestBadInput sends each kind of bad request over real HTTP and asserts a
// problem+json answer with the right status and an actionable detail, and
// that nothing reached Redis. No worker runs: none is needed.
func TestBadInput(t *testing.T) {
	t.Parallel()
	s := newStack(t, false)
	s.startAPI()

	const (
		unknownID = "0b6c0b6c-0b6c-4b6c-8b6c-0b6c0b6c0b6c"
		jsonCT    = "application/json"
	)
	bad := []int{http.StatusBadRequest, http.StatusUnprocessableEntity}
	huge := `{"type":"chain","input":{"data":"` + strings.Repeat("x", 1<<20) + `"}}`
	tests := []struct {
		name, method, path, contentType, body string
		want                                  []int
		mention                               []string // words the detail must contain
	}{
		{name: "malformed JSON", method: "POST", path: "/v1/jobs", contentType: jsonCT,
			body: `{"type":"chain",`, want: []int{http.StatusBadRequest}},
		{name: "body is not an object", method: "POST", path: "/v1/jobs", contentType: jsonCT,
			body: `[1,2,3]`, want: []int{http.StatusBadRequest}},
		{name: "wrong content type", method: "POST", path: "/v1/jobs", contentType: "text/plain",
			body: `{"type":"chain"}`, want: []int{http.StatusUnsupportedMediaType}, mention: []string{"application/json"}},
		{name: "form content type", method: "POST", path: "/v1/jobs", contentType: "application/x-www-form-urlencoded",
			body: `type=chain`, want: []int{http.StatusUnsupportedMediaType}},
		{name: "unknown type", method: "POST", path: "/v1/jobs", contentType: jsonCT,
			body: `{"type":"nope"}`, want: bad, mention: []string{"nope"}},
		{name: "missing type", method: "POST", path: "/v1/jobs", contentType: jsonCT,
			body: `{"input":{}}`, want: bad, mention: []string{"type"}},
		{name: "input field of the wrong type", method: "POST", path: "/v1/jobs", contentType: jsonCT,
			body: `{"type":"sleep","input":{"stages":"three"}}`, want: []int{http.StatusBadRequest}, mention: []string{"stages"}},
		{name: "input is not an object", method: "POST", path: "/v1/jobs", contentType: jsonCT,
			body: `{"type":"chain","input":"x"}`, want: []int{http.StatusBadRequest}, mention: []string{"input"}},
		{name: "unknown input field", method: "POST", path: "/v1/jobs", contentType: jsonCT,
			body: `{"type":"chain","input":{"bogus":1}}`, want: []int{http.StatusBadRequest}, mention: []string{"bogus"}},
		{name: "input value out of range", method: "POST", path: "/v1/jobs", contentType: jsonCT,
			body: `{"type":"sleep","input":{"stages":0}}`, want: []int{http.StatusUnprocessableEntity}, mention: []string{"stages"}},
		{name: "bad retention", method: "POST", path: "/v1/jobs", contentType: jsonCT,
			body: `{"type":"chain","retention":"soon"}`, want: bad, mention: []string{"retention"}},
		{name: "unknown top-level field", method: "POST", path: "/v1/jobs", contentType: jsonCT,
			body: `{"type":"chain","bogus":true}`, want: bad, mention: []string{"bogus"}},
		{name: "body over 1 MiB", method: "POST", path: "/v1/jobs", contentType: jsonCT,
			body: huge, want: []int{http.StatusRequestEntityTooLarge}},
		{name: "unknown id", method: "GET", path: "/v1/jobs/" + unknownID,
			want: []int{http.StatusNotFound}},
		{name: "malformed id", method: "GET", path: "/v1/jobs/not-a-job-id",
			want: []int{http.StatusNotFound}},
		{name: "cancel unknown id", method: "POST", path: "/v1/jobs/" + unknownID + "/cancel",
			want: []int{http.StatusNotFound}},
		{name: "cancel malformed id", method: "POST", path: "/v1/jobs/not-a-job-id/cancel",
			want: []int{http.StatusNotFound}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := s.do(tt.method, tt.path, tt.contentType, []byte(tt.body))
			if err != nil {
				t.Fatalf("%s %s: %v", tt.method, tt.path, err)
			}
			p := checkProblem(t, r, tt.want, tt.mention...)
			t.Logf("%d %s: %s", r.status, p.Title, p.Detail)
		})
	}

	// Only the catalogue startAPI published (as a worker would) is there.
	if keys := s.stagedKeys(); slices.ContainsFunc(keys, func(k string) bool { return !strings.HasPrefix(k, "staged:catalog:") }) {
		t.Errorf("rejected requests wrote to Redis: %v", keys)
	}
	if s.api.exited() {
		t.Errorf("staged api exited during bad requests: %v", s.api.err)
	}
}
