package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"sync"
	"testing"
)

// The crawl worker: a team's own program (testdata/crawlworker), built as
// a separate module that depends on this checkout, as the README's "Your
// own pipelines" tells a Go team to do.
var (
	crawlOnce sync.Once
	crawlBin  string
	crawlErr  error
)

// crawlWorker returns the built crawl worker binary; it fails the test
// when the module does not build.
func crawlWorker(t *testing.T) string {
	t.Helper()
	binary(t) // skips under -short
	crawlOnce.Do(func() { crawlBin, crawlErr = buildCrawlWorker() })
	if crawlErr != nil {
		t.Fatalf("e2e: cannot build the crawl worker module:\n%v", crawlErr)
	}
	return crawlBin
}

// buildCrawlWorker copies testdata/crawlworker into a temporary module
// whose go.mod requires staged and replaces it with this checkout (its
// go.sum is the checkout's: the same dependencies), and builds it.
func buildCrawlWorker() (string, error) {
	root, err := filepath.Abs("..")
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "staged-crawlworker-")
	if err != nil {
		return "", err
	}
	src, err := os.ReadFile(filepath.Join("testdata", "crawlworker", "main.go"))
	if err != nil {
		return "", err
	}
	mainMod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return "", err
	}
	goLine := regexp.MustCompile(`(?m)^go \S+$`).Find(mainMod)
	mod := fmt.Sprintf("module example.com/crawlworker\n\n%s\n\nrequire github.com/staged-dev/staged v0.0.0\n\nreplace github.com/staged-dev/staged => %s\n",
		goLine, strconv.Quote(root))
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		return "", err
	}
	for name, data := range map[string][]byte{"main.go": src, "go.mod": []byte(mod), "go.sum": sum} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return "", err
		}
	}
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		goBin = "go"
	}
	out := filepath.Join(dir, "crawlworker")
	// -mod=mod completes go.mod's requirements from staged's own.
	cmd := exec.Command(goBin, "build", "-mod=mod", "-o", out, ".")
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build in %s: %v\n%s", dir, err, b)
	}
	return out, nil
}

// startCrawlWorker runs the crawl worker's `worker` subcommand on the
// stack (env as for a stock worker, plus extra) and waits until it is ready.
func (s *stack) startCrawlWorker(name string, extra ...string) *proc {
	s.t.Helper()
	env := append(s.env("STAGED_CONCURRENCY=4", "STAGED_METRICS_ADDR=off"), extra...)
	w := startBin(s.t, crawlWorker(s.t), name, env, "worker")
	s.waitWorkerReady(w)
	return w
}
