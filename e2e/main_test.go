// Package e2e tests staged the way a user runs it: the real binary, built
// once, runs as `staged api` and `staged worker` child processes against a
// private redis-server, and the tests talk to it over real HTTP.
//
// The tests are skipped with -short. They fail (not skip) when the binary
// does not build. STAGED_E2E_BIN=/path/to/staged tests that binary instead
// of building one; STAGED_E2E_LOGS=DIR keeps every process's full output. Every wait is a deadline-bounded poll on a condition; on
// failure each process's output is dumped.
package e2e

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// binPath is the staged binary built by TestMain; buildErr says why it is
// missing.
var (
	binPath  string
	buildErr error
)

func TestMain(m *testing.M) {
	flag.Parse()
	code := func() int {
		if testing.Short() {
			return m.Run()
		}
		dir, err := os.MkdirTemp("", "staged-e2e-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		if bin := os.Getenv("STAGED_E2E_BIN"); bin != "" {
			binPath = bin
			fmt.Fprintln(os.Stderr, "e2e: testing STAGED_E2E_BIN", bin)
		} else {
			binPath, buildErr = build(dir)
		}
		return m.Run()
	}()
	os.Exit(code)
}

// build compiles ./cmd/staged into dir, from the module root (the parent
// of this package's directory).
func build(dir string) (string, error) {
	out := filepath.Join(dir, "staged")
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		goBin = "go"
	}
	cmd := exec.Command(goBin, "build", "-o", out, "./cmd/staged")
	cmd.Dir = ".."
	b, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build -o %s ./cmd/staged: %v\n%s", out, err, b)
	}
	return out, nil
}

// binary returns the built staged binary; it skips under -short and fails
// the test when the build failed.
func binary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("e2e: skipped with -short (builds the binary and runs real processes)")
	}
	if buildErr != nil {
		t.Fatalf("e2e: cannot build the staged binary:\n%v", buildErr)
	}
	return binPath
}
