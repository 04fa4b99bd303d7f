package store

import (
	"time"

	"github.com/google/uuid"
	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/tasks"
)

// NewJob returns a queued record for a new job of pipeline p with its
// fixed stage list (p.Stages) and p's definition digest. Use NewJobWith for
// pipelines that Build their stages from the input.
func NewJob(p *tasks.Pipeline, queue string, now time.Time) *api.Job {
	j := NewJobWith(p.Name, p.Stages, queue, now)
	j.Digest = p.Digest()
	return j
}

// NewJobWith returns a queued record for a new job of type typ running
// stages (from Pipeline.StagesFor).
func NewJobWith(typ string, stages []tasks.Stage, queue string, now time.Time) *api.Job {
	id := uuid.NewString()
	j := &api.Job{
		ID: id, Type: typ, State: api.StateQueued, Queue: queue,
		Stage:     api.StageRef{Total: len(stages)},
		Stages:    make([]api.StageStatus, len(stages)),
		CreatedAt: now, UpdatedAt: now,
		Links: api.LinksFor(id),
	}
	for i, s := range stages {
		j.Stages[i] = api.StageStatus{Name: s.Name, State: api.StatePending}
	}
	return j
}
