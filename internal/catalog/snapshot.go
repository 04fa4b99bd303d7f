package catalog

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/tasks"
)

// Snapshot is the catalogue as read at one moment.
type Snapshot struct {
	// Pipelines maps a pipeline name to its known definitions, the one a
	// submit uses first (see Entries).
	Pipelines map[string][]*Entry
	// Instances are the live workers, by id.
	Instances []Instance
	At        time.Time
}

// Entry is one definition of a pipeline and who runs it.
type Entry struct {
	Def api.Definition
	// FirstSeen is when the definition was first published; LastSeen is
	// the last heartbeat of a worker that runs it.
	FirstSeen, LastSeen time.Time
	// Workers is how many live instances run this definition.
	Workers int
	// pipeline is Def.Pipeline(), made once per digest; err its error.
	pipeline *tasks.Pipeline
	err      error
}

// Pipeline returns the pipeline that accepts jobs of this definition.
func (e *Entry) Pipeline() (*tasks.Pipeline, error) { return e.pipeline, e.err }

// Names returns the known pipeline names, sorted.
func (s *Snapshot) Names() []string {
	names := make([]string, 0, len(s.Pipelines))
	for n := range s.Pipelines {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Entries returns the definitions of pipeline name, the one a submit
// should use first: among the definitions live workers run, the most
// recently first published (a rolling deploy moves new jobs to the new
// definition as soon as one worker runs it); when no worker is live, the
// most recently seen. ok is false for an unknown name.
func (s *Snapshot) Entries(name string) (es []*Entry, ok bool) {
	es, ok = s.Pipelines[name]
	return es, ok
}

// WorkersOf returns how many live instances run pipeline name (any
// definition).
func (s *Snapshot) WorkersOf(name string) int {
	n := 0
	for _, e := range s.Pipelines[name] {
		n += e.Workers
	}
	return n
}

// Load reads the catalogue. cache holds the entries of an earlier
// snapshot: definitions already read are not read again (a definition
// never changes under its digest).
func Load(ctx context.Context, rdb redis.UniversalClient, cache *Snapshot) (*Snapshot, error) {
	now := time.Now()
	pipe := rdb.Pipeline()
	insts := pipe.ZRangeByScore(ctx, instancesKey, &redis.ZRangeBy{Min: strconv.FormatInt(now.Add(-time.Hour).UnixMilli(), 10), Max: "+inf"})
	defs := pipe.ZRangeWithScores(ctx, definitionsKey, 0, -1)
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return nil, fmt.Errorf("catalog: read: %w", err)
	}
	known := map[string]*Entry{}
	if cache != nil {
		for _, es := range cache.Pipelines {
			for _, e := range es {
				known[e.Def.Digest] = e
			}
		}
	}
	// The instances and the definitions new to this process, in one pipeline.
	pipe = rdb.Pipeline()
	instCmds := make([]*redis.StringCmd, len(insts.Val()))
	for i, id := range insts.Val() {
		instCmds[i] = pipe.Get(ctx, instanceKey(id))
	}
	type defRead struct {
		digest   string
		lastSeen time.Time
		cmd      *redis.SliceCmd
	}
	var reads []defRead
	for _, z := range defs.Val() {
		m, _ := z.Member.(string)
		_, digest, ok := strings.Cut(m, "\x00")
		if !ok {
			continue
		}
		r := defRead{digest: digest, lastSeen: time.UnixMilli(int64(z.Score)).UTC()}
		if known[digest] == nil {
			r.cmd = pipe.HMGet(ctx, defKey(digest), "def", "first")
		}
		reads = append(reads, r)
	}
	if len(instCmds) > 0 || len(reads) > 0 {
		if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
			return nil, fmt.Errorf("catalog: read: %w", err)
		}
	}
	snap := &Snapshot{Pipelines: map[string][]*Entry{}, At: now}
	byDigest := map[string]*Entry{}
	for _, r := range reads {
		e := known[r.digest]
		if r.cmd != nil {
			vals := r.cmd.Val()
			s, _ := vals[0].(string)
			if s == "" {
				continue // expired between the two reads
			}
			e = &Entry{}
			if err := json.Unmarshal([]byte(s), &e.Def); err != nil {
				continue
			}
			if f, _ := vals[1].(string); f != "" {
				ms, _ := strconv.ParseInt(f, 10, 64)
				e.FirstSeen = time.UnixMilli(ms).UTC()
			}
			e.pipeline, e.err = PipelineOf(&e.Def)
		} else {
			c := *e
			e = &c
		}
		e.LastSeen, e.Workers = r.lastSeen, 0
		byDigest[e.Def.Digest] = e
		snap.Pipelines[e.Def.Name] = append(snap.Pipelines[e.Def.Name], e)
	}
	for _, c := range instCmds {
		var in Instance
		if json.Unmarshal([]byte(c.Val()), &in) != nil || !in.ExpiresAt.After(now) {
			continue
		}
		snap.Instances = append(snap.Instances, in)
		for _, ref := range in.Pipelines {
			if e := byDigest[ref.Digest]; e != nil {
				e.Workers++
			}
		}
	}
	for _, es := range snap.Pipelines {
		sort.Slice(es, func(i, j int) bool {
			a, b := es[i], es[j]
			if (a.Workers > 0) != (b.Workers > 0) {
				return a.Workers > 0
			}
			if a.Workers > 0 {
				return a.FirstSeen.After(b.FirstSeen)
			}
			return a.LastSeen.After(b.LastSeen)
		})
	}
	return snap, nil
}
