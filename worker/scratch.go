package worker

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// scratchDir is a run's scratch directory (tasks.StageInfo.Scratch): made
// on first use, shared by the stages of the run, removed when the run ends.
// It lives in $TMPDIR/staged-scratch/w<worker pid>/; making one also
// cleans up after workers of this machine that are gone (sweepScratch).
type scratchDir struct {
	mu   sync.Mutex
	path string
}

// sweepEvery bounds how often sweepScratch runs in one process.
const sweepEvery = 5 * time.Second

var (
	sweepMu   sync.Mutex
	lastSweep time.Time
)

// scratchBase is this process's directory of scratch directories.
func scratchBase() string {
	return filepath.Join(os.TempDir(), "staged-scratch", "w"+strconv.Itoa(os.Getpid()))
}

// sweepScratch cleans up after worker processes that no longer run (killed
// before they could): on Linux, where /proc says which run, it SIGKILLs the
// processes their stages left (any process whose STAGED_SCRATCH is in a dead
// worker's directory: children of a stage that outlived it) and removes
// the directory. It runs at most every sweepEvery.
func sweepScratch() {
	sweepMu.Lock()
	defer sweepMu.Unlock()
	if time.Since(lastSweep) < sweepEvery {
		return
	}
	lastSweep = time.Now()
	if _, err := os.Stat("/proc/self"); err != nil {
		return // no /proc: cannot tell
	}
	root := filepath.Dir(scratchBase())
	ents, err := os.ReadDir(root)
	if err != nil {
		return
	}
	var dead []string
	for _, e := range ents {
		pid, ok := strings.CutPrefix(e.Name(), "w")
		if _, err := strconv.Atoi(pid); !ok || err != nil || pid == strconv.Itoa(os.Getpid()) {
			continue
		}
		if _, err := os.Stat("/proc/" + pid); os.IsNotExist(err) {
			dead = append(dead, filepath.Join(root, e.Name()))
		}
	}
	if len(dead) == 0 {
		return
	}
	killLeftovers(dead)
	for _, d := range dead {
		os.RemoveAll(d)
	}
}

// get returns the directory, creating it for job id's attempt on first use.
func (s *scratchDir) get(id string, attempt int) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.path != "" {
		return s.path, nil
	}
	sweepScratch()
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
