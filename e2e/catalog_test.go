package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// crawlResult is the crawl pipeline's result: which process ran which
// stage, of which pipeline version ("fetch@PID/v1").
type crawlResult struct {
	URL string   `json:"url"`
	Ran []string `json:"ran"`
}

func ranOf(t *testing.T, j *job) crawlResult {
	t.Helper()
	var r crawlResult
	if err := json.Unmarshal(j.Result, &r); err != nil {
		t.Fatalf("job %s: result %s: %v", j.ID, j.Result, err)
	}
	return r
}

// TestMixedFleet: a stock staged api, worker A a stock staged worker that
// runs only train, worker B a team's own program (a separate module) that
// runs only crawl. The API learns both pipelines from the catalogue, checks
// a crawl input against crawl's published schema, and every job runs on a
// worker that has its pipeline, on its first attempt.
func TestMixedFleet(t *testing.T) {
	t.Parallel()
	s := newStack(t, false)
	s.bare = true // the API knows only what these workers publish
	s.startAPI()
	a := s.startWorker("STAGED_PIPELINES_ONLY=train", "STAGED_METRICS_ADDR=off")
	b := s.startCrawlWorker("crawlB", "STAGED_PIPELINES_ONLY=crawl")

	// The catalogue: train and crawl, one live worker each, once the API
	// has read both workers' publications (a busy machine may take a while).
	var cat struct {
		Pipelines []struct {
			Name     string    `json:"name"`
			Workers  int       `json:"workers"`
			LastSeen time.Time `json:"last_seen"`
			Digest   string    `json:"digest"`
			Input    struct {
				Schema json.RawMessage `json:"schema"`
			} `json:"input"`
		} `json:"pipelines"`
	}
	s.waitFor(readyLimit, "the catalogue to list crawl and train", func() (bool, string) {
		r, err := s.do(http.MethodGet, "/v1/pipelines", "", nil)
		if err != nil || r.status != 200 {
			return false, fmt.Sprintf("GET /v1/pipelines: %v %v", err, r)
		}
		cat.Pipelines = nil
		if err := json.Unmarshal(r.body, &cat); err != nil {
			t.Fatal(err)
		}
		return len(cat.Pipelines) == 2 && cat.Pipelines[0].Name == "crawl" && cat.Pipelines[1].Name == "train", string(r.body)
	})
	for _, p := range cat.Pipelines {
		if p.Workers != 1 || time.Since(p.LastSeen) > time.Minute || len(p.Digest) != 64 || !strings.Contains(string(p.Input.Schema), `"properties"`) {
			t.Errorf("%s: workers %d, last seen %v, digest %q, schema %s", p.Name, p.Workers, p.LastSeen, p.Digest, p.Input.Schema)
		}
	}

	// A type nobody runs: 422 naming the known ones. Bad crawl inputs:
	// the field named, from crawl's published schema.
	for _, tc := range []struct {
		body    string
		status  int
		mention []string
	}{
		{`{"type":"sleep"}`, 422, []string{`unknown job type "sleep"`, "crawl, train"}},
		{`{"type":"crawl","input":{"url":"https://example.com","depth":9}}`, 422, []string{"input.depth must be at most 5, not 9"}},
		{`{"type":"crawl","input":{"depth":2}}`, 422, []string{"input.url must be at least 1 characters long"}},
		{`{"type":"crawl","input":{"url":"x","depth":"deep"}}`, 400, []string{"input.depth must be integer, not string"}},
		{`{"type":"crawl","input":{"url":"x","colour":"red"}}`, 400, []string{`unknown input field "colour"`}},
	} {
		r, err := s.do(http.MethodPost, "/v1/jobs", "application/json", []byte(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		p := checkProblem(t, r, []int{tc.status}, tc.mention...)
		if want := "input."; strings.Contains(tc.body, "crawl") && !strings.HasPrefix(p.Field, want) {
			t.Errorf("%s: problem field %q, want input.<field>", tc.body, p.Field)
		}
	}

	const n = 50
	var trains, crawls []string
	for i := 0; i < n; i++ {
		j := s.submit(`{"type":"train","input":{"samples":200,"features":4,"epochs":5}}`)
		c := s.submit(fmt.Sprintf(`{"type":"crawl","input":{"url":"https://example.com/%d","depth":1}}`, i))
		if len(j.Warnings) > 0 || len(c.Warnings) > 0 {
			t.Fatalf("warnings with live workers: %v %v", j.Warnings, c.Warnings)
		}
		trains, crawls = append(trains, j.ID), append(crawls, c.ID)
	}
	bPID := "@" + strconv.Itoa(b.pid()) + "/"
	for i := 0; i < n; i++ {
		j := s.waitSucceeded(trains[i], 60*time.Second)
		// A logs the job's end after it wrote the record: wait for the line.
		s.waitFor(10*time.Second, "worker A's log line about train job "+j.ID, func() (bool, string) {
			return len(a.logLinesFor(j.ID)) > 0, ""
		})
		if j.Attempt != 1 || len(b.logLinesFor(j.ID)) > 0 || len(a.logLinesFor(j.ID)) == 0 {
			t.Errorf("train job %s: attempt %d, lines in A %d, in B %d", j.ID, j.Attempt, len(a.logLinesFor(j.ID)), len(b.logLinesFor(j.ID)))
		}
		c := s.waitSucceeded(crawls[i], 60*time.Second)
		res := ranOf(t, c)
		if c.Attempt != 1 || len(res.Ran) != 2 || !strings.Contains(res.Ran[0], bPID) || !strings.Contains(res.Ran[1], bPID) ||
			len(a.logLinesFor(c.ID)) > 0 || stageNames(c) != "fetch,parse" {
			t.Errorf("crawl job %s: attempt %d, ran %v, lines in A %d", c.ID, c.Attempt, res.Ran, len(a.logLinesFor(c.ID)))
		}
	}
}

// TestNoLiveWorker: with every crawl worker stopped, a crawl submit is
// accepted with a warning; a worker that comes back runs it. With every
// worker gone for longer than the catalogue's TTL, no staged:catalog key
// is left and the type is unknown again (422).
func TestNoLiveWorker(t *testing.T) {
	t.Parallel()
	s := newStack(t, false)
	s.bare = true
	s.startAPI()
	short := []string{"STAGED_HEARTBEAT=100ms", "STAGED_CATALOG_TTL=2s"}
	b := s.startCrawlWorker("crawl1", short...)
	first := s.submit(`{"type":"crawl","input":{"url":"u1"}}`)
	s.waitSucceeded(first.ID, 30*time.Second)

	b.signal(syscall.SIGTERM)
	if code := b.waitExit(30 * time.Second); code != 0 {
		t.Fatalf("crawl worker exited %d", code)
	}
	j := s.submit(`{"type":"crawl","input":{"url":"u2"}}`)
	if len(j.Warnings) != 1 || !strings.Contains(j.Warnings[0], `no live worker runs pipeline "crawl"`) {
		t.Fatalf("submit with no live worker: warnings %q, want the no-live-worker note; %s", j.Warnings, j.raw)
	}
	// The record itself carries no warning.
	if got := s.mustGet(j.ID); len(got.Warnings) != 0 || got.State != "queued" {
		t.Errorf("GET: %s", got.raw)
	}
	b2 := s.startCrawlWorker("crawl2", short...)
	done := s.waitSucceeded(j.ID, 30*time.Second)
	if res := ranOf(t, done); len(res.Ran) != 2 || !strings.Contains(res.Ran[0], "@"+strconv.Itoa(b2.pid())+"/") {
		t.Errorf("ran %v, want crawl2's pid", res.Ran)
	}

	b2.signal(syscall.SIGTERM)
	b2.waitExit(30 * time.Second)
	s.waitFor(20*time.Second, "every staged:catalog key to expire", func() (bool, string) {
		keys, err := s.rdb.Keys(context.Background(), "staged:catalog:*").Result()
		return err == nil && len(keys) == 0, fmt.Sprint(keys, err)
	})
	s.waitFor(10*time.Second, "crawl to be unknown to the API", func() (bool, string) {
		r, err := s.do(http.MethodPost, "/v1/jobs", "application/json", []byte(`{"type":"crawl","input":{"url":"u3"}}`))
		if err != nil {
			return false, err.Error()
		}
		return r.status == 422 && strings.Contains(string(r.body), `unknown job type \"crawl\"`), string(r.body)
	})
}

// TestRollingChange: a deploy changes crawl's stages while jobs run. New
// submits go to the new definition as soon as a worker runs it; the jobs
// accepted under the old one run only on old workers, and those left when
// the last old worker stops fail after STAGED_ORPHAN_AFTER with an error
// that says why. No job runs a stage of the other definition, and the old
// definition's asynq queue is removed once empty.
func TestRollingChange(t *testing.T) {
	t.Parallel()
	s := newStack(t, false)
	s.bare = true
	s.startAPI()
	env := []string{"STAGED_HEARTBEAT=100ms", "STAGED_ORPHAN_AFTER=2s"}
	v1 := s.startCrawlWorker("crawl-v1", env...)
	var old []*job
	for i := 0; i < 12; i++ {
		old = append(old, s.submit(fmt.Sprintf(`{"type":"crawl","input":{"url":"old-%d","ms":300}}`, i)))
	}
	d1 := old[0].Digest
	s.waitJob(old[0].ID, 30*time.Second, "the first old job to run", func(j *job) bool { return j.State != "queued" })

	v2 := s.startCrawlWorker("crawl-v2", append(env, "CRAWL_VERSION=2")...)
	var neu []*job
	for i := 0; i < 8; i++ {
		j := s.submit(fmt.Sprintf(`{"type":"crawl","input":{"url":"new-%d","ms":50}}`, i))
		if j.Digest == d1 || len(j.Stages) != 3 {
			t.Fatalf("a submit after the new workers started: digest %.8s (old %.8s), stages %s", j.Digest, d1, stageNames(j))
		}
		neu = append(neu, j)
	}
	// While both run, an old job runs on the old worker to the end.
	s.waitSucceeded(old[0].ID, 30*time.Second)
	v1.signal(syscall.SIGTERM)
	if code := v1.waitExit(60 * time.Second); code != 0 {
		t.Fatalf("old worker exited %d", code)
	}

	v1PID, v2PID := "@"+strconv.Itoa(v1.pid())+"/v1", "@"+strconv.Itoa(v2.pid())+"/v2"
	succeeded, orphaned := 0, 0
	for _, o := range old {
		j := s.waitDone(o.ID, 60*time.Second)
		switch j.State {
		case "succeeded":
			succeeded++
			res := ranOf(t, j)
			if stageNames(j) != "fetch,parse" || len(res.Ran) != 2 || !strings.HasSuffix(res.Ran[0], v1PID) || !strings.HasSuffix(res.Ran[1], v1PID) {
				t.Errorf("old job %s: stages %s, ran %v; want both stages on the old worker", j.ID, stageNames(j), res.Ran)
			}
		case "failed":
			orphaned++
			if j.Error == nil || !strings.Contains(j.Error.Message, `no worker has run pipeline "crawl" with the definition this job was accepted under (`+d1[:8]+`)`) ||
				!strings.Contains(j.Error.Message, "Submit the job again") || stageNames(j) != "fetch,parse" {
				t.Errorf("old job %s failed with %s", j.ID, j.raw)
			}
		default:
			t.Errorf("old job %s ended %s: %s", j.ID, j.State, j.raw)
		}
	}
	t.Logf("old jobs: %d succeeded on the old worker, %d failed for want of it", succeeded, orphaned)
	if succeeded == 0 {
		t.Errorf("no old job succeeded on the old worker while it ran")
	}
	for _, n := range neu {
		j := s.waitSucceeded(n.ID, 60*time.Second)
		res := ranOf(t, j)
		if stageNames(j) != "fetch,parse,store" || len(res.Ran) != 3 || !strings.HasSuffix(res.Ran[2], v2PID) || !strings.HasSuffix(res.Ran[0], v2PID) {
			t.Errorf("new job %s: stages %s, ran %v", j.ID, stageNames(j), res.Ran)
		}
	}
	oldQueue := "default:crawl:" + d1[:8]
	s.waitFor(20*time.Second, "the old definition's queue to be removed from asynq", func() (bool, string) {
		qs, err := s.rdb.SMembers(context.Background(), "asynq:queues").Result()
		for _, q := range qs {
			if q == oldQueue {
				return false, fmt.Sprint(qs)
			}
		}
		return err == nil, fmt.Sprint(qs, err)
	})
}
