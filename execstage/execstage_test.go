package execstage

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/staged-dev/staged/tasks"
)

// reports records a stage's progress reports.
type reports struct {
	mu   sync.Mutex
	frac []float64
	part []string
}

func (r *reports) Report(f float64, partial any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.frac = append(r.frac, f)
	if partial != nil {
		b, _ := json.Marshal(partial)
		r.part = append(r.part, string(b))
	}
}

// bash returns a Command running script with bash.
func bash(script string) *Command {
	return &Command{Argv: []string{"bash", "-c", script}}
}

func run(t *testing.T, c *Command, in string) (any, error, *reports) {
	t.Helper()
	p := &reports{}
	ctx := tasks.WithStageInfo(context.Background(), tasks.StageInfo{JobID: "job-1", Stage: "s", Index: 2, Total: 3, Attempt: 1})
	v, err := c.Run(ctx, json.RawMessage(in), p)
	return v, err, p
}

func TestResultProgressAndEnv(t *testing.T) {
	c := bash(`read -r in
echo "log line"
echo "to stderr" >&2
echo '::staged:: {"progress": 0.5, "partial": {"n": 1}}'
echo "::staged:: {\"result\": {\"in\": $in, \"env\": \"$STAGED_JOB_ID $STAGED_STAGE $STAGED_STAGE_INDEX $STAGED_STAGE_TOTAL $STAGED_ATTEMPT $STAGED_PROTOCOL\"}}"
test -d "$STAGED_SCRATCH"`)
	v, err, p := run(t, c, `{"x":1}`)
	if err != nil {
		t.Fatal(err)
	}
	got := string(v.(json.RawMessage))
	want := `{"in": {"x":1}, "env": "job-1 s 2 3 1 1"}`
	if got != want {
		t.Fatalf("result %s, want %s", got, want)
	}
	if len(p.frac) != 1 || p.frac[0] != 0.5 || p.part[0] != `{"n":1}` {
		t.Fatalf("reports %v %v", p.frac, p.part)
	}
}

func TestFailures(t *testing.T) {
	dir := t.TempDir()
	noexec := filepath.Join(dir, "stage.sh")
	if err := os.WriteFile(noexec, []byte("#!/bin/sh\necho hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		cmd       *Command
		in        string
		permanent bool
		want      []string // in the error message
	}{
		{"error message", bash(`echo '::staged:: {"error": "bad thing", "permanent": true}'; exit 3`), `{}`, true, []string{"bad thing"}},
		{"retryable error message", bash(`echo '::staged:: {"error": "try again"}'; exit 1`), `{}`, false, []string{"try again"}},
		{"exit 1 with stderr", bash(`echo "Traceback: boom" >&2; exit 1`), `{}`, false, []string{"exited with status 1", "Traceback: boom"}},
		{"exit 78", bash(`exit 78`), `{}`, true, []string{"status 78", "no retry"}},
		{"exit 0 without result", bash(`exit 0`), `{}`, true, []string{"without sending a result"}},
		{"killed by a signal", bash(`kill -SEGV $$`), `{}`, false, []string{"killed by signal"}},
		{"not found", &Command{Argv: []string{"no-such-command-staged"}}, `{}`, true, []string{"not found in $PATH", "install it"}},
		{"permission denied", &Command{Argv: []string{noexec}}, `{}`, true, []string{"permission denied", "chmod +x"}},
		{"no such file", &Command{Argv: []string{"./missing.py"}, Dir: dir}, `{}`, true, []string{"no such file"}},
		{"malformed message", bash(`echo '::staged:: {"progress": '; sleep 30`), `{}`, true, []string{"malformed message", "not a JSON object"}},
		{"unknown field", bash(`echo '::staged:: {"reslt": 1}'`), `{}`, true, []string{`unknown field "reslt"`}},
		{"result not JSON", bash(`echo '::staged:: {"result": nope}'`), `{}`, true, []string{"malformed message"}},
		{"two results", bash(`echo '::staged:: {"result": 1}'; echo '::staged:: {"result": 2}'`), `{}`, true, []string{"two result"}},
		{"100 MB message line", bash(`printf '::staged:: {"result": "'; head -c 100000000 /dev/zero | tr '\0' a; echo '"}'`), `{}`, true, []string{"over the 4194304-byte limit"}},
		{"closes stdout and keeps running", &Command{Argv: []string{"bash", "-c", `exec >&-; sleep 60`}, ExitWait: 200 * time.Millisecond}, `{}`, true, []string{"closed its stdout"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err, _ := run(t, tt.cmd, tt.in)
			if err == nil {
				t.Fatal("no error")
			}
			if tasks.IsPermanent(err) != tt.permanent {
				t.Errorf("permanent = %v, want %v (%v)", tasks.IsPermanent(err), tt.permanent, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestJunkAndSilence(t *testing.T) {
	// Binary junk and endless log lines are logged (bounded), and the
	// result still counts; a stage that never reads a large stdin works.
	big := `{"s":"` + strings.Repeat("x", 1<<20) + `"}`
	c := bash(`head -c 300000 /dev/urandom; echo; head -c 200000 /dev/urandom | base64 -w0; echo; echo '::staged:: {"result": "ok"}'`)
	v, err, _ := run(t, c, big)
	if err != nil {
		t.Fatal(err)
	}
	if string(v.(json.RawMessage)) != `"ok"` {
		t.Fatalf("result %s", v)
	}
}

// alive says whether process pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// waitDead waits, up to 5 s, for process pid to be gone. The stage's group
// is sent SIGKILL before Run returns, but a signalled process dies only
// once it is scheduled: on a loaded machine that is after kill(2) returns
// (TestLeftoverChildrenDie failed under stress-ng --cpu 2 checking at once).
func waitDead(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Errorf("process %d outlived its stage by 5 s", pid)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pids waits for path to hold n pids, one per line.
func pids(t *testing.T, path string, n int) []int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(path)
		f := strings.Fields(string(b))
		if len(f) >= n {
			var ps []int
			for _, x := range f[:n] {
				p, _ := strconv.Atoi(x)
				ps = append(ps, p)
			}
			return ps
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s did not get %d pids", path, n)
	return nil
}

func TestCancelKillsTheGroup(t *testing.T) {
	// The stage and a child that ignores SIGTERM both die on cancel.
	pidFile := filepath.Join(t.TempDir(), "pids")
	c := bash(`echo $$ >> ` + pidFile + `
bash -c 'trap "" TERM; echo $$ >> ` + pidFile + `; while :; do sleep 0.1; done' &
trap "" TERM
wait`)
	ctx, cancel := context.WithCancelCause(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Run(ctx, json.RawMessage(`{}`), &reports{})
		done <- err
	}()
	ps := pids(t, pidFile, 2)
	why := errors.New("the job was canceled")
	cancel(why)
	select {
	case err := <-done:
		if !errors.Is(err, why) {
			t.Fatalf("error %v, want the cause", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	for _, p := range ps {
		waitDead(t, p)
	}
}

func TestLeftoverChildrenDie(t *testing.T) {
	// A stage that exits leaving a background child behind: the child dies.
	pidFile := filepath.Join(t.TempDir(), "pids")
	c := bash(`sleep 300 & echo $! >> ` + pidFile + `; echo '::staged:: {"result": 1}'`)
	if _, err, _ := run(t, c, `{}`); err != nil {
		t.Fatal(err)
	}
	for _, p := range pids(t, pidFile, 1) {
		waitDead(t, p)
	}
}
