package cli

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/staged-dev/staged/internal/redisurl"
	"github.com/staged-dev/staged/server"
	"github.com/staged-dev/staged/worker"
)

// Configuration defaults.
const (
	RedisURLDefault  = redisurl.Default
	AddrDefault      = ":8080"
	ServerDefault    = "http://localhost:8080"
	RetentionDefault = 24 * time.Hour
	RateLimitDefault = 100.0
	// RedisTimeout bounds dialing, reading and writing Redis, so that the
	// API answers 503 quickly when Redis is down.
	RedisTimeout = redisurl.Timeout
	// maxConcurrency is the largest STAGED_CONCURRENCY accepted.
	maxConcurrency = 10000
)

// Config is the configuration of every subcommand, from the environment and
// then the flags. The zero value of an optional field means its default.
type Config struct {
	// RedisURL is the Redis URL (redis://, rediss://, redis-sentinel://,
	// redis+cluster://; see internal/redisurl); RedisSet is false when
	// neither STAGED_REDIS_URL nor --redis gave one (dev then embeds a
	// Redis; api and worker use RedisURLDefault).
	RedisURL string
	RedisSet bool
	// Addr is the API's listen address.
	Addr string
	// Server is the URL of the API the CLI talks to.
	Server string
	// APIKey is the secret the CLI sends as a bearer token (STAGED_API_KEY).
	APIKey string
	// Concurrency is the number of jobs a worker runs at once; 0 means the
	// worker's default.
	Concurrency int
	// Retention is how long a finished job stays readable.
	Retention time.Duration
	// Queues are the asynq queues (STAGED_QUEUES): the ones a submit may
	// name, and the ones a worker serves with their weights; never empty
	// (default: default=1).
	Queues []Queue
	// APIKeys and AdminKeys are the keys the API accepts; each key's name
	// is a tenant. Empty means no authentication.
	APIKeys   []APIKey
	AdminKeys []APIKey
	// KeysFile is the API keys file (STAGED_API_KEYS_FILE) and FileKeys
	// the keys it holds, by digest; api and dev read it (keys.go).
	KeysFile string
	FileKeys []server.Key
	// RateLimit is requests per second per key; 0 is off.
	RateLimit float64
	// TenantMaxLive is the live jobs (queued or running) a tenant may
	// have: 0 means the server's default, negative no limit.
	TenantMaxLive int
	// WaitReplicas is how many replicas must have a new job before a
	// submit answers 202; -1 (the default) means one when the primary has
	// replicas at start. WaitTimeout bounds the wait (0: the server's).
	WaitReplicas int
	WaitTimeout  time.Duration
	// MaxStreamsPerKey and MaxWaitsPerKey cap the event streams and the
	// long polls one key holds open per API process (server.Config); 0
	// means the server's default, -1 no cap.
	MaxStreamsPerKey, MaxWaitsPerKey int
	// KeepAllEvents keeps finished jobs' event streams whole, for
	// tests and debugging (STAGED_KEEP_ALL_EVENTS, no flag).
	KeepAllEvents bool
	// MonitoringWrite lets the dashboard change queues and tasks; it is
	// read-only otherwise.
	MonitoringWrite bool
	// LogFormat is "json" or "text".
	LogFormat string
}

// APIKey is one name=secret entry of STAGED_API_KEYS or STAGED_ADMIN_KEYS.
type APIKey struct {
	Name   string
	Secret string
}

// String never shows the secret.
func (k APIKey) String() string { return k.Name + "=<redacted>" }

// configError is an invalid setting; the message names the variable or flag.
type configError struct{ msg string }

func (e *configError) Error() string { return e.msg }

func invalid(from, format string, args ...any) error {
	return &configError{msg: from + ": " + fmt.Sprintf(format, args...)}
}

// setting is one configurable value: its flag (if the subcommand has it)
// and its environment variable.
type setting struct {
	flag, env string
}

