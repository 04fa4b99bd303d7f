package worker

import (
	"os"
	"path/filepath"
	"testing"
)

func TestScratchDir(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	// A dead worker's leftovers (pid 1 is alive: kept; a pid far above
	// pid_max is not: removed).
	root := filepath.Dir(scratchBase())
	dead, alive := filepath.Join(root, "w999999999", "job-a1-x"), filepath.Join(root, "w1", "job-a1-y")
	for _, d := range []string{dead, alive} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	var s scratchDir
	p, err := s.get("job", 2)
	if err != nil {
		t.Fatal(err)
	}
	if p2, _ := s.get("job", 2); p2 != p {
		t.Fatalf("second get %s, want %s", p2, p)
	}
	if err := os.WriteFile(filepath.Join(p, "f"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatalf("scratch %s still there: %v", p, err)
	}
	if _, err := os.Stat(filepath.Dir(dead)); !os.IsNotExist(err) {
		t.Errorf("a dead worker's scratch directories are still there")
	}
	if _, err := os.Stat(alive); err != nil {
		t.Errorf("a live process's scratch directory was removed: %v", err)
	}
}
