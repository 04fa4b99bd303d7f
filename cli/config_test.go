package cli

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"
)

// loadServeT loads the serve config from envm and the flags in args.
func loadServeT(t *testing.T, envm map[string]string, args ...string) (*Config, error) {
	t.Helper()
	var buf bytes.Buffer
	fs := newFlagSet("api", "", &buf)
	addFlags(fs, flagHelp, setRedis, setLogFormat, setAddr, setRetention, setRateLimit, setConcurrency, setQueues)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse: %v %s", err, buf.String())
	}
	return loadServe(newSource(fs, env(envm)), "json")
}

func TestLoadServeDefaults(t *testing.T) {
	c, err := loadServeT(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.RedisSet || c.Addr != ":8080" || c.Retention != 24*time.Hour || c.RateLimit != 100 ||
		c.Concurrency != 0 || c.LogFormat != "json" || c.APIKeys != nil {
		t.Errorf("defaults = %+v", c)
	}
}

func TestLoadServe(t *testing.T) {
	tests := []struct {
		name  string
		env   map[string]string
		args  []string
		check func(*Config) bool
	}{
		{
			name: "env", env: map[string]string{
				"STAGED_REDIS_URL": "rediss://u:p@redis.example:6380/2", "STAGED_ADDR": "127.0.0.1:9000",
				"STAGED_CONCURRENCY": "32", "STAGED_RETENTION": "7d", "STAGED_RATE_LIMIT": "0",
				"STAGED_API_KEYS": "alice=a-secret-0123456789, bob=b-secret-0123456789", "STAGED_ADMIN_KEYS": "ops=o-secret-0123456789", "STAGED_LOG_FORMAT": "text",
			},
			check: func(c *Config) bool {
				return c.RedisSet && c.RedisURL == "rediss://u:p@redis.example:6380/2" && c.Addr == "127.0.0.1:9000" &&
					c.Concurrency == 32 && c.Retention == 7*24*time.Hour && c.RateLimit == 0 && c.LogFormat == "text" &&
					len(c.APIKeys) == 2 && c.APIKeys[1] == (APIKey{"bob", "b-secret-0123456789"}) && len(c.AdminKeys) == 1
			},
		},
		{
			name: "flags win over env",
			env:  map[string]string{"STAGED_ADDR": ":1", "STAGED_CONCURRENCY": "nonsense", "STAGED_RETENTION": "1h"},
			args: []string{"--addr", ":2", "--concurrency", "4", "--retention", "90m", "--rate-limit", "2.5"},
			check: func(c *Config) bool {
				return c.Addr == ":2" && c.Concurrency == 4 && c.Retention == 90*time.Minute && c.RateLimit == 2.5
			},
		},
		{
			name: "blank env is unset", env: map[string]string{"STAGED_REDIS_URL": "  ", "STAGED_ADDR": ""},
			check: func(c *Config) bool { return !c.RedisSet && c.Addr == AddrDefault },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadServeT(t, tt.env, tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Errorf("config = %+v", c)
			}
		})
	}
}

