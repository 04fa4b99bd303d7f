package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestQueues: with STAGED_QUEUES=critical=2,default=1 on both the API and
// the worker, a job submitted on critical runs on that queue and succeeds,
// as does one naming no queue (default); a submit naming a queue that is
// not configured is a 422 problem naming the field and listing the
// configured queues, and leaves nothing in Redis (no job, no asynq queue).
func TestQueues(t *testing.T) {
	t.Parallel()
	const queues = "STAGED_QUEUES=critical=2,default=1"
	s := newStack(t, false)
	s.startAPI(queues)
	w := s.startWorker(queues)

	crit := s.submit(`{"type":"chain","input":{"data":"c","stages":2},"queue":"critical"}`)
	def := s.submit(`{"type":"chain","input":{"data":"d","stages":2}}`)
	for id, data := range map[string]string{crit.ID: "c", def.ID: "d"} {
		j := s.waitSucceeded(id, 30*time.Second)
		checkSucceeded(t, j)
		chainCheck(data, 2)(t, j)
	}
	if n := len(w.logLinesFor(crit.ID)); n == 0 {
		t.Errorf("the worker logged nothing about job %s on critical", crit.ID)
	}
	ctx := context.Background()
	if n, err := s.rdb.Get(ctx, "asynq:{"+builtinQueue("critical", "chain")+"}:processed").Int64(); err != nil || n != 1 {
		t.Errorf("asynq's processed count of queue critical = %d, %v; want 1", n, err)
	}

	// An unconfigured queue: 422, nothing written.
	before := s.stagedKeys()
	r, err := s.do(http.MethodPost, "/v1/jobs", "application/json", []byte(`{"type":"chain","queue":"low"}`))
	if err != nil {
		t.Fatal(err)
	}
	checkProblem(t, r, []int{http.StatusUnprocessableEntity}, `unknown queue "low"`, "critical, default")
	var p struct {
		Field string `json:"field"`
	}
	if json.Unmarshal(r.body, &p); p.Field != "queue" {
		t.Errorf("problem field = %q, want queue: %s", p.Field, r.body)
	}
	if after := s.stagedKeys(); len(after) != len(before) {
		t.Errorf("a rejected submit wrote to Redis: staged keys %v -> %v", before, after)
	}
	qs, err := s.rdb.SMembers(ctx, "asynq:queues").Result()
	if err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(qs, func(q string) bool { return strings.HasPrefix(q, "low") }) || !slices.Contains(qs, builtinQueue("critical", "chain")) {
		t.Errorf("asynq:queues = %v, want critical and not low", qs)
	}
}
