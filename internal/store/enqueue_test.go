package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/staged-dev/staged/internal/redistest"
	"github.com/staged-dev/staged/internal/store"
)

// TestEnqueueSpareRetry: a task carries the job's retries left, and asynq's
// MaxRetry is one more, so that asynq's recoverer retries (never archives)
// the task of a worker that died; TaskRetries reads the job's retries back,
// from asynq's MaxRetry for a task enqueued without them.
func TestEnqueueSpareRetry(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Client()
	c := asynq.NewClientFromRedisClient(rdb)
	insp := asynq.NewInspectorFromRedisClient(rdb)
	tests := []struct {
		name                    string
		retries                 int
		wantRetries, wantMaxRet int
	}{
		{"no retries", 0, 0, 1},
		{"three retries", 3, 3, 4},
		{"negative is none", -1, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := store.NewJob(testPipeline(), "", time.Now().UTC())
			if err := store.Enqueue(ctx, c, j, 1, tt.retries, time.Minute, time.Minute); err != nil {
				t.Fatal(err)
			}
			info, err := insp.GetTaskInfo(store.TaskQueue(j), store.TaskID(j.ID, 1))
			if err != nil {
				t.Fatal(err)
			}
			if got := store.TaskRetries(info.Headers, info.MaxRetry); got != tt.wantRetries || info.MaxRetry != tt.wantMaxRet {
				t.Errorf("TaskRetries = %d, asynq MaxRetry = %d; want %d and %d", got, info.MaxRetry, tt.wantRetries, tt.wantMaxRet)
			}
		})
	}
	if got := store.TaskRetries(nil, 5); got != 5 {
		t.Errorf("TaskRetries of a task without the header = %d, want its MaxRetry 5", got)
	}
}