func TestLoadServeInvalid(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		want    string // substring of the error
		secrets []string
	}{
		{name: "redis scheme", env: map[string]string{"STAGED_REDIS_URL": "http://localhost:6379"}, want: "STAGED_REDIS_URL: http://localhost:6379: the scheme must be redis://, rediss://, redis-sentinel:// or redis+cluster://"},
		{name: "redis no host", env: map[string]string{"STAGED_REDIS_URL": "redis://"}, want: "STAGED_REDIS_URL: redis://: no host"},
		{name: "redis bad db, password hidden", env: map[string]string{"STAGED_REDIS_URL": "redis://:hunter2@localhost:6379/x"},
			want: "STAGED_REDIS_URL: redis://:xxxxx@localhost:6379/x", secrets: []string{"hunter2"}},
		{name: "redis bad port, password hidden", env: map[string]string{"STAGED_REDIS_URL": "redis://u:hunter2@localhost:notaport/0"},
			want: "STAGED_REDIS_URL: not a valid URL", secrets: []string{"hunter2"}},
		{name: "redis flag named", args: []string{"--redis", "localhost:6379"}, want: "--redis:"},
		{name: "addr", env: map[string]string{"STAGED_ADDR": "8080"}, want: `STAGED_ADDR: "8080" is not a listen address`},
		{name: "addr port", env: map[string]string{"STAGED_ADDR": ":99999"}, want: "STAGED_ADDR: \":99999\" has no valid port"},
		{name: "concurrency", env: map[string]string{"STAGED_CONCURRENCY": "0"}, want: "STAGED_CONCURRENCY: \"0\" is not a whole number between 1 and"},
		{name: "concurrency flag", args: []string{"--concurrency", "many"}, want: "--concurrency: \"many\""},
		{name: "retention", env: map[string]string{"STAGED_RETENTION": "forever"}, want: `STAGED_RETENTION: "forever" is not a positive duration`},
		{name: "retention negative", env: map[string]string{"STAGED_RETENTION": "-1h"}, want: "STAGED_RETENTION"},
		{name: "rate limit", env: map[string]string{"STAGED_RATE_LIMIT": "-5"}, want: "STAGED_RATE_LIMIT: \"-5\""},
		{name: "rate limit NaN", env: map[string]string{"STAGED_RATE_LIMIT": "NaN"}, want: "STAGED_RATE_LIMIT"},
		{name: "log format", env: map[string]string{"STAGED_LOG_FORMAT": "xml"}, want: `STAGED_LOG_FORMAT: "xml" is not a log format`},
		{name: "keys without =", env: map[string]string{"STAGED_API_KEYS": "alice=s3cr3t-a,hunter2"},
			want: "STAGED_API_KEYS: entry 2 has no '='", secrets: []string{"hunter2", "s3cr3t-a"}},
		{name: "keys bad name", env: map[string]string{"STAGED_API_KEYS": "al ice=hunter2"},
			want: "STAGED_API_KEYS: entry 1: the name", secrets: []string{"hunter2"}},
		{name: "keys empty secret", env: map[string]string{"STAGED_ADMIN_KEYS": "ops="}, want: `STAGED_ADMIN_KEYS: key "ops" has an empty secret`},
		{name: "keys duplicate name", env: map[string]string{"STAGED_API_KEYS": "a=hunter2,a=hunter3"},
			want: `key name "a" appears twice`, secrets: []string{"hunter2", "hunter3"}},
		{name: "keys duplicate secret", env: map[string]string{"STAGED_API_KEYS": "a=hunter2,b=hunter2"},
			want: `key "b" has the same secret`, secrets: []string{"hunter2"}},
		{name: "keys too short", env: map[string]string{"STAGED_API_KEYS": "a=hunter2-hunter"},
			want: `STAGED_API_KEYS: the secret of key "a" is too short (14 characters; at least 16)`, secrets: []string{"hunter2-hunter"}},
		{name: "admin key too short", env: map[string]string{"STAGED_ADMIN_KEYS": "ops=x"},
			want: `STAGED_ADMIN_KEYS: the secret of key "ops" is too short`},
		{name: "keys placeholder", env: map[string]string{"STAGED_API_KEYS": "a=CHANGE-ME-to-a-long-random-secret"},
			want: `STAGED_API_KEYS: the secret of key "a" is a placeholder`, secrets: []string{"CHANGE-ME-to-a-long-random-secret"}},
		{name: "keys only commas", env: map[string]string{"STAGED_API_KEYS": ",,"}, want: "STAGED_API_KEYS: no keys"},
		{name: "all errors at once", env: map[string]string{"STAGED_ADDR": "x", "STAGED_LOG_FORMAT": "xml"}, want: "STAGED_ADDR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadServeT(t, tt.env, tt.args...)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			for _, s := range tt.secrets {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error shows secret %q: %s", s, err)
				}
			}
		})
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{in: "24h", want: 24 * time.Hour},
		{in: "7d", want: 7 * 24 * time.Hour},
		{in: "90m", want: 90 * time.Minute},
		{in: "1.5d", err: true},
		{in: "d", err: true},
		{in: "", err: true},
	}
	for _, tt := range tests {
		got, err := parseDuration(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("parseDuration(%q) = %v, %v", tt.in, got, err)
		}
	}
}

func TestAPIKeyStringHidesSecret(t *testing.T) {
	if s := (APIKey{"alice", "hunter2"}).String(); strings.Contains(s, "hunter2") {
		t.Errorf("String() = %q", s)
	}
}

// .env.example's keys are placeholders: copied as they are, the API must
// refuse to start, naming the variable.
func TestEnvExamplePlaceholdersRefused(t *testing.T) {
	b, err := os.ReadFile("../.env.example")
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, line := range strings.Split(string(b), "\n") {
		name, value, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok || strings.HasPrefix(name, "#") || !strings.HasSuffix(name, "_KEYS") {
			continue
		}
		found++
		_, err := loadServeT(t, map[string]string{name: value})
		if err == nil || !strings.HasPrefix(err.Error(), name+": ") || !strings.Contains(err.Error(), "placeholder") {
			t.Errorf("%s from .env.example: error %v, want it refused as a placeholder", name, err)
		}
	}
	if found == 0 {
		t.Fatal(".env.example sets no *_KEYS variable")
	}
}
