package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/internal/redistest"
	"github.com/staged-dev/staged/tasks"
)

// logRecord is one captured log line: its message and every attribute,
// those added by Logger.With included, as strings.
type logRecord struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

func (r logRecord) String() string { return fmt.Sprintf("%s %q %v", r.level, r.msg, r.attrs) }

// recorder is a slog.Handler that keeps every record.
type recorder struct {
	mu    *sync.Mutex
	recs  *[]logRecord
	attrs []slog.Attr
}

func newRecorder() *recorder { return &recorder{mu: &sync.Mutex{}, recs: &[]logRecord{}} }

func (h *recorder) Enabled(context.Context, slog.Level) bool { return true }

func (h *recorder) Handle(_ context.Context, r slog.Record) error {
	rec := logRecord{level: r.Level, msg: r.Message, attrs: map[string]string{}}
	add := func(a slog.Attr) bool {
		rec.attrs[a.Key] = a.Value.Resolve().String()
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	h.mu.Lock()
	defer h.mu.Unlock()
	*h.recs = append(*h.recs, rec)
	return nil
}

func (h *recorder) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(slices.Clone(h.attrs), as...)
	return &c
}

func (h *recorder) WithGroup(string) slog.Handler { return h }

func (h *recorder) records() []logRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(*h.recs)
}

// TestLogs runs jobs whose input holds a secret through a retry, a success
// and a permanent failure, and checks the worker's log (asynq's lines
// included): the input never appears, and every line about a job names it
// in job_id.
func TestLogs(t *testing.T) {
	t.Parallel()
	const secret = "SECRET-INPUT-123"
	var tries atomic.Int32
	echo := stageFunc(func(_ context.Context, in string, p tasks.Progress) (any, error) {
		p.Report(0.5, map[string]string{"seen": in})
		return in, nil
	})
	h := newHarness(t,
		&tasks.Pipeline{Name: "secret", Stages: []tasks.Stage{
			{Name: "echo", Run: echo},
			{Name: "flaky", Run: stageFunc(func(_ context.Context, in string, _ tasks.Progress) (any, error) {
				if tries.Add(1) == 1 {
					return nil, errors.New("transient trouble")
				}
				return map[string]string{"out": in}, nil
			})},
		}},
		&tasks.Pipeline{Name: "reject", Stages: []tasks.Stage{
			{Name: "echo", Run: echo},
			{Name: "check", Run: stageFunc(func(context.Context, string, tasks.Progress) (any, error) {
				return nil, tasks.Permanent(errors.New("the input is refused"))
			})},
		}},
	)
	rec := newRecorder()
	cfg := h.config()
	cfg.Logger = slog.New(rec)
	cfg.Lease = 5 * time.Second // no takeover on a loaded machine
	stop := h.run(h.newWorker(cfg))

	input := `{"token": "` + secret + `"}`
	ok := h.submit("secret", input, api.Options{MaxRetries: 1})
	bad := h.submit("reject", input, api.Options{MaxRetries: 1})
	if j := h.wait(ok, api.StateSucceeded, 10*time.Second); !strings.Contains(string(j.Result), secret) {
		t.Fatalf("result = %s, want the input in it", j.Result)
	}
	h.wait(bad, api.StateFailed, 10*time.Second)
	// asynq logs the archived task after the handler returns.
	redistest.Eventually(t, 5*time.Second, "asynq's line about the failed task", func() bool {
		return slices.ContainsFunc(rec.records(), func(r logRecord) bool { return strings.Contains(r.msg, "Retry exhausted") })
	})
	stop()

	recs := rec.records()
	ids := []string{ok, bad}
	seen := map[string]bool{} // "id msg" of the lines naming a job
	for _, r := range recs {
		text := r.msg + " " + fmt.Sprint(r.attrs)
		if strings.Contains(text, secret) {
			t.Errorf("a log line shows the job's input: %s", r)
		}
		for _, id := range ids {
			if !strings.Contains(text, id) {
				continue
			}
			if r.attrs["job_id"] != id {
				t.Errorf("a line about job %s has job_id %q: %s", id, r.attrs["job_id"], r)
			}
			seen[id+" "+r.msg] = true
		}
	}
	for _, want := range []string{
		ok + " job attempt failed; asynq will retry it",
		ok + " job succeeded",
		bad + " job failed",
		bad + " Retry exhausted for task id=" + bad,
	} {
		if !seen[want] {
			t.Errorf("no line %q with its job_id", want)
		}
	}
	if t.Failed() {
		for _, r := range recs {
			t.Log(r)
		}
	}
}

func TestJobIDsIn(t *testing.T) {
	const a, b = "0b6c8a4e-3f1d-4c2a-9e5b-7d8f9a0b1c2d", "1c7d9b5f-4a2e-4d3b-8f6c-8e9a0b1c2d3e"
	tests := []struct {
		name, msg string
		want      []string
	}{
		{"none", "Starting processing", nil},
		{"task id", "Retry exhausted for task id=" + a, []string{a}},
		{"generation", "Quitting worker. task id=" + a + "-g3", []string{a}},
		{"several", "Failed to extend lease for tasks [" + a + " " + b + " " + a + "-g2]: timeout", []string{a, b}},
		{"not a uuid", "id=0b6c8a4e-3f1d-4c2a-9e5b-7d8f9a0b1cXX", nil},
		{"short", "id=0b6c8a4e-", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := jobIDsIn(tt.msg); !slices.Equal(got, tt.want) {
				t.Fatalf("jobIDsIn(%q) = %v, want %v", tt.msg, got, tt.want)
			}
		})
	}
}
