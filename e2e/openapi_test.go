package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/config"
	verrors "github.com/pb33f/libopenapi-validator/errors"
)

// exchange is one real request to the running api and its answer, kept so
// that both can be read again by the validator.
type exchange struct {
	name string
	req  *http.Request
	body []byte // the request body
	res  *http.Response
	resB []byte // the response body
	// validRequest is false for the requests that are wrong on purpose
	// (only their answer is checked against the document).
	validRequest bool
}

// request returns a fresh copy of the request, body unread.
func (x *exchange) request() *http.Request {
	r := x.req.Clone(x.req.Context())
	r.Body = io.NopCloser(bytes.NewReader(x.body))
	return r
}

// response returns a fresh copy of the response, body unread.
func (x *exchange) response() *http.Response {
	r := *x.res
	r.Body = io.NopCloser(bytes.NewReader(x.resB))
	return &r
}

// TestOpenAPI validates real answers of the running api (with keys, and a
// worker finishing jobs) against its own /openapi.json with
// libopenapi-validator: the document itself, then every exchange below,
// requests too where they are meant to be valid.
func TestOpenAPI(t *testing.T) {
	t.Parallel()
	s := newStack(t, false)
	s.startAPI(keyEnv()...)
	s.startWorker(keyEnv()...)

	docBytes := s.doAuth("GET", "/openapi.json", "", nil).body
	doc, err := libopenapi.NewDocument(docBytes)
	if err != nil {
		t.Fatalf("parsing /openapi.json: %v", err)
	}
	if v := doc.GetVersion(); !strings.HasPrefix(v, "3.1") {
		t.Fatalf("/openapi.json is OpenAPI %q, want 3.1", v)
	}
	v, errs := validator.NewValidator(doc, config.WithFormatAssertions())
	if len(errs) > 0 {
		t.Fatalf("building the validator: %v", errs)
	}
	if ok, verrs := v.ValidateDocument(); !ok {
		t.Fatalf("/openapi.json is not a valid OpenAPI document:\n%s", describe(verrs))
	}

	auth := bearer(acmeKey)
	var xs []*exchange
	do := func(name string, want int, method, path, ct, body string, header ...string) *exchange {
		t.Helper()
		req, err := http.NewRequest(method, s.baseURL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		res, err := s.http.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if res.StatusCode != want {
			t.Fatalf("%s: %s %s answered %d, want %d: %.300s", name, method, path, res.StatusCode, want, b)
		}
		x := &exchange{name: name, req: req, body: []byte(body), res: res, resB: b, validRequest: want < 400 || want == 404 || want == 409}
		xs = append(xs, x)
		return x
	}
	jsonCT := "application/json"
	chain := `{"type":"chain","input":{"data":"oa","stages":2}}`

	sub := do("submit", 202, "POST", "/v1/jobs", jsonCT, chain, auth...)
	id := decodeJob(t, sub.resB).ID
	do("get", 200, "GET", "/v1/jobs/"+id, "", "", auth...)
	do("submit and wait", 200, "POST", "/v1/jobs?wait=20s", jsonCT, chain, auth...)
	do("get with wait, finished", 200, "GET", "/v1/jobs/"+id+"?wait=20s", "", "", auth...)
	do("events of a finished job", 200, "GET", "/v1/jobs/"+id+"/events", "", "", auth...)
	do("events resumed after the end", 204, "GET", "/v1/jobs/"+id+"/events", "", "",
		append(auth, "Last-Event-ID", lastEventID(t, s, id))...)
	do("idempotent submit", 202, "POST", "/v1/jobs", jsonCT, chain, append(auth, "Idempotency-Key", "oa-1")...)
	do("idempotent repeat", 200, "POST", "/v1/jobs", jsonCT, chain, append(auth, "Idempotency-Key", "oa-1")...)
	do("idempotency conflict", 409, "POST", "/v1/jobs", jsonCT, `{"type":"chain"}`, append(auth, "Idempotency-Key", "oa-1")...)
	long := do("submit a long job", 202, "POST", "/v1/jobs", jsonCT, `{"type":"sleep","input":{"stages":2,"ms":10000}}`, auth...)
	longID := decodeJob(t, long.resB).ID
	do("cancel", 202, "POST", "/v1/jobs/"+longID+"/cancel", "", "", auth...)
	waitFor(t, 20*time.Second, "the long job canceled", func() (bool, string) {
		r := s.doAuth("GET", "/v1/jobs/"+longID, "", nil, auth...)
		return r.status == 200 && decodeJob(t, r.body).State == "canceled", string(r.body)
	})
	do("retry a canceled job", 202, "POST", "/v1/jobs/"+longID+"/retry", "", "", auth...)
	do("retry a queued job", 409, "POST", "/v1/jobs/"+longID+"/retry", "", "", auth...)
	do("cancel the rerun", 202, "POST", "/v1/jobs/"+longID+"/cancel", "", "", auth...)
	do("retry a succeeded job", 409, "POST", "/v1/jobs/"+id+"/retry", "", "", auth...)
	do("cancel a finished job", 409, "POST", "/v1/jobs/"+id+"/cancel", "", "", auth...)
	do("unknown job", 404, "GET", "/v1/jobs/0b6c0b6c-0b6c-4b6c-8b6c-0b6c0b6c0b6c", "", "", auth...)
	do("another tenant's job", 404, "GET", "/v1/jobs/"+id, "", "", bearer(globexKey)...)
	do("malformed JSON", 400, "POST", "/v1/jobs", jsonCT, `{"type":`, auth...)
	do("bad wait", 400, "GET", "/v1/jobs/"+id+"?wait=forever", "", "", auth...)
	do("wrong content type", 415, "POST", "/v1/jobs", "text/plain", chain, auth...)
	do("body too large", 413, "POST", "/v1/jobs", jsonCT, `{"type":"chain","input":{"data":"`+strings.Repeat("x", 1<<20)+`"}}`, auth...)
	do("input out of range", 422, "POST", "/v1/jobs", jsonCT, `{"type":"sleep","input":{"stages":0}}`, auth...)
	do("unknown type", 422, "POST", "/v1/jobs", jsonCT, `{"type":"nope"}`, auth...)
	do("no key", 401, "POST", "/v1/jobs", jsonCT, chain)
	list := do("list", 200, "GET", "/v1/jobs?limit=2", "", "", auth...)
	var page struct {
		Next string `json:"next"`
	}
	if err := json.Unmarshal(list.resB, &page); err != nil || page.Next == "" {
		t.Fatalf("list: no next link (%v): %s", err, list.resB)
	}
	do("list, next page", 200, "GET", page.Next, "", "", auth...)
	do("list, filtered", 200, "GET", "/v1/jobs?state=succeeded,canceled&type=chain&queue=default&created_after=2020-01-01T00:00:00Z&created_before=2999-01-01T00:00:00Z", "", "", auth...)
	do("list, bad state", 400, "GET", "/v1/jobs?state=done", "", "", auth...)
	do("pipelines", 200, "GET", "/v1/pipelines", "", "", auth...)
	do("healthz", 200, "GET", "/healthz", "", "")
	do("readyz", 200, "GET", "/readyz", "", "")
	do("metrics", 200, "GET", "/metrics", "", "")
	do("openapi", 200, "GET", "/openapi.json", "", "")
	do("job page", 200, "GET", "/jobs/"+id, "", "")
	do("dashboard", 200, "GET", "/monitoring/", "", "", bearer(opsKey)...)
	do("dashboard without a key", 401, "GET", "/monitoring/", "", "")

	for _, x := range xs {
		if ok, verrs := v.ValidateHttpResponse(x.request(), x.response()); !ok {
			t.Errorf("%s: the %d answer does not match /openapi.json:\n%s\nbody: %.400s", x.name, x.res.StatusCode, describe(verrs), x.resB)
		}
		if !x.validRequest {
			continue
		}
		if ok, verrs := v.ValidateHttpRequest(x.request()); !ok {
			t.Errorf("%s: the request does not match /openapi.json:\n%s", x.name, describe(verrs))
		}
	}
	t.Logf("validated %d real exchanges against /openapi.json", len(xs))
}

// lastEventID returns the id of the last event of finished job id.
func lastEventID(t *testing.T, s *stack, id string) string {
	t.Helper()
	r := s.doAuth("GET", "/v1/jobs/"+id+"/events", "", nil, bearer(acmeKey)...)
	last := ""
	for _, l := range strings.Split(string(r.body), "\n") {
		if v, ok := strings.CutPrefix(l, "id: "); ok {
			last = v
		}
	}
	if last == "" {
		t.Fatalf("no event id in %s", r.body)
	}
	return last
}

// describe lists validation errors, with each schema failure's place.
func describe(errs []*verrors.ValidationError) string {
	var b strings.Builder
	for _, e := range errs {
		fmt.Fprintf(&b, "  - %s: %s\n", e.Message, e.Reason)
		for _, f := range e.SchemaValidationErrors {
			fmt.Fprintf(&b, "      %s: %s\n", f.FieldPath, f.Reason)
		}
	}
	return b.String()
}
