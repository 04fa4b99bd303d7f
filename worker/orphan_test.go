package worker

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/internal/store"
	"github.com/staged-dev/staged/tasks"
)

// A submit whose enqueue failed, and whose clean-up failed too, leaves a
// queued record without an asynq task. The reconciler finds it (Create
// put it in the lease index) and enqueues it: the job runs.
func TestOrphanedSubmitIsEnqueued(t *testing.T) {
	t.Parallel()
	done := make(chan struct{}, 1)
	p := &tasks.Pipeline{Name: "one", Stages: []tasks.Stage{{Name: "s", Run: func(ctx context.Context, in json.RawMessage, _ tasks.Progress) (any, error) {
		done <- struct{}{}
		return in, nil
	}}}}
	h := newHarness(t, p)
	// The record alone, as an API left it when Redis failed at the enqueue:
	// no task. Its orphan check is due at once.
	st := store.NewStore(h.rdb)
	st.OrphanAfter = time.Millisecond
	j := store.NewJob(p, "", time.Now().UTC())
	if _, err := st.Create(context.Background(), j, "", json.RawMessage(`"x"`), api.Options{Retention: time.Hour}); err != nil {
		t.Fatal(err)
	}
	h.start(h.config())
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("the orphaned job %s never ran: still %s", j.ID, h.job(j.ID).State)
	}
	h.wait(j.ID, api.StateSucceeded, 30*time.Second)
	if n, _ := h.store.LeaseCount(context.Background()); n != 0 {
		t.Errorf("the lease index still holds %d entries", n)
	}
}
