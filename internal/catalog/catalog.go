// Package catalog is the pipeline catalogue in Redis: every worker
// publishes the definitions of the pipelines it runs (api.Definition)
// and its own instance (id, host, pipelines, last heartbeat), refreshed by
// a heartbeat; the API reads it to accept, validate and route jobs without
// any pipeline code of its own.
//
// Keys (every one with a TTL, no command touches two keys, so it is
// Redis Cluster safe; none is written per job):
//
//	staged:catalog:instances              zset instance id -> last heartbeat (ms); TTL DefinitionTTL
//	staged:catalog:instance:{id}          JSON Instance; TTL InstanceTTL (3 heartbeats)
//	staged:catalog:definitions            zset "name\x00digest" -> last heartbeat (ms); TTL DefinitionTTL
//	staged:catalog:def:<digest>           hash def=JSON Definition, first=first publication (ms); TTL DefinitionTTL
//
// A worker publishes on the channel staged:catalog when it starts, stops
// or publishes a definition new to the catalogue, so API processes refresh
// at once; they also refresh every few seconds, for heartbeats.
package catalog

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/tasks"
)

// Defaults.
const (
	// HeartbeatDefault is how often a worker refreshes its catalogue keys.
	HeartbeatDefault = 5 * time.Second
	// DefinitionTTLDefault is how long a pipeline stays in the catalogue
	// after its last worker's last heartbeat: submits of it are accepted
	// (with a "no live worker" warning) until then, and 422 after.
	DefinitionTTLDefault = 24 * time.Hour
	// OrphanAfterDefault is how long a queued job waits for a worker that
	// runs the definition it was accepted under before it fails.
	OrphanAfterDefault = 10 * time.Minute
)

const (
	keyPrefix      = "staged:catalog:"
	instancesKey   = keyPrefix + "instances"
	definitionsKey = keyPrefix + "definitions"
	// Channel carries "changed" when a worker starts, stops or publishes a
	// new definition.
	Channel = keyPrefix + "changed"
)

func instanceKey(id string) string { return keyPrefix + "instance:{" + id + "}" }

// defKey is the hash of one definition; its digest covers its name.
func defKey(digest string) string { return keyPrefix + "def:" + digest }

func defMember(name, digest string) string { return name + "\x00" + digest }

// Instance is one worker process as the catalogue shows it.
type Instance struct {
	ID        string        `json:"id"`
	Host      string        `json:"host"`
	PID       int           `json:"pid"`
	Pipelines []PipelineRef `json:"pipelines"`
	StartedAt time.Time     `json:"started_at"`
	// Heartbeat is the instance's last heartbeat; ExpiresAt is when it
	// counts as gone without another one.
	Heartbeat time.Time `json:"last_heartbeat"`
	ExpiresAt time.Time `json:"expires_at"`
}

// PipelineRef names one definition of a pipeline.
type PipelineRef struct {
	Name   string `json:"name"`
	Digest string `json:"digest"`
}

// NewInstanceID returns a random instance id.
func NewInstanceID() string {
	b := make([]byte, 8)
	rand.Read(b)
	host, _ := os.Hostname()
	return fmt.Sprintf("%s-%d-%s", safeName(host, 32), os.Getpid(), hex.EncodeToString(b[:4]))
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// safeName makes s usable inside a key or a queue name: no braces (hash
// tags), colons or spaces, at most n bytes.
func safeName(s string, n int) string {
	if !isSafeName(s) {
		s = unsafeChars.ReplaceAllString(s, "_")
	}
	if len(s) > n {
		s = s[:n]
	}
	if s == "" {
		s = "_"
	}
	return s
}

// isSafeName reports whether s has no character unsafeChars matches: the
// common case, which needs no regexp (QueueName is called per submit).
func isSafeName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// QueueName is the asynq queue of jobs of pipeline name with definition
// digest on the configured queue: "queue:name:digest8", so that a worker
// only ever receives jobs it has the definition of, and the dashboard shows
// one queue per queue, pipeline and definition.
func QueueName(queue, name, digest string) string {
	if len(digest) > 8 {
		digest = digest[:8]
	}
	return queue + ":" + safeName(name, 48) + ":" + digest
}

// ParseQueueName splits a name made by QueueName; ok is false for another
// queue.
func ParseQueueName(q string) (queue, name, digest8 string, ok bool) {
	parts := strings.Split(q, ":")
	if len(parts) != 3 || len(parts[2]) != 8 {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

// publishDefinitions writes the definitions and touches their index, in
// one pipeline of single-key commands. It returns how many definitions
// were new to the catalogue.
func publishDefinitions(ctx context.Context, rdb redis.UniversalClient, defs []api.Definition, now time.Time, ttl time.Duration) (int, error) {
	pipe := rdb.Pipeline()
	news := make([]*redis.BoolCmd, len(defs))
	for i, d := range defs {
		b, err := json.Marshal(d)
		if err != nil {
			return 0, err
		}
		k := defKey(d.Digest)
		pipe.HSet(ctx, k, "def", b)
		news[i] = pipe.HSetNX(ctx, k, "first", now.UnixMilli())
		pipe.PExpire(ctx, k, ttl)
		pipe.ZAdd(ctx, definitionsKey, redis.Z{Score: float64(now.UnixMilli()), Member: defMember(d.Name, d.Digest)})
	}
	pipe.PExpire(ctx, definitionsKey, ttl)
	pipe.ZRemRangeByScore(ctx, definitionsKey, "-inf", fmt.Sprint(now.Add(-ttl).UnixMilli()))
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, fmt.Errorf("catalog: publish definitions: %w", err)
	}
	n := 0
	for _, c := range news {
		if c.Val() {
			n++
		}
	}
	return n, nil
}

// PublishDefinitions puts the definitions of reg's pipelines in the
// catalogue without an instance: the API then accepts their jobs (with a
// "no live worker" warning until a worker runs them). staged dev does this
// before its API starts, so that the first submit never races the worker's
// first heartbeat.
func PublishDefinitions(ctx context.Context, rdb redis.UniversalClient, reg *tasks.Registry, ttl time.Duration) error {
	if ttl <= 0 {
		ttl = DefinitionTTLDefault
	}
	defs := Definitions(reg)
	n, err := publishDefinitions(ctx, rdb, defs, time.Now(), ttl)
	if err == nil && n > 0 {
		err = rdb.Publish(ctx, Channel, "changed").Err()
	}
	return err
}

// Definitions returns the definitions of reg's pipelines.
func Definitions(reg *tasks.Registry) []api.Definition {
	var defs []api.Definition
	for _, p := range reg.All() {
		defs = append(defs, p.Definition())
	}
	return defs
}
