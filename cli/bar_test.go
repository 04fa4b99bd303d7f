package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/staged-dev/staged/api"
)

func TestDescribe(t *testing.T) {
	retrying := rec(api.StateRetrying, 2, 0.5, time.Second)
	retrying.Attempt = 1
	canceling := rec(api.StateRunning, 1, 0.25, time.Second)
	canceling.CancelRequested = true
	tests := []struct {
		name string
		job  *api.Job
		want string
	}{
		{name: "queued", job: rec(api.StateQueued, 0, 0, 0), want: "queued"},
		{name: "running", job: rec(api.StateRunning, 2, 0.41, 0), want: "running stage 2/2 stage2 41%"},
		{name: "rounds down", job: rec(api.StateRunning, 2, 0.999, 0), want: "running stage 2/2 stage2 99%"},
		{name: "retrying", job: retrying, want: "retrying stage 2/2 stage2 50% (attempt 2)"},
		{name: "canceling", job: canceling, want: "canceling stage 1/2 stage1 25%"},
		{name: "failed", job: withError(rec(api.StateFailed, 2, 0.5, 0), "stage2", "boom"), want: "failed stage 2/2 stage2 50%: boom"},
		{name: "succeeded", job: rec(api.StateSucceeded, 2, 1, 0), want: "succeeded stage 2/2 stage2 100%"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := describe(tt.job); got != tt.want {
				t.Errorf("describe = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestFmtDur(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{850 * time.Millisecond, "850ms"},
		{2500 * time.Millisecond, "2.5s"},
		{42 * time.Second, "42s"},
		{185 * time.Second, "3m05s"},
		{62 * time.Minute, "1h02m"},
	}
	for _, tt := range tests {
		if got := fmtDur(tt.d); got != tt.want {
			t.Errorf("fmtDur(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestBarText(t *testing.T) {
	// Started at t0+1s, updated at t0+11s at 25%: 10s elapsed, 30s left.
	j := rec(api.StateRunning, 1, 0.25, 11*time.Second)
	tests := []struct {
		name  string
		job   *api.Job
		since time.Duration
		want  string
	}{
		{name: "at the update", job: j, want: "stage 1/2 stage1 · 10s · ETA 30s"},
		{name: "the clock moves on", job: j, since: 5 * time.Second, want: "stage 1/2 stage1 · 15s · ETA 25s"},
		{name: "ETA not below zero", job: j, since: time.Minute, want: "stage 1/2 stage1 · 1m10s · ETA 0ms"},
		{name: "no ETA at 0%", job: rec(api.StateRunning, 1, 0, 2*time.Second), want: "stage 1/2 stage1 · 1.0s · ETA –"},
		{name: "queued", job: rec(api.StateQueued, 0, 0, 3*time.Second), want: "queued · 3.0s"},
		{name: "finished: frozen clock", job: rec(api.StateSucceeded, 2, 1, 21*time.Second), since: time.Hour,
			want: "succeeded · stage 2/2 stage2 · 20s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := barText(tt.job, tt.since); got != tt.want {
				t.Errorf("barText = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestBarDisplay(t *testing.T) {
	var buf bytes.Buffer
	now := t0
	d := newBarDisplay(&buf, func() time.Time { return now }, 0)
	d.update(rec(api.StateQueued, 0, 0, 0))
	d.update(rec(api.StateRunning, 2, 0.41, 11*time.Second))
	out := buf.String()
	for _, want := range []string{"stage 2/2 stage2 · 10s · ETA 14s", "41%", "█"} {
		if !strings.Contains(out, want) {
			t.Errorf("bar output does not contain %q:\n%q", want, out)
		}
	}
	buf.Reset()
	d.finish(withResult(rec(api.StateSucceeded, 2, 1, 21*time.Second), `{}`))
	out = buf.String()
	if !strings.Contains(out, "100%") || !strings.Contains(out, "succeeded · stage 2/2 stage2 · 20s") || !strings.HasSuffix(out, "\n") {
		t.Errorf("final bar: %q", out)
	}
}

// The bar's clock ticks between records.
func TestBarDisplayTicks(t *testing.T) {
	buf := &syncBuffer{wrote: make(chan struct{}, 1)}
	d := newBarDisplay(buf, time.Now, time.Millisecond)
	defer d.stop()
	d.update(rec(api.StateRunning, 1, 0.5, 11*time.Second))
	timeout := time.After(5 * time.Second)
	for strings.Count(buf.String(), "stage 1/2") < 3 {
		select {
		case <-buf.wrote:
		case <-timeout:
			t.Fatalf("the bar did not redraw: %q", buf.String())
		}
	}
}

// syncBuffer is a bytes.Buffer safe for the bar's ticker goroutine.
type syncBuffer struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	wrote chan struct{} // signalled after each write
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, err := b.buf.Write(p)
	select {
	case b.wrote <- struct{}{}:
	default:
	}
	return n, err
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestPartialLine(t *testing.T) {
	tests := []struct {
		name, partial string
		width         int
		want          string
	}{
		{"numbers first, sorted", `{"phase":"fit","loss":0.41321987,"epoch":12,"model":{"w":[1,2]}}`, 60, "epoch=12 loss=0.4132 phase=fit"},
		{"a bare number", `0.5`, 60, "0.5"},
		{"cut to width", `{"a":1,"b":2,"c":3,"d":4}`, 10, "a=1 b=2 c…"},
		{"null", `null`, 60, ""},
		{"none", ``, 60, ""},
		{"long strings left out", `{"n":1,"log":"` + strings.Repeat("x", 40) + `"}`, 60, "n=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := partialLine(json.RawMessage(tt.partial), tt.width); got != tt.want {
				t.Errorf("partialLine(%s) = %q, want %q", tt.partial, got, tt.want)
			}
		})
	}
}
