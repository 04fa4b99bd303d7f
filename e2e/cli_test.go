package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// cliLimit bounds one CLI command.
const cliLimit = 30 * time.Second

// cliResult is what one CLI command did.
type cliResult struct {
	stdout, stderr string
	code           int
}

// cli runs `staged args...` against this stack's API (STAGED_SERVER) with
// extra environment, and returns its output and exit status.
func (s *stack) cli(extra []string, args ...string) cliResult {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(s.t), args...)
	cmd.Env = append(baseEnv(), "STAGED_SERVER="+s.baseURL)
	cmd.Env = append(cmd.Env, extra...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := cliResult{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		s.t.Fatalf("staged %s: still running after %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), cliLimit, r.stdout, r.stderr)
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		s.t.Fatalf("staged %s: %v", strings.Join(args, " "), err)
	}
	s.t.Logf("staged %s → exit %d", strings.Join(args, " "), r.code)
	return r
}

// want fails unless the command exited with code and its output (stdout
// and stderr) contains each of mention.
func (r cliResult) want(t *testing.T, what string, code int, mention ...string) {
	t.Helper()
	if r.code != code {
		t.Errorf("%s: exit %d, want %d\nstdout: %s\nstderr: %s", what, r.code, code, r.stdout, r.stderr)
	}
	all := r.stdout + r.stderr
	for _, m := range mention {
		if !strings.Contains(all, m) {
			t.Errorf("%s: output does not mention %q\nstdout: %s\nstderr: %s", what, m, r.stdout, r.stderr)
		}
	}
}

var uuidRE = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

// TestCLI drives the documented subcommands as a user would: submit (with
// --input JSON and @file, with --wait), status, watch, cancel, version, and
// a settings error that names its variable.
func TestCLI(t *testing.T) {
	t.Parallel()
	s := newStack(t, false)
	s.startAPI()
	s.startWorker()

	s.cli(nil, "version").want(t, "version", 0, "staged")

	// submit prints the id; status shows the job.
	r := s.cli(nil, "submit", "chain", "--input", `{"data":"c","stages":2}`)
	r.want(t, "submit", 0)
	id := uuidRE.FindString(r.stdout)
	if id == "" {
		t.Fatalf("submit printed no job id: %q", r.stdout)
	}
	s.waitSucceeded(id, 20*time.Second)
	s.cli(nil, "status", id).want(t, "status", 0, id, "succeeded")

	// --input @file and --wait: exit 0 with the result.
	in := filepath.Join(t.TempDir(), "input.json")
	if err := os.WriteFile(in, []byte(`{"data":"f","stages":2}`), 0o644); err != nil {
		t.Fatal(err)
	}
	s.cli(nil, "submit", "chain", "--input", "@"+in, "--wait").
		want(t, "submit --wait", 0, "f -> processed by stage 1 -> processed by stage 2")

	// cancel a running job; watch then reports it canceled (exit 2); a second
	// cancel is refused (409: exit 1).
	r = s.cli(nil, "submit", "sleep", "--input", `{"stages":1,"ms":60000}`)
	long := uuidRE.FindString(r.stdout)
	if long == "" {
		t.Fatalf("submit printed no job id: %q %q", r.stdout, r.stderr)
	}
	s.waitJob(long, 20*time.Second, "running", func(j *job) bool { return j.State == "running" })
	s.cli(nil, "cancel", long).want(t, "cancel running", 0)
	s.waitJob(long, 5*time.Second, "canceled", func(j *job) bool { return j.State == "canceled" })
	s.cli(nil, "watch", long).want(t, "watch canceled", 2)
	s.cli(nil, "cancel", long).want(t, "cancel finished", 1)

	// Refusals and errors: non-zero with the reason on stderr.
	if r := s.cli(nil, "submit", "nope"); r.code == 0 || !strings.Contains(r.stderr, "nope") {
		t.Errorf("submit of an unknown type: exit %d, stderr %q; want non-zero naming the type", r.code, r.stderr)
	}
	if r := s.cli(nil, "status", "0b6c0b6c-0b6c-4b6c-8b6c-0b6c0b6c0b6c"); r.code == 0 || r.stderr == "" {
		t.Errorf("status of an unknown job: exit %d, stderr %q; want non-zero with a reason", r.code, r.stderr)
	}
	s.cli([]string{"STAGED_SERVER=http://127.0.0.1:1"}, "status", "0b6c0b6c-0b6c-4b6c-8b6c-0b6c0b6c0b6c").
		want(t, "status with the API unreachable", 3)
	s.cli([]string{"STAGED_REDIS_URL=" + s.redis.URL(), "STAGED_CONCURRENCY=lots"}, "worker").
		want(t, "worker with a bad STAGED_CONCURRENCY", 3, "STAGED_CONCURRENCY")
}

// cliRun is a CLI command running in the background.
type cliRun struct {
	cmd      *exec.Cmd
	out, err *logBuf
	done     chan struct{}
	code     int
	runErr   error
	cancel   context.CancelFunc
}

// cliStart starts `staged args...` against this stack's API without
// waiting for it; wait collects it.
func (s *stack) cliStart(extra []string, args ...string) *cliRun {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliLimit)
	r := &cliRun{out: &logBuf{}, err: &logBuf{}, done: make(chan struct{}), cancel: cancel}
	r.cmd = exec.CommandContext(ctx, binary(s.t), args...)
	r.cmd.Env = append(append(baseEnv(), "STAGED_SERVER="+s.baseURL), extra...)
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.err
	if err := r.cmd.Start(); err != nil {
		cancel()
		s.t.Fatalf("staged %s: %v", strings.Join(args, " "), err)
	}
	go func() {
		defer close(r.done)
		err := r.cmd.Wait()
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			r.code = ee.ExitCode()
		case err != nil:
			r.runErr = err
		}
	}()
	s.t.Cleanup(func() { cancel(); <-r.done })
	return r
}

