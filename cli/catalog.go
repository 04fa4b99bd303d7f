package cli

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/staged-dev/staged/tasks"
)

// Settings of the pipeline catalogue, read by dev and worker.
var (
	// setOnly restricts a worker to some of its pipelines (a fleet where
	// each kind of worker runs some job types).
	setOnly = setting{"pipelines-only", "STAGED_PIPELINES_ONLY"}
	// setHeartbeat is how often a worker refreshes its catalogue entry.
	setHeartbeat = setting{"heartbeat", "STAGED_HEARTBEAT"}
	// setCatalogTTL is how long a pipeline stays known with no worker.
	setCatalogTTL = setting{"catalog-ttl", "STAGED_CATALOG_TTL"}
	// setOrphanAfter is how long a job waits for a worker with its definition.
	setOrphanAfter = setting{"orphan-after", "STAGED_ORPHAN_AFTER"}
)

func init() {
	flagHelp[setOnly] = "run only these pipelines, name,... (default: all the program has)"
	flagHelp[setHeartbeat] = "how often the worker refreshes its entry in the pipeline catalogue (default 5s; gone after 3 missed)"
	flagHelp[setCatalogTTL] = "how long a pipeline stays in the catalogue after its last worker (default 24h)"
	flagHelp[setOrphanAfter] = "how long a queued job waits for a worker with its pipeline's definition before it fails (default 10m)"
}

// catalogSettings are the worker's catalogue settings; zero means the
// worker's default.
type catalogSettings struct {
	only          []string
	heartbeat     time.Duration
	definitionTTL time.Duration
	orphanAfter   time.Duration
}

// loadCatalog reads the catalogue settings.
func loadCatalog(s *source) (catalogSettings, error) {
	var c catalogSettings
	var errs []error
	if v, from, ok := s.get(setOnly); ok {
		for _, n := range strings.Split(v, ",") {
			if n = strings.TrimSpace(n); n != "" {
				c.only = append(c.only, n)
			}
		}
		if len(c.only) == 0 {
			errs = append(errs, invalid(from, "%q names no pipeline: give name,... (see GET /v1/pipelines)", v))
		}
	}
	for _, d := range []struct {
		st  setting
		dst *time.Duration
		min time.Duration
	}{{setHeartbeat, &c.heartbeat, 10 * time.Millisecond}, {setCatalogTTL, &c.definitionTTL, time.Second}, {setOrphanAfter, &c.orphanAfter, 100 * time.Millisecond}} {
		if v, from, ok := s.get(d.st); ok {
			t, err := parseDuration(v)
			if err != nil || t < d.min {
				errs = append(errs, invalid(from, "%q is not a duration of at least %s, such as 5s, 10m or 24h", v, d.min))
			}
			*d.dst = t
		}
	}
	if c.heartbeat > 0 && c.definitionTTL > 0 && c.definitionTTL < 3*c.heartbeat {
		errs = append(errs, fmt.Errorf("STAGED_CATALOG_TTL (%s) must be at least three heartbeats (STAGED_HEARTBEAT %s)", c.definitionTTL, c.heartbeat))
	}
	return c, errors.Join(errs...)
}

// restrict returns a registry of the pipelines of reg named in only (all
// of reg when only is empty); a name reg lacks is an error listing them.
func restrict(reg *tasks.Registry, only []string) (*tasks.Registry, error) {
	if len(only) == 0 {
		return reg, nil
	}
	out := &tasks.Registry{}
	for _, n := range only {
		p := reg.Get(n)
		if p == nil {
			return nil, fmt.Errorf("STAGED_PIPELINES_ONLY, --pipelines-only: this program has no pipeline %q; it has %s",
				n, strings.Join(reg.Names(), ", "))
		}
		if out.Get(n) == nil {
			out.MustRegister(p)
		}
	}
	return out, nil
}
