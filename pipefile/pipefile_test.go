package pipefile

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/staged-dev/staged/tasks"
)

const good = `
pipelines:
  - name: classic
    description: four stages
    input:
      type: object
      properties:
        data: {type: string, default: hello}
        opts:
          type: object
          properties:
            n: {type: integer, default: 3}
    timeout: 10m
    max_retries: 2
    stages:
      - name: one
        run: [sh, -c, 'cat; echo']
        env: {MODE: fast, N: 3}
        timeout: 1m
        weight: 2
      - name: two
        run: ["sh", "-c", "exit 0"]
        dir: sub
`

func TestParseGood(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := Parse("p.yaml", []byte(good), dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Pipelines) != 1 || len(f.Warnings) != 0 {
		t.Fatalf("pipelines %d, warnings %v", len(f.Pipelines), f.Warnings)
	}
	p := f.Pipelines[0]
	if p.Name != "classic" || p.Description != "four stages" || p.Timeout != 10*time.Minute || p.MaxRetries != 2 {
		t.Fatalf("pipeline %+v", p)
	}
	if len(p.Stages) != 2 || p.Stages[0].Name != "one" || p.Stages[0].Weight != 2 || p.Stages[0].Timeout != time.Minute {
		t.Fatalf("stages %+v", p.Stages)
	}
	// JSON works as well.
	if _, err := Parse("p.json", []byte(`{"pipelines":[{"name":"j","stages":[{"name":"a","run":["true"]}]}]}`), dir); err != nil {
		t.Fatal(err)
	}
}

func TestInputSchema(t *testing.T) {
	f, err := Parse("p.yaml", []byte(`
pipelines:
  - name: d
    input:
      properties:
        data: {type: string, default: hi}
        n: {type: integer, minimum: 1, default: 3}
    stages:
      - name: echo
        run: [sh, -c, 'printf "::staged:: {\"result\": %s}\n" "$(cat)"']
`), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	in := f.Pipelines[0].Input
	got, err := in.Normalize(json.RawMessage(`{"n": 5}`))
	if err != nil || !sameJSON(got, `{"data":"hi","n":5}`) {
		t.Fatalf("Normalize: %s %v", got, err)
	}
	if _, err := in.Normalize(json.RawMessage(`{"n": 0}`)); err == nil || !strings.Contains(err.Error(), "input.n") {
		t.Fatalf("Normalize n=0: %v, want an error naming input.n", err)
	}
	// The first stage gets what the API stored: the input with defaults.
	ctx := tasks.WithStageInfo(context.Background(), tasks.StageInfo{JobID: "j", Stage: "echo", Index: 1, Total: 1, Attempt: 1})
	v, err := f.Pipelines[0].Stages[0].Run(ctx, got, nopProgress{})
	if err != nil || !sameJSON(v.(json.RawMessage), `{"data":"hi","n":5}`) {
		t.Fatalf("stage: %s %v", v, err)
	}
}

func sameJSON(a []byte, b string) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return string(xb) == string(yb)
}

type nopProgress struct{}

func (nopProgress) Report(float64, any) {}

