package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/client"
)

// lockedBuffer collects a running command's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestDevEmbedded runs "staged dev" in-process with the embedded Redis,
// submits a chain job with the client, follows it and checks its result,
// then stops dev with the context, as SIGINT would.
func TestDevEmbedded(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole stack in-process")
	}
	d := startDev(t, nil)
	ctx, base, stderr := d.ctx, d.base, d.stderr

	c := client.New(base)
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	j, err := c.Submit(wctx, "chain", map[string]any{"data": "hello"}, nil)
	if err != nil {
		t.Fatalf("submit: %v\n%s", err, stderr.String())
	}
	var last *api.Job
	for rec, err := range c.Watch(wctx, j.ID) {
		if err != nil {
			t.Fatalf("watch: %v\n%s", err, stderr.String())
		}
		last = rec
	}
	if last == nil || last.State != api.StateSucceeded {
		t.Fatalf("final record %+v", last)
	}
	var res struct{ Data string }
	if err := json.Unmarshal(last.Result, &res); err != nil {
		t.Fatal(err)
	}
	want := "hello"
	for k := 1; k <= last.Stage.Total; k++ {
		want += " -> processed by stage " + strconv.Itoa(k)
	}
	if last.Stage.Total < 1 || res.Data != want {
		t.Errorf("result %q, want %q", res.Data, want)
	}

	// Wait and the CLI agree.
	if got, err := c.Wait(wctx, j.ID, time.Second); err != nil || got.State != api.StateSucceeded {
		t.Errorf("Wait: %v %v", got, err)
	}
	code, out, errOut := runT(t, wctx, map[string]string{"STAGED_SERVER": base}, "status", j.ID)
	if code != 0 || !strings.Contains(out, "state     succeeded") {
		t.Errorf("status: exit %d\n%s%s", code, out, errOut)
	}

	d.stop()
	for _, want := range []string{"EMBEDDED, IN-MEMORY Redis", "NOTHING SURVIVES EXIT", "STAGED_REDIS_URL=", "/monitoring/"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("dev output lacks %q", want)
		}
	}
}

// devProcess is `staged dev` running in-process on a free port.
type devProcess struct {
	t      *testing.T
	ctx    context.Context
	cancel context.CancelFunc
	base   string
	stderr *lockedBuffer
	done   chan int
}

// startDev runs `staged dev` in-process with STAGED_ADDR on a free port plus
// extra settings, and waits until it answers. Its context ends at cleanup.
func startDev(t *testing.T, extra map[string]string) *devProcess {
	t.Helper()
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	settings := map[string]string{"STAGED_ADDR": addr}
	for k, v := range extra {
		settings[k] = v
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	d := &devProcess{t: t, ctx: ctx, cancel: cancel, base: "http://" + addr, stderr: &lockedBuffer{}, done: make(chan int, 1)}
	var stdout lockedBuffer
	go func() { d.done <- run(ctx, []string{"dev"}, env(settings), &stdout, d.stderr) }()
	waitReady(t, d.base, d.done, d.stderr)
	return d
}

// stop cancels dev's context, as SIGINT would, and checks it exits 0.
func (d *devProcess) stop() {
	d.t.Helper()
	d.cancel()
	select {
	case code := <-d.done:
		if code != exitOK {
			d.t.Errorf("dev exited %d\n%s", code, d.stderr.String())
		}
	case <-time.After(30 * time.Second):
		d.t.Fatalf("dev did not stop\n%s", d.stderr.String())
	}
}

// waitReady polls GET /healthz until it answers, dev exits, or a deadline.
func waitReady(t *testing.T, base string, done chan int, stderr *lockedBuffer) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("dev did not answer on %s: %v\n%s", base, err, stderr.String())
		}
		select {
		case code := <-done:
			t.Fatalf("dev exited %d before it was ready\n%s", code, stderr.String())
		case <-tick.C:
		}
	}
}
