package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/staged-dev/staged/internal/catalog"
	"github.com/staged-dev/staged/pipefile"
	"github.com/staged-dev/staged/tasks"
)

// Command stages (docs/PROTOCOL.md): pipelines files with Python and Bash
// stages, run by stock `staged worker` processes with STAGED_PIPELINES,
// behind a stock `staged api` that learns the file's pipelines from the
// catalogue the workers publish.

// startExecAPI runs the stock staged api with file's pipelines already in
// the catalogue, as if a worker with that file had run once (as staged dev
// does before its API starts), so that a submit never races the first
// worker's heartbeat, and waits for /readyz.
func (s *stack) startExecAPI(file string) {
	s.t.Helper()
	f, err := pipefile.Load(file)
	if err != nil {
		s.t.Fatal(err)
	}
	if err := catalog.PublishDefinitions(context.Background(), s.rdb, tasks.NewRegistry(f.Pipelines...), 0); err != nil {
		s.t.Fatal(err)
	}
	s.startAPI()
}

// pythonDir is the repository's python/ directory (staged_stage.py).
func pythonDir(t *testing.T) string {
	d, err := filepath.Abs("../python")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// execFile writes the test pipelines file and its scripts into a new
// directory and returns the file's path.
func execFile(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	write := func(name, text string, mode os.FileMode) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("steps.py", stepsPy, 0o644)
	write("gate.py", gatePy, 0o644)
	write("hang.sh", hangSh, 0o644)
	write("noexec.sh", "#!/bin/sh\necho '::staged:: {\"result\": 1}'\n", 0o644)
	write("pipelines.yaml", strings.ReplaceAll(execPipelines, "PYDIR", pythonDir(t)), 0o644)
	return filepath.Join(dir, "pipelines.yaml")
}

const stepsPy = `import os, staged_stage as stage

def main(d):
    total = 0
    for i in range(1, d["steps"] + 1):
        total += i
        stage.progress(i / d["steps"], partial={"i": i, "total": total})
        gate = os.path.join(d["gate"], str(i))
        while not os.path.exists(gate):
            os.system("sleep 0.02")
    return {"steps": d["steps"], "total": total, "stage": stage.stage_name(), "index": stage.stage_index()}

stage.run(main)
`

// gatePy records its pid and its child's (which would outlive it), then
// waits for the gate file.
const gatePy = `import os, subprocess, time, staged_stage as stage

def main(d):
    child = subprocess.Popen(["sleep", "1000"])
    with open(d["in"]["pids"], "a") as f:
        f.write("%d %d\n" % (os.getpid(), child.pid))
    stage.progress(0.5, partial={"waiting": stage.attempt()})
    while not os.path.exists(d["in"]["gate"]):
        time.sleep(0.02)
    return {"before": d, "attempt": stage.attempt()}

stage.run(main)
`

// hangSh records its pid and a child's that ignores SIGTERM, then waits
// (ignoring SIGTERM itself). It reads the pids path from its input
// ({"pids":"PATH"}) with bash alone: a python3 start-up took over 2 s on a
// loaded machine, longer than the stage timeout the test gives it.
const hangSh = `IFS= read -r in; pids=${in#*'"pids":"'}; pids=${pids%%'"'*}
bash -c 'trap "" TERM; while :; do sleep 0.1; done' &
echo "$$ $!" >> "$pids"
trap "" TERM
echo '::staged:: {"progress": 0.5, "partial": "hanging"}'
wait
`

const execPipelines = `
pipelines:
  - name: py-steps
    input:
      type: object
      properties:
        steps: {type: integer, default: 3}
        gate: {type: string}
    stages:
      - {name: count, run: [python3, steps.py], env: {PYTHONPATH: PYDIR}}
  - name: scratch
    stages:
      - name: write
        run: [bash, -c, 'cat >/dev/null; echo "$STAGED_JOB_ID" > "$STAGED_SCRATCH/note"; echo "::staged:: {\"result\": {\"dir\": \"$STAGED_SCRATCH\"}}"']
      - name: read
        run: [bash, -c, 'in=$(cat); echo "::staged:: {\"result\": {\"note\": \"$(cat "$STAGED_SCRATCH/note")\", \"prev\": $in, \"dir\": \"$STAGED_SCRATCH\"}}"']
  - name: resume
    stages:
      - {name: first, run: [bash, -c, 'in=$(cat); echo "::staged:: {\"result\": {\"in\": $in, \"attempt\": $STAGED_ATTEMPT}}"']}
      - {name: wait, run: [python3, gate.py], env: {PYTHONPATH: PYDIR}}
  - name: hang
    stages:
      - {name: hang, run: [bash, hang.sh]}
  - name: hang-timeout
    stages:
      - {name: hang, run: [bash, hang.sh], timeout: 3s}
  - name: orphan
    stages:
      - name: leave
        run: [bash, -c, 'pids=$(python3 -c "import json,sys; print(json.load(sys.stdin)[\"pids\"])"); bash -c "trap \"\" TERM; while :; do sleep 0.1; done" & echo "$!" >> "$pids"; echo "::staged:: {\"result\": \"left a child\"}"']
  - name: no-stdin
    stages:
      - {name: ignore, run: [bash, -c, 'echo "::staged:: {\"result\": \"did not read\"}"']}
  - name: bad-line
    stages:
      - {name: s, run: [bash, -c, 'echo "::staged:: {\"progress\": oops}"; sleep 60']}
  - name: huge-line
    stages:
      - {name: s, run: [bash, -c, 'printf "::staged:: {\"result\": \""; head -c 100000000 /dev/zero | tr "\0" a; echo "\"}"']}
  - name: junk
    stages:
      - {name: s, run: [bash, -c, 'head -c 200000 /dev/urandom; exit 0']}
  - name: not-json
    stages:
      - {name: s, run: [bash, -c, 'echo "::staged:: {\"result\": not json}"']}
  - name: too-big
    stages:
      - {name: s, run: [python3, -c, 'import staged_stage as s; s.run(lambda d: "x" * 2000000)'], env: {PYTHONPATH: PYDIR}}
  - name: not-found
    stages:
      - {name: s, run: [no-such-program-e2e]}
  - name: no-permission
    stages:
      - {name: s, run: [./noexec.sh]}
  - name: closes-stdout
    stages:
      - {name: s, run: [bash, -c, 'exec >&-; sleep 60']}
  - name: traceback
    stages:
      - {name: s, run: [python3, -c, 'import staged_stage as s; s.run(lambda d: 1 / 0)'], env: {PYTHONPATH: PYDIR}}
  - name: exit-78
    stages:
      - {name: s, run: [bash, -c, 'echo "bad config" >&2; exit 78']}
`

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

// readPids waits for file to hold at least n pids and returns them.
func readPids(s *stack, file string, n int) []int {
	s.t.Helper()
	var pids []int
	s.waitFor(20*time.Second, fmt.Sprintf("%d pids in %s", n, file), func() (bool, string) {
		b, _ := os.ReadFile(file)
		pids = pids[:0]
		for _, f := range strings.Fields(string(b)) {
			p, err := strconv.Atoi(f)
			if err == nil {
				pids = append(pids, p)
			}
		}
		return len(pids) >= n, fmt.Sprintf("%v", pids)
	})
	return pids
}

// waitGone waits until none of pids is alive.
func waitGone(s *stack, limit time.Duration, what string, pids ...int) {
	s.t.Helper()
	s.waitFor(limit, what, func() (bool, string) {
		for _, p := range pids {
			if alive(p) {
				return false, fmt.Sprintf("process %d is alive", p)
			}
		}
		return true, ""
	})
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}