// Settings every subcommand may read.
var (
	setRedis       = setting{"redis", "STAGED_REDIS_URL"}
	setAddr        = setting{"addr", "STAGED_ADDR"}
	setServer      = setting{"server", "STAGED_SERVER"}
	setAPIKey      = setting{"", "STAGED_API_KEY"}
	setConcurrency = setting{"concurrency", "STAGED_CONCURRENCY"}
	setRetention   = setting{"retention", "STAGED_RETENTION"}
	setAPIKeys     = setting{"", "STAGED_API_KEYS"}
	setAdminKeys   = setting{"", "STAGED_ADMIN_KEYS"}
	setRateLimit   = setting{"rate-limit", "STAGED_RATE_LIMIT"}
	setAPIKeysFile = setting{"api-keys-file", "STAGED_API_KEYS_FILE"}
	setMonWrite    = setting{"monitoring-write", "STAGED_MONITORING_WRITE"}
	setLogFormat   = setting{"log-format", "STAGED_LOG_FORMAT"}
	setTenantLive  = setting{"tenant-max-live", "STAGED_TENANT_MAX_LIVE"}
	setMaxStreams  = setting{"max-streams-per-key", "STAGED_MAX_STREAMS_PER_KEY"}
	setMaxWaits    = setting{"max-waits-per-key", "STAGED_MAX_WAITS_PER_KEY"}
	setKeepEvents  = setting{"", "STAGED_KEEP_ALL_EVENTS"}
	setWaitRepl    = setting{"", "STAGED_REDIS_WAIT_REPLICAS"}
	setWaitTimeout = setting{"", "STAGED_REDIS_WAIT_TIMEOUT"}
)

// source reads settings: a flag given on the command line wins over the
// environment variable, and a blank variable counts as unset.
type source struct {
	fs     *flag.FlagSet
	getenv func(string) string
	given  map[string]bool
}

func newSource(fs *flag.FlagSet, getenv func(string) string) *source {
	s := &source{fs: fs, getenv: getenv, given: map[string]bool{}}
	fs.Visit(func(f *flag.Flag) { s.given[f.Name] = true })
	return s
}

// get returns the setting's value and where it came from ("--flag" or the
// variable's name), or ok=false when it is not set.
func (s *source) get(st setting) (val, from string, ok bool) {
	if st.flag != "" && s.given[st.flag] {
		return s.fs.Lookup(st.flag).Value.String(), "--" + st.flag, true
	}
	if v := strings.TrimSpace(s.getenv(st.env)); v != "" {
		return v, st.env, true
	}
	return "", st.env, false
}

// addFlags defines the flags of settings on fs, as strings whose blank
// default means "from the environment" (booleans as boolean flags).
func addFlags(fs *flag.FlagSet, help map[setting]string, sts ...setting) {
	for _, st := range sts {
		if boolSettings[st] {
			fs.Bool(st.flag, false, help[st]+" (env "+st.env+")")
			continue
		}
		fs.String(st.flag, "", help[st]+" (env "+st.env+")")
	}
}

// boolSettings are the settings whose flag is a boolean.
var boolSettings = map[setting]bool{setMonWrite: true}

// parseBool is strconv.ParseBool that also takes yes/no and on/off.
func parseBool(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "yes", "on":
		return true, nil
	case "no", "off":
		return false, nil
	}
	return strconv.ParseBool(v)
}

var flagHelp = map[setting]string{
	setRedis:       "Redis URL: redis://, rediss://, redis-sentinel://s1:p1,s2:p2/0?master=NAME or redis+cluster://n1:p1,n2:p2",
	setAddr:        "API listen address (default " + AddrDefault + ")",
	setServer:      "URL of the staged API (default " + ServerDefault + ")",
	setConcurrency: "jobs a worker runs at once (default: the worker's)",
	setRetention:   "how long a finished job stays readable (default 24h)",
	setRateLimit:   "requests per second per API key, 0 = off (default 100)",
	setAPIKeysFile: "file of API keys by SHA-256 digest: lines \"name sha256:<hex> [admin]\"",
	setMonWrite:    "let the dashboard change queues and tasks (default read-only)",
	setLogFormat:   "log format, json or text",
	setTenantLive:  "live jobs (queued or running) one tenant may have, 0 = no limit (default 10000)",
	setMaxStreams:  "event streams one key may hold open per API process, 0 = no cap (default 100); past it 429",
	setMaxWaits:    "long polls (?wait) one key may hold per API process, 0 = no cap (default 100); past it 429",
}