// wait waits for the command to exit (it is killed after cliLimit).
func (r *cliRun) wait(t *testing.T) cliResult {
	t.Helper()
	<-r.done
	res := cliResult{stdout: r.out.String(), stderr: r.err.String(), code: r.code}
	if r.runErr != nil || r.code == -1 {
		t.Fatalf("staged %s: %v (killed after %v?)\nstdout: %s\nstderr: %s",
			strings.Join(r.cmd.Args[1:], " "), r.runErr, cliLimit, res.stdout, res.stderr)
	}
	t.Logf("staged %s → exit %d", strings.Join(r.cmd.Args[1:], " "), r.code)
	return res
}

// statusLine is one plain progress line of `submit --wait` and `watch`
// when stdout is not a terminal: "TIME STATE" or "TIME STATE stage K/N
// NAME P%" (failed adds ": message").
var statusLine = regexp.MustCompile(`^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ) (queued|running|retrying|canceling|succeeded|failed|canceled)` +
	`(?: stage (\d+)/(\d+) (\S+) (\d{1,3})%(?: · .+)?(?:: .+)?)?$`)

// plainLines picks the status lines out of non-TTY follow output on stderr
// (other lines, such as the submitted job's id or the final message, are
// passed over), checking each status line's format, that consecutive ones
// differ, and that the output has no terminal control.
func plainLines(t *testing.T, what, stderr string) (status [][]string) {
	t.Helper()
	if strings.ContainsAny(stderr, "\r\x1b") {
		t.Errorf("%s: non-TTY output has carriage returns or escape sequences: %q", what, stderr)
	}
	for _, line := range strings.Split(strings.TrimRight(stderr, "\n"), "\n") {
		m := statusLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if n := len(status); n > 0 && strings.TrimPrefix(line, m[1]) == strings.TrimPrefix(status[n-1][0], status[n-1][1]) {
			t.Errorf("%s: status line %d repeats the previous one: %q", what, n+1, line)
		}
		status = append(status, m)
	}
	if len(status) == 0 {
		t.Fatalf("%s: no status line on stderr:\n%s", what, stderr)
	}
	return status
}

