package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPipelinesFileMistakeStopsStart: a pipelines file with a mistake
// stops dev and worker before they connect anywhere, naming what is wrong;
// api does not read the file.
func TestPipelinesFileMistakeStopsStart(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("pipelines:\n  - name: crawl\n    stages:\n      - name: fetch\n        run: [python3, fetch.py]\n        weight: -1\n"), 0o644)
	taken := filepath.Join(dir, "taken.yaml")
	os.WriteFile(taken, []byte("pipelines:\n  - name: train\n    stages:\n      - name: s\n        run: [\"true\"]\n"), 0o644)
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"flag", []string{"worker", "--pipelines", bad}, nil,
			`--pipelines: pipelines file ` + bad + `:6: pipeline "crawl": stages[0] (fetch).weight: must be a number above 0`},
		{"env", []string{"dev"}, map[string]string{"STAGED_PIPELINES": bad},
			`STAGED_PIPELINES: pipelines file ` + bad + `:6: pipeline "crawl"`},
		{"missing file", []string{"worker"}, map[string]string{"STAGED_PIPELINES": filepath.Join(dir, "none.yaml")},
			`none.yaml: no such file or directory`},
		{"name of a built-in", []string{"worker", "--pipelines", taken, "--redis", "redis://127.0.0.1:1/0"}, nil,
			`pipeline "train": name: taken by a pipeline built into this program`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(context.Background(), tt.args, func(k string) string { return tt.env[k] }, &out, &errb)
			if code != exitUsage {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, exitUsage, errb.String())
			}
			if !strings.Contains(errb.String(), tt.want) {
				t.Fatalf("stderr does not say %q:\n%s", tt.want, errb.String())
			}
		})
	}
}