// loadServe reads and validates every server-side setting, for dev, api and
// worker alike, so a bad value fails at start whichever process reads it.
// logFormat is the default log format of the subcommand.
func loadServe(s *source, logFormat string) (*Config, error) {
	c := &Config{Addr: AddrDefault, Retention: RetentionDefault, RateLimit: RateLimitDefault, LogFormat: logFormat, WaitReplicas: -1,
		Queues: defaultQueues()}
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	if v, from, ok := s.get(setRedis); ok {
		add(checkRedisURL(from, v))
		c.RedisURL, c.RedisSet = v, true
	}
	if v, from, ok := s.get(setAddr); ok {
		add(checkAddr(from, v))
		c.Addr = v
	}
	if v, from, ok := s.get(setConcurrency); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxConcurrency {
			add(invalid(from, "%q is not a whole number between 1 and %d", v, maxConcurrency))
		}
		c.Concurrency = n
	}
	if v, from, ok := s.get(setRetention); ok {
		d, err := parseDuration(v)
		if err != nil || d <= 0 {
			add(invalid(from, "%q is not a positive duration such as 24h, 90m or 7d", v))
		}
		c.Retention = d
	}
	var err error
	if v, from, ok := s.get(setQueues); ok {
		if qs, err := parseQueues(from, v); err != nil {
			add(err)
		} else {
			c.Queues = qs
		}
	}
	if v, from, ok := s.get(setAPIKeys); ok {
		c.APIKeys, err = parseKeys(from, v)
		add(err)
	}
	if v, from, ok := s.get(setAdminKeys); ok {
		c.AdminKeys, err = parseKeys(from, v)
		add(err)
	}
	if v, from, ok := s.get(setRateLimit); ok {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 || f != f || f > 1e9 {
			add(invalid(from, "%q is not a number of requests per second ≥ 0 (0 turns the limit off)", v))
		}
		c.RateLimit = f
	}
	if v, from, ok := s.get(setTenantLive); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			add(invalid(from, "%q is not a whole number ≥ 0 (0 turns the limit off)", v))
		}
		c.TenantMaxLive = n
		if n == 0 {
			c.TenantMaxLive = -1
		}
	}
	if v, from, ok := s.get(setWaitRepl); ok && v != "auto" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 16 {
			add(invalid(from, "%q is not auto or a number of replicas 0..16 (0 turns the wait off)", v))
		}
		c.WaitReplicas = n
	}
	if v, from, ok := s.get(setWaitTimeout); ok {
		d, err := parseDuration(v)
		if err != nil || d <= 0 {
			add(invalid(from, "%q is not a positive duration such as 500ms or 2s", v))
		}
		c.WaitTimeout = d
	}
	for _, cp := range []struct {
		set setting
		dst *int
	}{{setMaxStreams, &c.MaxStreamsPerKey}, {setMaxWaits, &c.MaxWaitsPerKey}} {
		if v, from, ok := s.get(cp.set); ok {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				add(invalid(from, "%q is not a whole number ≥ 0 (0 turns the cap off)", v))
			}
			*cp.dst = n
			if n == 0 {
				*cp.dst = -1
			}
		}
	}
	if v, from, ok := s.get(setKeepEvents); ok {
		b, err := parseBool(v)
		if err != nil {
			add(invalid(from, "%q is not a boolean: use 1 or 0", v))
		}
		c.KeepAllEvents = b
	}
	if v, from, ok := s.get(setMonWrite); ok {
		b, err := parseBool(v)
		if err != nil {
			add(invalid(from, "%q is not a boolean: use 1 or 0 (true/false)", v))
		}
		c.MonitoringWrite = b
	}
	if v, from, ok := s.get(setLogFormat); ok {
		if v != "json" && v != "text" {
			add(invalid(from, "%q is not a log format: use json or text", v))
		}
		c.LogFormat = v
	}
	return c, errors.Join(errs...)
}

// loadCLI reads the settings of the CLI subcommands.
func loadCLI(s *source) (*Config, error) {
	c := &Config{Server: ServerDefault}
	if v, from, ok := s.get(setServer); ok {
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, invalid(from, "%q is not an http:// or https:// URL such as %s", redactAny(v), ServerDefault)
		}
		c.Server = v
	}
	if v, _, ok := s.get(setAPIKey); ok {
		c.APIKey = v
	}
	return c, nil
}