// TestCLIWait runs `staged submit --wait` to each end with stdout and
// stderr not a terminal: exit 0 with plain status lines on stderr and only
// the result on stdout, 1 when the
// job fails (an attempt timeout shorter than the job), 2 when another
// process cancels the job while the first waits.
func TestCLIWait(t *testing.T) {
	t.Parallel()
	s := newStack(t, false)
	s.startAPI()
	s.startWorker()

	// Succeeded: exit 0; one line per change, stage by stage, ending
	// "succeeded stage 3/3 stage3 100%", then the result as JSON.
	r := s.cli(nil, "submit", "sleep", "--input", `{"stages":3,"ms":400}`, "--wait")
	r.want(t, "submit --wait (succeeds)", 0)
	status, rest := plainLines(t, "submit --wait (succeeds)", r.stderr), strings.TrimSpace(r.stdout)
	t.Logf("submit --wait printed %d status lines; last %q", len(status), status[len(status)-1][0])
	prevStage, prevPct := 0, -1
	for _, m := range status {
		if m[3] == "" {
			continue
		}
		k, _ := strconv.Atoi(m[3])
		pct, _ := strconv.Atoi(m[6])
		if m[4] != "3" || m[5] != "stage"+m[3] {
			t.Errorf("status line %q: want stage K/3 stageK", m[0])
		}
		if k < prevStage || k == prevStage && pct < prevPct {
			t.Errorf("status line %q goes backwards (after stage %d %d%%)", m[0], prevStage, prevPct)
		}
		prevStage, prevPct = k, pct
	}
	if last := status[len(status)-1]; strings.TrimPrefix(last[0], last[1]+" ") != "succeeded stage 3/3 stage3 100%" {
		t.Errorf("the last status line is %q, want it to end \"succeeded stage 3/3 stage3 100%%\"", last[0])
	}
	if len(status) < 4 {
		t.Errorf("submit --wait printed %d status lines for a 3-stage job, want one per change:\n%s", len(status), r.stdout)
	}
	var res map[string]int
	if err := json.Unmarshal([]byte(rest), &res); err != nil || res["stage"] != 3 || res["slept_ms"] != 400 {
		t.Errorf("submit --wait: after the status lines %q, want the result {\"stage\":3,\"slept_ms\":400} (%v)", rest, err)
	}

	// Failed: a 1s attempt timeout on a 2×3s job, no retries: exit 1, the
	// last line says failed in stage 1 with the reason, stderr too.
	r = s.cli(nil, "submit", "sleep", "--input", `{"stages":2,"ms":3000}`, "--timeout", "1s", "--max-retries", "0", "--wait")
	r.want(t, "submit --wait (times out)", 1, "failed in stage stage1")
	status, rest = plainLines(t, "submit --wait (times out)", r.stderr), strings.TrimSpace(r.stdout)
	if last := status[len(status)-1]; last[2] != "failed" || last[3] != "1" || !strings.Contains(last[0], "stage 1/2 stage1") {
		t.Errorf("the last status line is %q, want \"failed stage 1/2 stage1 P%%: …\"", last[0])
	}
	if rest != "" {
		t.Errorf("a failed job printed %q after its status lines, want nothing on stdout", rest)
	}

	// Canceled by another process while the first waits: exit 2.
	bg := s.cliStart(nil, "submit", "sleep", "--input", `{"stages":2,"ms":20000}`, "--wait")
	var id string
	waitFor(t, 20*time.Second, "submit --wait to name its job and show it running", func() (bool, string) {
		id = uuidRE.FindString(bg.err.String())
		return id != "" && strings.Contains(bg.err.String(), "running stage 1/2"), fmt.Sprintf("stdout %q, stderr %q", bg.out.String(), bg.err.String())
	})
	s.cli(nil, "cancel", id).want(t, "cancel from another process", 0)
	r = bg.wait(t)
	r.want(t, "submit --wait (canceled)", 2, "was canceled")
	status, rest = plainLines(t, "submit --wait (canceled)", r.stderr), strings.TrimSpace(r.stdout)
	if last := status[len(status)-1]; last[2] != "canceled" || !strings.Contains(last[0], "stage 1/2 stage1") {
		t.Errorf("the last status line is %q, want \"canceled stage 1/2 stage1 P%%\"", last[0])
	}
	if rest != "" {
		t.Errorf("a canceled job printed %q after its status lines, want nothing on stdout", rest)
	}
}
