package server

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/internal/store"
)

func TestRetryJob(t *testing.T) {
	e := newEnv(t, withKeys)
	acme := bearer(acmeSecret)
	ins := asynq.NewInspector(asynq.RedisClientOpt{Addr: e.redis.Addr})
	defer ins.Close()

	queued := e.submit(`{"type":"double"}`, http.StatusAccepted, acme...)
	running := e.submit(`{"type":"double"}`, http.StatusAccepted, acme...)
	e.claim(running.ID).save(api.StateRunning)
	succeeded := e.submit(`{"type":"double"}`, http.StatusAccepted, acme...)
	e.finish(succeeded.ID)
	canceled := e.submit(`{"type":"double"}`, http.StatusAccepted, acme...)
	if res, b := e.do("POST", "/v1/jobs/"+canceled.ID+"/cancel", "", nil, acme...); res.StatusCode != http.StatusAccepted {
		t.Fatalf("cancel: %d %s", res.StatusCode, b)
	}

	tests := []struct {
		name   string
		id     string
		key    []string
		want   int
		detail string
	}{
		{"queued", queued.ID, acme, http.StatusConflict, "is queued; only a failed or canceled job"},
		{"running", running.ID, acme, http.StatusConflict, "is running"},
		{"succeeded", succeeded.ID, acme, http.StatusConflict, "is succeeded"},
		{"another tenant's", canceled.ID, bearer(globexSecret), http.StatusNotFound, "not yours"},
		{"unknown", "0b6c0b6c-0b6c-4b6c-8b6c-0b6c0b6c0b6c", acme, http.StatusNotFound, "unknown"},
		{"canceled", canceled.ID, acme, http.StatusAccepted, ""},
		{"canceled, rerun already", canceled.ID, acme, http.StatusConflict, "is queued"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, b := e.do("POST", "/v1/jobs/"+tt.id+"/retry", "", nil, tt.key...)
			if tt.want != http.StatusAccepted {
				assertProblem(t, res, b, tt.want, tt.detail)
				return
			}
			if res.StatusCode != tt.want || res.Header.Get("Location") != "/v1/jobs/"+tt.id {
				t.Fatalf("status %d, Location %q: %s", res.StatusCode, res.Header.Get("Location"), b)
			}
			if j := decodeJob(t, b); j.State != api.StateQueued || j.FinishedAt != nil || j.Error != nil {
				t.Fatalf("record after retry: %s", b)
			}
		})
	}
	// The rerun is generation 2 of the job's task; a claim of it runs the job.
	info, err := ins.GetTaskInfo(store.TaskQueue(canceled), store.TaskID(canceled.ID, 2))
	if err != nil || info.State != asynq.TaskStatePending {
		t.Fatalf("the rerun's task: %v %+v", err, info)
	}
	c, err := e.store.Claim(context.Background(), canceled.ID, 2, time.Minute)
	if err != nil || c.Outcome != store.ClaimOK || c.CancelRequested {
		t.Fatalf("claim of the rerun: %v %+v", err, c)
	}
}