func checkAddr(from, v string) error {
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		return invalid(from, "%q is not a listen address such as :8080 or 127.0.0.1:8080", v)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return invalid(from, "%q has no valid port (0-65535)", v)
	}
	return nil
}

func checkRedisURL(from, v string) error {
	_, err := redisurl.Parse(v)
	if err != nil {
		return invalid(from, "%v", err)
	}
	return nil
}

// redactAny redacts raw when it parses as a URL, else hides it wholesale if
// it could hold credentials.
func redactAny(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	if strings.Contains(raw, "@") {
		return "<unparsable URL, not shown>"
	}
	return raw
}

// parseKeys parses "name=secret,name2=secret2". Errors name the entry by
// position and never show a secret.
func parseKeys(from, v string) ([]APIKey, error) {
	var keys []APIKey
	names, secrets := map[string]bool{}, map[string]bool{}
	for i, entry := range strings.Split(v, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		name, secret, ok := strings.Cut(entry, "=")
		name, secret = strings.TrimSpace(name), strings.TrimSpace(secret)
		switch {
		case !ok:
			return nil, invalid(from, "entry %d has no '=': use name=secret,name2=secret2", i+1)
		case !validKeyName(name):
			return nil, invalid(from, "entry %d: the name must be 1-64 letters, digits, '-', '_' or '.'", i+1)
		case secret == "":
			return nil, invalid(from, "key %q has an empty secret", name)
		case names[name]:
			return nil, invalid(from, "key name %q appears twice", name)
		case secrets[secret]:
			return nil, invalid(from, "key %q has the same secret as another key", name)
		}
		names[name], secrets[secret] = true, true
		keys = append(keys, APIKey{Name: name, Secret: secret})
	}
	if len(keys) == 0 {
		return nil, invalid(from, "no keys: use name=secret,name2=secret2, or leave it unset")
	}
	for _, k := range keys {
		if why := weakSecret(k.Secret); why != "" {
			return nil, invalid(from, "the secret of key %q %s: use a long random secret, e.g. `openssl rand -hex 32`", k.Name, why)
		}
	}
	return keys, nil
}

// MinSecretLength is the shortest API key secret accepted.
const MinSecretLength = 16

// placeholderSecrets are parts of the example secrets in .env.example,
// the README and the like: a secret containing one was copied, not made.
var placeholderSecrets = []string{"change-me", "changeme", "change_me", "replace-me", "replaceme", "your-secret", "example-secret", "placeholder"}

// weakSecret says why secret must not guard an API ("is a placeholder",
// "is too short"), or "" when it may. It never repeats the secret.
func weakSecret(secret string) string {
	lower := strings.ToLower(secret)
	for _, p := range placeholderSecrets {
		if strings.Contains(lower, p) {
			return "is a placeholder from the documentation (it contains " + strconv.Quote(p) + ")"
		}
	}
	if len(secret) < MinSecretLength {
		return fmt.Sprintf("is too short (%d characters; at least %d)", len(secret), MinSecretLength)
	}
	return ""
}

func validKeyName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// parseDuration is time.ParseDuration that also takes whole days ("7d").
func parseDuration(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n < 0 || n > 3650 {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}

// newLogger returns the slog logger of a serving subcommand on w.
func newLogger(format string, w interface{ Write([]byte) (int, error) }) *slog.Logger {
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, nil))
	}
	return slog.New(slog.NewJSONHandler(w, nil))
}

// The worker's metrics listener: STAGED_METRICS_ADDR or --metrics-addr, for
// staged worker (staged dev serves the worker's metrics on the API's
// /metrics instead).
var setMetricsAddr = setting{"metrics-addr", "STAGED_METRICS_ADDR"}

func init() {
	flagHelp[setMetricsAddr] = "where the worker serves Prometheus /metrics; off (or --metrics-addr=) for nowhere (default " +
		worker.MetricsAddrDefault + ")"
}

// loadMetricsAddr returns the worker's metrics listen address, "" for
// none, and whether it was set (rather than the default).
func loadMetricsAddr(s *source) (addr string, set bool, err error) {
	v, from, ok := s.get(setMetricsAddr)
	switch {
	case !ok:
		return worker.MetricsAddrDefault, false, nil
	case v == "" || v == "off":
		return "", true, nil
	}
	return v, true, checkAddr(from, v)
}
