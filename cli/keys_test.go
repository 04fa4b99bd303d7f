package cli

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/staged-dev/staged/server"
)

func digestOf(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return "sha256:" + hex.EncodeToString(sum[:])
}

func TestParseKeysFile(t *testing.T) {
	good := "# keys\n\nacme " + digestOf("a1") + "\n  acme\t" + digestOf("a2") + "   # rotated\nops " + digestOf("o") + " admin\n"
	keys, err := parseKeysFile([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	want := []server.Key{server.KeyFromSecret("acme", "a1", false), server.KeyFromSecret("acme", "a2", false), server.KeyFromSecret("ops", "o", true)}
	if len(keys) != len(want) {
		t.Fatalf("keys %v", keys)
	}
	for i := range want {
		if keys[i] != want[i] {
			t.Errorf("key %d = %+v, want %+v", i, keys[i], want[i])
		}
	}

	bad := []struct{ name, file, want string }{
		{"empty", "# nothing\n", "no keys"},
		{"secret instead of digest", "acme s3cret-value\n", "line 1: the digest must be sha256:"},
		{"short digest", "acme sha256:abcd\n", "line 1: the digest"},
		{"bad flag", "acme " + digestOf("x") + " root\n", "line 1: want"},
		{"too many fields", "acme " + digestOf("x") + " admin extra\n", "line 1: want"},
		{"bad name", "\nac:me " + digestOf("x") + "\n", "line 2: the name"},
		{"same digest twice", "a " + digestOf("x") + "\nb " + digestOf("x") + "\n", "line 2 has the same digest as line 1"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseKeysFile([]byte(tt.file))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("the error shows the line's content: %v", err)
			}
		})
	}
}

func TestLoadKeysFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "keys")
	os.WriteFile(file, []byte("acme "+digestOf("a")+"\n"), 0o600)
	load := func(envm map[string]string, args ...string) (*Config, error) {
		var buf bytes.Buffer
		fs := newFlagSet("api", "", &buf)
		addFlags(fs, flagHelp, setAPIKeysFile, setMonWrite)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		src := newSource(fs, env(envm))
		c, err := loadServe(src, "json")
		if err != nil {
			return nil, err
		}
		return c, loadKeysFile(src, c)
	}
	c, err := load(map[string]string{"STAGED_API_KEYS_FILE": file})
	if err != nil || len(c.FileKeys) != 1 || c.FileKeys[0].Name != "acme" || c.KeysFile != file {
		t.Fatalf("from env: %+v %v", c, err)
	}
	if c, err = load(nil, "--api-keys-file", file, "--monitoring-write"); err != nil || len(c.FileKeys) != 1 || !c.MonitoringWrite {
		t.Fatalf("from flags: %+v %v", c, err)
	}
	if _, err := load(map[string]string{"STAGED_API_KEYS_FILE": filepath.Join(dir, "missing")}); err == nil ||
		!strings.HasPrefix(err.Error(), "STAGED_API_KEYS_FILE: cannot read the keys file") {
		t.Errorf("missing file: %v", err)
	}
	if _, err := load(map[string]string{"STAGED_MONITORING_WRITE": "maybe"}); err == nil || !strings.Contains(err.Error(), "STAGED_MONITORING_WRITE") {
		t.Errorf("bad boolean: %v", err)
	}
	for _, v := range []string{"1", "true", "yes", "on"} {
		if c, err := load(map[string]string{"STAGED_MONITORING_WRITE": v}); err != nil || !c.MonitoringWrite {
			t.Errorf("STAGED_MONITORING_WRITE=%s: %+v %v", v, c, err)
		}
	}
}

func TestServerKeys(t *testing.T) {
	c := &Config{
		APIKeys:   []APIKey{{"acme", "a"}, {"ops", "o"}},
		AdminKeys: []APIKey{{"ops", "o"}, {"root", "r"}},
		FileKeys:  []server.Key{server.KeyFromSecret("globex", "g", false)},
		KeysFile:  "keys.txt",
	}
	keys, err := serverKeys(c)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, k := range keys {
		got[k.String()] = true
	}
	if len(keys) != 4 || !got["acme"] || !got["ops (admin)"] || !got["root (admin)"] || !got["globex"] {
		t.Errorf("keys %v", keys)
	}
	c.FileKeys = []server.Key{server.KeyFromSecret("mallory", "a", false)}
	if _, err := serverKeys(c); err == nil || !strings.Contains(err.Error(), `keys.txt: key "mallory" has the same secret as key "acme" of STAGED_API_KEYS`) {
		t.Errorf("one secret under two names: %v", err)
	}
}

func TestWarnKeys(t *testing.T) {
	tests := []struct {
		name   string
		keys   []server.Key
		format string
		want   []string
		not    []string
	}{
		{"open, text", nil, "text", []string{"NO API KEYS", "the API is open"}, nil},
		{"open, json", nil, "json", []string{"the API is open"}, []string{"NO API KEYS"}},
		{"no admin", []server.Key{server.KeyFromSecret("a", "s3cret", false)}, "json", []string{"nobody can open the dashboard"}, []string{"the API is open", "s3cret"}},
		{"keys", []server.Key{server.KeyFromSecret("a", "s3cret", true)}, "json", []string{`"admin_keys":1`}, []string{"the API is open", "s3cret", "WARN"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			log := slog.New(slog.NewJSONHandler(&out, nil))
			warnKeys(log, &out, tt.keys, &Config{LogFormat: tt.format})
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			for _, n := range tt.not {
				if strings.Contains(out.String(), n) {
					t.Errorf("output has %q:\n%s", n, out.String())
				}
			}
		})
	}
}
