package server

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/builtin"
)

// fuzzMaxBody is the body limit of the fuzzed server, small so that the
// fuzzer reaches 413 too.
const fuzzMaxBody = 4096

// FuzzSubmitBody sends arbitrary bodies to POST /v1/jobs through the whole
// handler: the answer is a created job (202) or a 4xx problem, never a
// 5xx and never a panic. The seed corpus is in testdata/fuzz/FuzzSubmitBody.
//
// The server runs on an in-process miniredis (one per fuzzing process, no
// redis-server to start): decoding and validation are what is fuzzed, and
// a valid body must create a job there.
func FuzzSubmitBody(f *testing.F) {
	m := miniredis.NewMiniRedis()
	if err := m.Start(); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(m.Close)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	f.Cleanup(func() { rdb.Close() })
	reg := testRegistry()
	builtin.Register(reg)
	srv, err := New(Config{Redis: rdb, RedisConnOpt: asynq.RedisClientOpt{Addr: m.Addr()}, Registry: reg,
		MaxBody: fuzzMaxBody, Logger: slog.New(slog.NewJSONHandler(discard{}, nil))})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { srv.Close() })
	h := srv.Handler()

	f.Add([]byte(`{"type":"chain","input":{"data":"x","stages":4}}`))
	f.Add([]byte(`{"type":"double","input":{"n":101},"max_retries":3,"retention":"1h","queue":"q"}`))
	f.Add([]byte(`{"type":`))
	var created atomic.Int64
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest("POST", "/v1/jobs", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		switch {
		case w.Code == 202:
			j, err := api.DecodeJob(w.Body.Bytes())
			if err != nil || !api.ValidID(j.ID) || j.State != api.StateQueued || reg.Get(j.Type) == nil {
				t.Fatalf("202 with record %s (%v)", w.Body, err)
			}
			if created.Add(1)%1000 == 0 {
				m.FlushAll() // keep the fuzzing process's memory flat
			}
		case w.Code >= 400 && w.Code < 500:
			var p problem
			if w.Header().Get("Content-Type") != contentTypeProblem || json.Unmarshal(w.Body.Bytes(), &p) != nil ||
				p.Status != w.Code || p.Detail == "" || p.Title == "" {
				t.Fatalf("%d answer is not a problem: %q %s", w.Code, w.Header().Get("Content-Type"), w.Body)
			}
			if w.Code == 413 && len(body) <= fuzzMaxBody {
				t.Fatalf("413 for a body of %d bytes", len(body))
			}
		default:
			t.Fatalf("status %d for body %q: %s", w.Code, body, w.Body)
		}
	})
}

// FuzzAuthorization feeds arbitrary Authorization headers to the key
// check: it never panics, and it accepts a header only when it carries a
// configured secret (as a bearer token, or as a Basic password).
func FuzzAuthorization(f *testing.F) {
	secrets := map[string]bool{acmeSecret: true, opsSecret: true}
	ring, err := newKeyring([]Key{KeyFromSecret("acme", acmeSecret, false), KeyFromSecret("ops", opsSecret, true)})
	if err != nil {
		f.Fatal(err)
	}
	f.Add("Bearer " + acmeSecret)
	f.Add("Basic " + basic("x", opsSecret))
	f.Add("Basic " + basic("", ""))
	f.Fuzz(func(t *testing.T, header string) {
		req := httptest.NewRequest("GET", "/monitoring/", nil)
		req.Header["Authorization"] = []string{header}
		for _, b := range []bool{false, true} {
			secret, present := credentials(req, b)
			if present != (header != "") {
				t.Fatalf("credentials(%q) present = %v", header, present)
			}
			k, ok := ring.match(secret)
			if ok != secrets[secret] {
				t.Fatalf("match(%q) = %v, %v", secret, k, ok)
			}
			if ok && !b && !strings.HasPrefix(strings.ToLower(header), "bearer ") {
				t.Fatalf("header %q matched a key without Basic auth allowed", header)
			}
		}
	})
}
