package worker

import (
	"os"
	"path/filepath"
	"strconv"
	"sync"
)

// scratchDir is a run's scratch directory (tasks.StageInfo.Scratch): made
// on first use under the system's temporary directory, shared by the
// stages of the run, removed when the run ends.
type scratchDir struct {
	mu   sync.Mutex
	path string
}

// get returns the directory, creating it for job id's attempt on first use.
func (s *scratchDir) get(id string, attempt int) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.path != "" {
		return s.path, nil
	}
	base := filepath.Join(os.TempDir(), "staged-scratch")
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
