package store

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/tasks"
)

// ClaimOutcome says what a claim found.
type ClaimOutcome string

// Claim outcomes.
const (
	ClaimOK         ClaimOutcome = "ok"         // the caller owns the job now
	ClaimMissing    ClaimOutcome = "missing"    // no record (expired or never created)
	ClaimDone       ClaimOutcome = "done"       // finished by this task generation
	ClaimSuperseded ClaimOutcome = "superseded" // a newer task generation owns (or finished) the job
	ClaimBusy       ClaimOutcome = "busy"       // another worker holds a live lease
)

// Claim is the state a worker starts a job from.
type Claim struct {
	Outcome ClaimOutcome
	Token   int64
	Job     *api.Job
	Tenant  string
	Input   json.RawMessage
	Options api.Options
	// Outputs holds the checkpointed output of each completed stage, by
	// 0-based stage index.
	Outputs         map[int]json.RawMessage
	CancelRequested bool
	// Live: the job counts among its tenant's live jobs (see LiveKey and
	// SaveArgs.Live).
	Live bool
	// TaskMsg is the message of the asynq task whose dequeue made the
	// claim (Taken.Claim; "" when the handler claimed), for TaskEnd.Msg.
	TaskMsg string
}

// Claim makes the caller, running task generation gen, the job's owner with
// a fresh fencing token and a lease of the given length, and registers the
// lease with the reconciler. Only ClaimOK carries a api.Job.
func (s *Store) Claim(ctx context.Context, id string, gen int64, lease time.Duration) (*Claim, error) {
	keys, args := []string{JobKey(id), LeaseKey(id)}, []any{gen, lease.Milliseconds()}
	var index func(redis.Pipeliner)
	if s.cluster() {
		// The lease index entry goes in the same round trip, whatever the
		// outcome: for a claim that fails, the reconciler drops it later
		// (Handoff answers done, missing, alive or enqueue).
		index = s.indexLease(ctx, id, lease)
	} else {
		// On one node the script itself indexes a successful claim.
		keys = append(keys, LeasesKey(id))
		args = append(args, s.now().Add(lease).UnixMilli(), s.liveTTL().Milliseconds(), id)
	}
	cmd, err := s.evalWith(ctx, claimScript, keys, args, index)
	if err != nil {
		return nil, redisErr("store.Claim "+id, err)
	}
	res, err := cmd.StringSlice()
	if err != nil {
		return nil, redisErr("store.Claim "+id, err)
	}
	return decodeClaim(id, res)
}

// decodeClaim decodes claimScript's answer for job id.
func decodeClaim(id string, res []string) (*Claim, error) {
	if len(res) == 0 {
		return nil, tasks.Errorf(tasks.EINTERNAL, "job %s: an empty claim", id)
	}
	c := &Claim{Outcome: ClaimOutcome(res[0])}
	if c.Outcome != ClaimOK {
		return c, nil
	}
	var err error
	c.Token, _ = strconv.ParseInt(res[1], 10, 64)
	c.Outputs = map[int]json.RawMessage{}
	for i := 2; i+1 < len(res); i += 2 {
		k, v := res[i], res[i+1]
		switch {
		case k == "rec":
			if c.Job, err = decodeRecord(v); err != nil {
				return nil, err
			}
		case k == "tenant":
			c.Tenant = v
		case k == "input":
			c.Input = json.RawMessage(v)
		case k == "opts":
			decodeOptions(v, &c.Options)
		case k == "cancel":
			c.CancelRequested = v == "1"
		case k == "live":
			c.Live = true
		case strings.HasPrefix(k, "out:"):
			if n, err := strconv.Atoi(k[4:]); err == nil {
				c.Outputs[n] = json.RawMessage(v)
			}
		}
	}
	if c.Job == nil {
		return nil, tasks.Errorf(tasks.EINTERNAL, "job %s has no record", id)
	}
	return c, nil
}

// indexOrphan returns the commands that put a new job in the lease index
// with a deadline OrphanAfter from now (see Create).
func (s *Store) indexOrphan(ctx context.Context, id string) func(redis.Pipeliner) error {
	after := s.OrphanAfter
	if after <= 0 {
		after = OrphanAfterDefault
	}
	f := s.indexLease(ctx, id, after)
	return func(p redis.Pipeliner) error { f(p); return nil }
}
