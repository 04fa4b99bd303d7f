package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCLIWaitToFile runs `staged submit sleep --wait > out.json` in a tmux
// pane, as a user at a terminal would: the pane (stderr, a terminal) shows
// the live bar while the job runs, and out.json holds exactly the result,
// valid JSON.
func TestCLIWaitToFile(t *testing.T) {
	t.Parallel()
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		t.Skip("tmux not installed (.ci/run installs it): apt-get install tmux")
	}
	s := newStack(t, false)
	s.startAPI()
	s.startWorker()

	dir := t.TempDir()
	out, done := filepath.Join(dir, "out.json"), filepath.Join(dir, "done")
	socket := filepath.Join(dir, "tmux.sock")
	script := fmt.Sprintf(`STAGED_SERVER=%s %s submit sleep --input '{"stages":3,"ms":1200}' --wait > %s; echo $? > %s; sleep 60`,
		s.baseURL, binary(t), out, done)
	run := func(args ...string) string {
		t.Helper()
		b, err := exec.Command(tmux, append([]string{"-S", socket}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %s: %v: %s", strings.Join(args, " "), err, b)
		}
		return string(b)
	}
	run("-f", "/dev/null", "new-session", "-d", "-s", "staged", "-x", "160", "-y", "12", script)
	t.Cleanup(func() { _ = exec.Command(tmux, "-S", socket, "kill-server").Run() })

	var bar string
	waitFor(t, 30*time.Second, "the progress bar in the terminal while the job runs", func() (bool, string) {
		screen := run("capture-pane", "-p", "-t", "staged")
		for _, l := range strings.Split(screen, "\n") {
			if strings.Contains(l, "stage") && strings.Contains(l, "ETA") && strings.Contains(l, "%") && strings.Contains(l, "|") {
				bar = l
				return true, screen
			}
		}
		return false, screen
	})
	t.Logf("the terminal shows: %s", strings.TrimSpace(bar))
	waitFor(t, 30*time.Second, "the command to exit", func() (bool, string) {
		b, err := os.ReadFile(done)
		return err == nil && len(b) > 0, run("capture-pane", "-p", "-t", "staged")
	})
	if code, _ := os.ReadFile(done); strings.TrimSpace(string(code)) != "0" {
		t.Fatalf("staged submit --wait exited %s", code)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		SleptMS int `json:"slept_ms"`
	}
	if err := json.Unmarshal(b, &res); err != nil || res.SleptMS == 0 {
		t.Fatalf("out.json is not the result as JSON (%v):\n%s", err, b)
	}
	if strings.Contains(string(b), "stage ") || strings.Contains(string(b), "█") {
		t.Fatalf("out.json holds progress:\n%s", b)
	}
}
