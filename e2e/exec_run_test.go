package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestExecProgressScratch: a Python stage's progress and partial result
// are seen changing while it runs (each step waits for the test), its
// result is exact; two Bash stages share the job's scratch directory,
// which is gone once the job finished.
func TestExecProgressScratch(t *testing.T) {
	t.Parallel()
	s := newStack(t, false)
	file := execFile(t)
	s.startExecAPI(file)
	s.startWorker("STAGED_PIPELINES=" + file)

	gate := t.TempDir()
	j := s.submit(`{"type":"py-steps","input":{"gate":` + mustJSON(gate) + `}}`)
	for i := 1; i <= 3; i++ {
		want := fmt.Sprintf(`{"i":%d,"total":%d}`, i, i*(i+1)/2)
		s.waitJob(j.ID, 20*time.Second, "partial "+want+" while the stage runs", func(j *job) bool {
			return j.State == "running" && jsonEqual(j.Partial, json.RawMessage(want)) && j.Progress > float64(i-1)/3
		})
		if err := os.WriteFile(filepath.Join(gate, fmt.Sprint(i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	done := s.waitSucceeded(j.ID, 20*time.Second)
	if want := `{"steps":3,"total":6,"stage":"count","index":1}`; !jsonEqual(done.Result, json.RawMessage(want)) {
		t.Errorf("result %s, want %s", done.Result, want)
	}

	sc := s.waitSucceeded(s.submit(`{"type":"scratch"}`).ID, 20*time.Second)
	var res struct {
		Note string
		Dir  string
		Prev struct{ Dir string }
	}
	if err := json.Unmarshal(sc.Result, &res); err != nil {
		t.Fatalf("scratch result %s: %v", sc.Result, err)
	}
	if res.Note != sc.ID || res.Dir == "" || res.Dir != res.Prev.Dir {
		t.Errorf("scratch result %s: want the note %q written by stage 1 read by stage 2 in the same directory", sc.Result, sc.ID)
	}
	s.waitFor(10*time.Second, "the scratch directory removed after the job", func() (bool, string) {
		_, err := os.Stat(res.Dir)
		return os.IsNotExist(err), fmt.Sprintf("stat %s: %v", res.Dir, err)
	})
}

// TestExecClassicExample runs examples/python/pipelines.yaml as a user
// would: the classic four-stage job and the CSV report.
func TestExecClassicExample(t *testing.T) {
	t.Parallel()
	s := newStack(t, false)
	file, err := filepath.Abs("../examples/python/pipelines.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s.startExecAPI(file)
	s.startWorker("STAGED_PIPELINES=" + file)

	j := s.submit(`{"type":"classic","input":{"data":"hi","steps":3,"delay":0.05}}`)
	s.waitJob(j.ID, 20*time.Second, "a partial result from stage 2", func(j *job) bool {
		return j.State == "running" && j.Stage.Index == 2 && strings.Contains(string(j.Partial), `"stage":2`)
	})
	done := s.waitSucceeded(j.ID, 30*time.Second)
	want := `{"data":"hi -> processed by stage 1 -> processed by stage 2 -> processed by stage 3 -> processed by stage 4","steps":3,"delay":0.05}`
	if !jsonEqual(done.Result, json.RawMessage(want)) {
		t.Errorf("classic result %s, want %s", done.Result, want)
	}
	if got := stageNames(done); got != "stage1,stage2,stage3,stage4" {
		t.Errorf("stages %s", got)
	}

	rep := s.waitSucceeded(s.submit(`{"type":"csv-report"}`).ID, 30*time.Second)
	var r struct {
		Report string
		Stats  map[string]struct {
			All struct {
				Count int
				Mean  float64
			}
		}
	}
	if err := json.Unmarshal(rep.Result, &r); err != nil {
		t.Fatal(err)
	}
	// data/sales.csv: 12 rows, units summing to 1462.
	if u := r.Stats["units"].All; u.Count != 12 || u.Mean != 121.8333 || !strings.Contains(r.Report, "| north | 6 |") {
		t.Errorf("csv-report: units %+v, report:\n%s", u, r.Report)
	}
	// The Python client's command line, as the README shows it.
	cmd := exec.Command("python3", "../python/staged_client.py", "--server", s.baseURL, "submit", "classic",
		"--input", `{"data":"py","steps":2,"delay":0.01}`, "--watch")
	out, err := cmd.Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		t.Logf("staged_client.py stderr:\n%s", ee.Stderr)
	}
	if err != nil || !strings.Contains(string(out), `"py -> processed by stage 1 -> processed by stage 2 -> processed by stage 3 -> processed by stage 4"`) {
		t.Errorf("python3 staged_client.py submit classic --watch: %v\n%s", err, out)
	}

	bad := s.waitDone(s.submit(`{"type":"csv-report","input":{"group_by":"colour"}}`).ID, 30*time.Second)
	if bad.State != "failed" || bad.Error == nil || !strings.Contains(bad.Error.Message, "no column 'colour'") {
		t.Errorf("csv-report with a wrong group_by: %s", bad.summary())
	}
}

// TestExecKillResume: kill -9 of the worker during a command stage:
// another worker resumes the job from its last completed stage, and the
// killed worker's stage process does not keep running.
func TestExecKillResume(t *testing.T) {
	t.Parallel()
	s := newStack(t, false)
	file := execFile(t)
	s.startExecAPI(file)
	w1 := s.startWorker("STAGED_PIPELINES=" + file)

	dir := t.TempDir()
	pids, gate := filepath.Join(dir, "pids"), filepath.Join(dir, "gate")
	j := s.submit(`{"type":"resume","input":{"pids":` + mustJSON(pids) + `,"gate":` + mustJSON(gate) + `}}`)
	before := s.waitJob(j.ID, 20*time.Second, "stage 2 running on worker1", func(j *job) bool {
		return j.State == "running" && j.Stage.Index == 2 && string(j.Partial) == `{"waiting":1}`
	})
	firsts := readPids(s, pids, 2) // the stage and its child
	s.startWorker("STAGED_PIPELINES=" + file)

	w1.kill()
	killed := time.Now()
	waitGone(s, 10*time.Second, "the killed worker's stage process to die", firsts[0])
	waitTakeover(s, before, killed, "takeover after kill -9 during a command stage")
	seconds := readPids(s, pids, 4)[2:]
	// The child of the killed worker's stage is ended by the next worker
	// on this machine to start a stage.
	waitGone(s, 10*time.Second, "the child of the killed worker's stage to die", firsts[1])
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	done := s.waitSucceeded(j.ID, 30*time.Second)
	checkResumed(t, done, 2)
	var res struct {
		Attempt int
		Before  struct{ Attempt int }
	}
	json.Unmarshal(done.Result, &res)
	if res.Attempt != 2 || res.Before.Attempt != 1 {
		t.Errorf("result %s: want stage 1 from attempt 1 and stage 2 from attempt 2", done.Result)
	}
	waitGone(s, 10*time.Second, "the second stage process and its child to be gone", seconds...)
}

// TestExecCancelTimeout: cancel during a long command stage, and a stage
// timeout: the stage's process group (with a child ignoring SIGTERM) is
// gone and the job canceled (failed) within 5 s.
func TestExecCancelTimeout(t *testing.T) {
	t.Parallel()
	s := newStack(t, false)
	file := execFile(t)
	s.startExecAPI(file)
	s.startWorker("STAGED_PIPELINES=" + file)
	dir := t.TempDir()

	pids := filepath.Join(dir, "cancel")
	j := s.submit(`{"type":"hang","input":{"pids":` + mustJSON(pids) + `}}`)
	s.waitJob(j.ID, 20*time.Second, "hanging", func(j *job) bool { return string(j.Partial) == `"hanging"` })
	ps := readPids(s, pids, 2)
	asked := time.Now()
	if r := s.cancel(j.ID); r.status != 202 {
		t.Fatalf("cancel: %d %s", r.status, r.body)
	}
	c := s.waitJob(j.ID, 5*time.Second, "canceled", func(j *job) bool { return j.terminal() })
	waitGone(s, 5*time.Second-time.Since(asked), "the canceled stage's processes to be gone", ps...)
	t.Logf("canceled and the process group gone %.2fs after the cancel", time.Since(asked).Seconds())
	if c.State != "canceled" {
		t.Errorf("after cancel: %s", c.summary())
	}

	pids = filepath.Join(dir, "timeout")
	j = s.submit(`{"type":"hang-timeout","input":{"pids":` + mustJSON(pids) + `}}`)
	ps = readPids(s, pids, 2)
	started := time.Now()
	f := s.waitJob(j.ID, 3*time.Second+5*time.Second, "failed by the stage timeout", func(j *job) bool { return j.terminal() })
	waitGone(s, 8*time.Second-time.Since(started), "the timed-out stage's processes to be gone", ps...)
	if f.State != "failed" || f.Error == nil || !strings.Contains(f.Error.Message, "exceeded its 3s timeout") {
		t.Errorf("after the stage timeout: %s", f.summary())
	}
}

// TestExecMisbehaving: each misbehaving stage fails its job with an error
// a person can act on; the worker keeps serving.
func TestExecMisbehaving(t *testing.T) {
	t.Parallel()
	s := newStack(t, false)
	file := execFile(t)
	s.startExecAPI(file)
	w := s.startWorker("STAGED_PIPELINES=" + file)

	fails := map[string][]string{
		"bad-line":      {"malformed message", "not a JSON object"},
		"huge-line":     {"message line over the 4194304-byte limit"},
		"junk":          {"exited 0 without sending a result"},
		"not-json":      {"malformed message"},
		"too-big":       {"over the 1048576-byte limit"},
		"not-found":     {"no-such-program-e2e", "not found in $PATH"},
		"no-permission": {"permission denied", "chmod +x"},
		"closes-stdout": {"closed its stdout"},
		"traceback":     {"ZeroDivisionError", "Traceback"},
		"exit-78":       {"status 78", "bad config"},
	}
	ids := map[string]string{}
	for typ := range fails {
		ids[typ] = s.submit(`{"type":"` + typ + `"}`).ID
	}
	for typ, want := range fails {
		j := s.waitDone(ids[typ], 40*time.Second)
		if j.State != "failed" || j.Error == nil {
			t.Errorf("%s: %s, want failed", typ, j.summary())
			continue
		}
		for _, w := range want {
			if !strings.Contains(j.Error.Message, w) {
				t.Errorf("%s: error %q does not say %q", typ, j.Error.Message, w)
			}
		}
		t.Logf("%s: %s", typ, strings.SplitN(j.Error.Message, "\n", 2)[0])
	}

	// Not reading a large input is fine; a child left behind dies.
	big := strings.Repeat("x", 300<<10)
	j := s.waitSucceeded(s.submit(`{"type":"no-stdin","input":{"data":"`+big+`"}}`).ID, 20*time.Second)
	if string(j.Result) != `"did not read"` {
		t.Errorf("no-stdin result %s", j.Result)
	}
	pids := filepath.Join(t.TempDir(), "pids")
	s.waitSucceeded(s.submit(`{"type":"orphan","input":{"pids":`+mustJSON(pids)+`}}`).ID, 20*time.Second)
	waitGone(s, 5*time.Second, "the child the stage left behind to die", readPids(s, pids, 1)...)

	if w.exited() {
		t.Fatalf("the worker exited: %v", w.err)
	}
	gate := t.TempDir()
	for i := 1; i <= 3; i++ {
		os.WriteFile(filepath.Join(gate, fmt.Sprint(i)), nil, 0o644)
	}
	s.waitSucceeded(s.submit(`{"type":"py-steps","input":{"gate":`+mustJSON(gate)+`}}`).ID, 20*time.Second)
}

// TestExecPipelinesFileMistake: a worker with a broken pipelines file
// stops at start, naming the file, pipeline, field and the mistake.
func TestExecPipelinesFileMistake(t *testing.T) {
	t.Parallel()
	s := newStack(t, false)
	dir := t.TempDir()
	for name, c := range map[string]struct{ file, want string }{
		"run string":  {"pipelines:\n  - name: p\n    stages:\n      - name: s\n        run: python3 x.py\n", `:5: pipeline "p": stages[0] (s).run: must be a list`},
		"bad timeout": {"pipelines:\n  - name: p\n    timeout: 10\n    stages:\n      - {name: s, run: [x]}\n", `:3: pipeline "p": timeout: must be a duration`},
		"no stages":   {"pipelines:\n  - name: p\n", `:2: pipeline "p": stages: missing`},
	} {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".yaml")
		os.WriteFile(path, []byte(c.file), 0o644)
		w := startProc(t, "worker-"+name, s.env("STAGED_PIPELINES="+path), "worker")
		if code := w.waitExit(20 * time.Second); code != 3 {
			t.Errorf("%s: exit %d, want 3", name, code)
		}
		if out := w.out.String(); !strings.Contains(out, "STAGED_PIPELINES: pipelines file "+path+c.want) {
			t.Errorf("%s: output does not say %q:\n%s", name, c.want, out)
		}
	}
}

// TestExecFenced: the worker running a command stage is stopped (SIGSTOP)
// past its lease, another takes the job over; when the first wakes up it
// is fenced and ends its stage's process, which never reports again.
func TestExecFenced(t *testing.T) {
	t.Parallel()
	s := newStack(t, false)
	file := execFile(t)
	s.startExecAPI(file)
	w1 := s.startWorker("STAGED_PIPELINES=" + file)

	dir := t.TempDir()
	pids, gate := filepath.Join(dir, "pids"), filepath.Join(dir, "gate")
	j := s.submit(`{"type":"resume","input":{"pids":` + mustJSON(pids) + `,"gate":` + mustJSON(gate) + `}}`)
	before := s.waitJob(j.ID, 20*time.Second, "stage 2 running on worker1", func(j *job) bool {
		return j.State == "running" && j.Stage.Index == 2 && string(j.Partial) == `{"waiting":1}`
	})
	firsts := readPids(s, pids, 2)
	s.startWorker("STAGED_PIPELINES=" + file)

	w1.signal(syscall.SIGSTOP)
	stopped := time.Now()
	waitTakeover(s, before, stopped, "takeover from a stopped worker during a command stage")
	readPids(s, pids, 4)
	if !alive(firsts[0]) {
		t.Fatalf("the stopped worker's stage process %d died before the worker woke up", firsts[0])
	}
	w1.signal(syscall.SIGCONT)
	waitGone(s, 20*time.Second, "the fenced worker's stage process and its child to be ended", firsts...)
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	done := s.waitSucceeded(j.ID, 30*time.Second)
	checkResumed(t, done, 2)
	checkFinishedOnce(t, s, j.ID)
	if w1.exited() {
		t.Errorf("the fenced worker exited (%v); it should stop the job and live on", w1.err)
	}
}

// TestExecShutdown: SIGTERM on a worker during a command stage that
// outlasts the grace period: the stage's process group (with a child that
// ignores SIGTERM) is ended, the worker exits and hands the job back, and
// another worker runs it.
func TestExecShutdown(t *testing.T) {
	t.Parallel()
	s := newStack(t, false)
	file := execFile(t)
	s.startExecAPI(file)
	w1 := s.startWorker("STAGED_PIPELINES=" + file)

	pids := filepath.Join(t.TempDir(), "pids")
	j := s.submit(`{"type":"hang","input":{"pids":` + mustJSON(pids) + `}}`)
	s.waitJob(j.ID, 20*time.Second, "hanging", func(j *job) bool { return string(j.Partial) == `"hanging"` })
	first := readPids(s, pids, 2)
	w1.signal(syscall.SIGTERM)
	if code := w1.waitExit(30 * time.Second); code != 0 {
		t.Errorf("worker1 exited %d after SIGTERM, want 0", code)
	}
	waitGone(s, 5*time.Second, "the stage's processes to be gone once the worker exited", first...)
	s.startWorker("STAGED_PIPELINES=" + file)
	s.waitJob(j.ID, takeoverLimit, "running again on worker2", func(j *job) bool { return j.Attempt == 2 && j.State == "running" })
	second := readPids(s, pids, 4)[2:]
	if r := s.cancel(j.ID); r.status != 202 {
		t.Fatalf("cancel: %d %s", r.status, r.body)
	}
	s.waitJob(j.ID, 10*time.Second, "canceled", func(j *job) bool { return j.State == "canceled" })
	waitGone(s, 5*time.Second, "the second run's processes to be gone", second...)
}
