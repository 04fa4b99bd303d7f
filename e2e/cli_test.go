package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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
