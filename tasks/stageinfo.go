package tasks

import "context"

// StageInfo describes the run of a stage that a StageFunc was called for.
// The worker puts it in the stage's context; read it with StageInfoFrom.
type StageInfo struct {
	// JobID is the job's id.
	JobID string
	// Stage is the stage's name, Index its 1-based position and Total the
	// job's number of stages (as in the job record's "stage").
	Stage        string
	Index, Total int
	// Attempt is the job's attempt (1 for the first).
	Attempt int
	// Scratch returns a directory private to this attempt of the job on
	// this worker, creating it on first use. Every stage of the attempt
	// gets the same one; the worker removes it when the attempt ends
	// (success, failure, cancel, hand-back). A retry or a resume on another
	// worker starts with an empty one. Nil outside a worker.
	Scratch func() (string, error)
}

type stageInfoKey struct{}

// WithStageInfo returns ctx carrying info. The worker calls it; tests of a
// StageFunc may too.
func WithStageInfo(ctx context.Context, info StageInfo) context.Context {
	return &stageInfoCtx{Context: ctx, info: info}
}

// stageInfoCtx is ctx with a StageInfo: one allocation per stage run, where
// context.WithValue makes two (its context and the boxed info). The info is
// boxed only when a stage asks for it.
type stageInfoCtx struct {
	context.Context
	info StageInfo
}

// Value implements context.Context.
func (c *stageInfoCtx) Value(key any) any {
	if _, ok := key.(stageInfoKey); ok {
		return c.info
	}
	return c.Context.Value(key)
}

// StageInfoFrom returns the StageInfo in ctx, if any.
func StageInfoFrom(ctx context.Context) (StageInfo, bool) {
	info, ok := ctx.Value(stageInfoKey{}).(StageInfo)
	return info, ok
}
