package tasks_test

import (
	"context"
	"errors"
	"testing"

	"github.com/staged-dev/staged/tasks"
)

type otherKey struct{}

var ctxSink context.Context

// A stage's context carries its StageInfo and is otherwise its parent:
// values, cancellation and its cause pass through, to contexts derived
// from it too. It costs one allocation (the worker makes one per stage run).
func TestWithStageInfo(t *testing.T) {
	parent, cancel := context.WithCancelCause(context.WithValue(context.Background(), otherKey{}, "v"))
	info := tasks.StageInfo{JobID: "j", Stage: "s", Index: 2, Total: 3, Attempt: 1}
	ctx := tasks.WithStageInfo(parent, info)
	if got, ok := tasks.StageInfoFrom(ctx); !ok || got.JobID != "j" || got.Stage != "s" || got.Index != 2 || got.Total != 3 || got.Attempt != 1 {
		t.Fatalf("StageInfoFrom = %+v, %v", got, ok)
	}
	if _, ok := tasks.StageInfoFrom(parent); ok {
		t.Fatal("the parent has a StageInfo")
	}
	if v := ctx.Value(otherKey{}); v != "v" {
		t.Fatalf("the parent's value: %v", v)
	}
	inner := tasks.WithStageInfo(ctx, tasks.StageInfo{JobID: "k"})
	if got, _ := tasks.StageInfoFrom(inner); got.JobID != "k" {
		t.Fatalf("the innermost StageInfo: %+v", got)
	}
	child, stop := context.WithCancel(ctx)
	defer stop()
	boom := errors.New("boom")
	cancel(boom)
	<-ctx.Done()
	<-child.Done()
	if !errors.Is(context.Cause(ctx), boom) || !errors.Is(context.Cause(child), boom) {
		t.Fatalf("causes %v, %v; want %v", context.Cause(ctx), context.Cause(child), boom)
	}
	if n := testing.AllocsPerRun(100, func() { ctxSink = tasks.WithStageInfo(parent, info) }); n != 1 {
		t.Errorf("WithStageInfo allocates %v times, want 1", n)
	}
}
