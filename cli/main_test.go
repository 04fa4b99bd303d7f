package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// env returns a getenv over m.
func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// runT runs the command line and returns its exit status and output.
func runT(t *testing.T, ctx context.Context, envm map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(ctx, args, env(envm), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestRunUsage(t *testing.T) {
	const id = "0b6c6f8e-1f1a-4c1e-9a55-3f0f1b7d2a10"
	tests := []struct {
		name       string
		args       []string
		env        map[string]string
		want       int
		wantOut    string // substring of stdout
		wantErr    string // substring of stderr
		notInError string // must not appear in stderr (secrets)
	}{
		{name: "no command", args: nil, want: exitUsage, wantErr: "Usage:"},
		{name: "unknown command", args: []string{"frobnicate"}, want: exitUsage, wantErr: `unknown command "frobnicate"`},
		{name: "help", args: []string{"help"}, want: exitOK, wantOut: "staged submit TYPE"},
		{name: "--help", args: []string{"--help"}, want: exitOK, wantOut: "STAGED_REDIS_URL"},
		{name: "help of a command", args: []string{"help", "submit"}, want: exitOK, wantOut: "-idempotency-key"},
		{name: "command -h", args: []string{"status", "-h"}, want: exitOK, wantOut: "Usage: staged status ID"},
		{name: "version", args: []string{"version"}, want: exitOK, wantOut: "staged dev (go1."},
		{name: "submit without type", args: []string{"submit"}, want: exitUsage, wantErr: "exactly one job type"},
		{name: "submit two types", args: []string{"submit", "a", "b"}, want: exitUsage, wantErr: "exactly one job type"},
		{name: "submit unknown flag", args: []string{"submit", "chain", "--frob"}, want: exitUsage, wantErr: "flag provided but not defined: -frob"},
		{name: "submit bad retention", args: []string{"submit", "chain", "--retention", "soon"}, want: exitUsage, wantErr: `--retention: "soon" is not a positive duration`},
		{name: "submit zero timeout", args: []string{"submit", "chain", "--timeout", "0s"}, want: exitUsage, wantErr: "--timeout"},
		{name: "submit bad max-retries", args: []string{"submit", "chain", "--max-retries", "-1"}, want: exitUsage, wantErr: "--max-retries"},
		{name: "submit invalid JSON", args: []string{"submit", "chain", "--input", "{"}, want: exitUsage, wantErr: "--input: not valid JSON"},
		{name: "submit non-object input", args: []string{"submit", "chain", "--input", "[1]"}, want: exitUsage, wantErr: "must be a JSON object"},
		{name: "submit missing input file", args: []string{"submit", "chain", "--input", "@/nonexistent/in.json"}, want: exitUsage, wantErr: "--input: open /nonexistent/in.json"},
		{name: "status without id", args: []string{"status"}, want: exitUsage, wantErr: "exactly one job ID"},
		{name: "status bad id", args: []string{"status", "nope"}, want: exitUsage, wantErr: `"nope" is not a job ID`},
		{name: "watch two ids", args: []string{"watch", id, id}, want: exitUsage, wantErr: "exactly one job ID"},
		{name: "cancel bad id", args: []string{"cancel", "../x"}, want: exitUsage, wantErr: "is not a job ID"},
		{
			name: "bad STAGED_SERVER", args: []string{"status", id}, env: map[string]string{"STAGED_SERVER": "localhost:8080"},
			want: exitUsage, wantErr: `STAGED_SERVER: "localhost:8080" is not an http:// or https:// URL`,
		},
		{
			name: "bad --server wins over a good env", args: []string{"status", "--server", "ftp://x", id},
			env: map[string]string{"STAGED_SERVER": "http://localhost:1"}, want: exitUsage, wantErr: "--server:",
		},
		{
			name: "--server password is not shown", args: []string{"status", "--server", "ftp://u:hunter2@x", id},
			want: exitUsage, wantErr: "--server:", notInError: "hunter2",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runT(t, context.Background(), tt.env, tt.args...)
			if code != tt.want {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.want, out, errOut)
			}
			if !strings.Contains(out, tt.wantOut) {
				t.Errorf("stdout %q does not contain %q", out, tt.wantOut)
			}
			if !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("stderr %q does not contain %q", errOut, tt.wantErr)
			}
			if tt.notInError != "" && strings.Contains(errOut, tt.notInError) {
				t.Errorf("stderr shows %q: %s", tt.notInError, errOut)
			}
		})
	}
}

func TestParseArgsAnyOrder(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantPos string
		wait    bool
	}{
		{name: "flags after", args: []string{"chain", "--wait"}, wantPos: "[chain]", wait: true},
		{name: "flags before", args: []string{"--wait", "chain"}, wantPos: "[chain]", wait: true},
		{name: "mixed", args: []string{"a", "--wait", "b"}, wantPos: "[a b]", wait: true},
		{name: "after --", args: []string{"--", "--wait"}, wantPos: "[--wait]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			fs := newFlagSet("x", "", &buf)
			wait := fs.Bool("wait", false, "")
			pos, _, done := parseArgs(fs, tt.args, &buf)
			if done {
				t.Fatalf("done: %s", buf.String())
			}
			if got := strings.Join(pos, " "); "["+got+"]" != tt.wantPos || *wait != tt.wait {
				t.Errorf("pos [%s] wait %v, want %s wait %v", got, *wait, tt.wantPos, tt.wait)
			}
		})
	}
}
