package worker

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// scratchDir is a run's scratch directory (tasks.StageInfo.Scratch): made
// on first use, shared by the stages of the run, removed when the run ends.
// It lives in $TMPDIR/staged-scratch/w<worker pid>/; the first worker to
// make one on a machine removes the directories of workers that are gone
// (killed before they could clean up).
type scratchDir struct {
	mu   sync.Mutex
	path string
}

var sweepOnce sync.Once

// scratchBase is this process's directory of scratch directories.
func scratchBase() string {
	return filepath.Join(os.TempDir(), "staged-scratch", "w"+strconv.Itoa(os.Getpid()))
}

// sweepScratch removes the scratch directories of worker processes that no
// longer run (on Linux, where /proc says so).
func sweepScratch() {
	root := filepath.Dir(scratchBase())
	ents, err := os.ReadDir(root)
	if err != nil {
		return
	}
	if _, err := os.Stat("/proc/self"); err != nil {
		return // no /proc: cannot tell
	}
	for _, e := range ents {
		pid, ok := strings.CutPrefix(e.Name(), "w")
		if _, err := strconv.Atoi(pid); !ok || err != nil || pid == strconv.Itoa(os.Getpid()) {
			continue
		}
		if _, err := os.Stat("/proc/" + pid); os.IsNotExist(err) {
			os.RemoveAll(filepath.Join(root, e.Name()))
		}
	}
}

// get returns the directory, creating it for job id's attempt on first use.
func (s *scratchDir) get(id string, attempt int) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.path != "" {
		return s.path, nil
	}
	sweepOnce.Do(sweepScratch)
	base := scratchBase()
	if err := os.MkdirAll(base, 0o700); err != nil {
		return "", err
	}
	p, err := os.MkdirTemp(base, id+"-a"+strconv.Itoa(attempt)+"-")
	if err != nil {
		return "", err
	}
	s.path = p
	return p, nil
}

// remove deletes the directory and everything in it, if it was made.
func (s *scratchDir) remove() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.path == "" {
		return nil
	}
	err := os.RemoveAll(s.path)
	s.path = ""
	return err
}