func TestMistakes(t *testing.T) {
	stage := func(s string) string {
		return "pipelines:\n  - name: p\n    stages:\n      - name: s\n" + s
	}
	pipe := func(s string) string {
		return "pipelines:\n  - name: p\n" + s + "    stages:\n      - name: s\n        run: [true]\n"
	}
	tests := []struct {
		name string
		file string
		want []string
	}{
		{"empty", ``, []string{"the file is empty"}},
		{"bad yaml", "pipelines: [\n", []string{"not valid YAML or JSON", "line"}},
		{"not a mapping", "- a\n", []string{"must be a mapping"}},
		{"unknown top field", "pipeline: []\n", []string{`pipeline`, "unknown field", "pipelines"}},
		{"no pipelines", "pipelines: []\n", []string{"non-empty list"}},
		{"no name", "pipelines:\n  - stages: []\n", []string{`"(unnamed)"`, "name: missing"}},
		{"bad name", "pipelines:\n  - name: 'a b'\n    stages: []\n", []string{`"a b" is not a valid pipeline name`}},
		{"name not a string", "pipelines:\n  - name: [x]\n", []string{"name: must be a string"}},
		{"unknown pipeline field", pipe("    retries: 3\n"), []string{`pipeline "p"`, "retries: unknown field", "max_retries"}},
		{"bad timeout", pipe("    timeout: 30\n"), []string{`pipeline "p"`, "timeout", "with a unit"}},
		{"negative timeout", pipe("    timeout: -1s\n"), []string{"timeout", "above 0"}},
		{"bad retries", pipe("    max_retries: many\n"), []string{"max_retries", "whole number"}},
		{"input not a schema", pipe("    input: 3\n"), []string{"input", "JSON Schema"}},
		{"input not an object", pipe("    input: {type: array}\n"), []string{"input.type", `"object"`}},
		{"input property not a schema", pipe("    input: {properties: {a: 3}}\n"), []string{"input.properties.a"}},
		{"input schema invalid", pipe("    input: {properties: {a: {type: strin}}}\n"), []string{`pipeline "p": input: input schema`}},
		{"input default invalid", pipe("    input: {properties: {a: {type: integer, default: x}}}\n"), []string{`pipeline "p": input:`}},
		{"no stages", "pipelines:\n  - name: p\n", []string{`pipeline "p"`, "stages: missing"}},
		{"stages empty", "pipelines:\n  - name: p\n    stages: []\n", []string{"stages: must be a non-empty list"}},
		{"stage without name", "pipelines:\n  - name: p\n    stages:\n      - run: [true]\n", []string{"stages[0].name: missing"}},
		{"stage without run", stage(""), []string{"stages[0] (s).run: missing"}},
		{"run is a string", stage("        run: python3 stage.py\n"), []string{"run: must be a list", "[python3, stage.py]", "sh, -c"}},
		{"run is empty", stage("        run: []\n"), []string{"run: must be a non-empty list"}},
		{"run item a mapping", stage("        run: [python3, {a: 1}]\n"), []string{"run[1]: must be a string"}},
		{"unknown stage field", stage("        run: [true]\n        cmd: x\n"), []string{"stages[0] (s).cmd: unknown field", "run, dir, env"}},
		{"dir missing", stage("        run: [true]\n        dir: nowhere\n"), []string{"dir", "is not a directory"}},
		{"env not a mapping", stage("        run: [true]\n        env: [A=1]\n"), []string{"env: must be a mapping"}},
		{"env reserved", stage("        run: [true]\n        env: {STAGED_JOB_ID: x}\n"), []string{"env.STAGED_JOB_ID", "set by the worker"}},
		{"env bad name", stage("        run: [true]\n        env: {'A-B': x}\n"), []string{`"A-B" is not a valid variable name`}},
		{"stage timeout", stage("        run: [true]\n        timeout: soon\n"), []string{"stages[0] (s).timeout", "with a unit"}},
		{"weight", stage("        run: [true]\n        weight: 0\n"), []string{"weight: must be a number above 0"}},
		{"weight string", stage("        run: [true]\n        weight: heavy\n"), []string{"weight: must be a number above 0"}},
		{"duplicate stage", stage("        run: [true]\n      - name: s\n        run: [true]\n"), []string{`a second stage named "s"`}},
		{"duplicate pipeline", pipe("") + "  - name: p\n    stages:\n      - name: s\n        run: [true]\n", []string{`a second pipeline named "p"`, "line 2"}},
		{"field given twice", "pipelines:\n  - name: p\n    name: q\n", []string{"name: given twice"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("pipes.yaml", []byte(tt.file), t.TempDir())
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "pipelines file pipes.yaml") {
				t.Errorf("%q does not name the file", msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("%q does not say %q", msg, w)
				}
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if err == nil || !strings.Contains(err.Error(), "nope.yaml: no such file or directory") {
		t.Fatalf("error %v", err)
	}
}

func TestWarnsOfMissingCommand(t *testing.T) {
	f, err := Parse("p.yaml", []byte("pipelines:\n  - name: p\n    stages:\n      - name: s\n        run: [no-such-program-x]\n"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Warnings) != 1 || !strings.Contains(f.Warnings[0], `"no-such-program-x" not found`) {
		t.Fatalf("warnings %q", f.Warnings)
	}
}
