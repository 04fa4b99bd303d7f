package stagedtest_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/staged-dev/staged/stagedtest"
	"github.com/staged-dev/staged/tasks"
)

// A failing stage: the error as returned, the outputs and reports before
// it, and its name.
func TestRunStagesFailure(t *testing.T) {
	boom := tasks.Permanent(errors.New("boom"))
	stages := []tasks.Stage{
		tasks.StageOf("one", func(_ context.Context, in int, p tasks.Progress) (int, error) {
			p.Report(1, in)
			return in + 1, nil
		}),
		tasks.StageOf("two", func(_ context.Context, in int, p tasks.Progress) (int, error) {
			p.Report(0.5, nil)
			return 0, boom
		}),
		tasks.StageOf("three", func(_ context.Context, in int, _ tasks.Progress) (int, error) {
			t.Error("stage three ran after two failed")
			return in, nil
		}),
	}
	res, err := stagedtest.RunStages(context.Background(), stages, 1)
	if err != boom {
		t.Fatalf("error %v, want the stage's", err)
	}
	if res.Failed != "two" || len(res.Stages) != 2 || len(res.Outputs) != 1 || string(res.Outputs[0]) != "2" || res.Output != nil {
		t.Errorf("result %+v", res)
	}
	want := []stagedtest.Report{{Stage: "one", Fraction: 1, Partial: 1}, {Stage: "two", Fraction: 0.5}}
	if len(res.Reports) != len(want) || res.Reports[0] != want[0] || res.Reports[1] != want[1] {
		t.Errorf("reports %+v, want %+v", res.Reports, want)
	}
}

// A stage runs as under a worker: a Progress, a StageInfo with a scratch
// directory (removed after the run), its timeout.
func TestStageContext(t *testing.T) {
	var dir string
	s := tasks.Stage{Name: "look", Timeout: time.Hour, Run: func(ctx context.Context, in json.RawMessage, p tasks.Progress) (any, error) {
		if p == nil {
			t.Error("nil Progress")
		}
		if _, ok := ctx.Deadline(); !ok {
			t.Error("no deadline from Stage.Timeout")
		}
		info, ok := tasks.StageInfoFrom(ctx)
		if !ok || info.JobID != stagedtest.JobID || info.Stage != "look" || info.Index != 1 || info.Total != 1 || info.Attempt != 1 {
			t.Errorf("stage info %+v, %v", info, ok)
		}
		var err error
		if dir, err = info.Scratch(); err != nil {
			return nil, err
		}
		return os.WriteFile(dir+"/f", in, 0o600) == nil, nil
	}}
	res, err := stagedtest.RunStage(context.Background(), s, json.RawMessage(`{"a":"<b>"}`))
	if err != nil || string(res.Output) != "true" {
		t.Fatalf("RunStage = %+v, %v", res, err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("scratch directory %s left behind (%v)", dir, err)
	}
}

// OnReport sees each report while the stage runs: here it cancels it.
func TestOnReportCancels(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := tasks.StageOf("wait", func(ctx context.Context, _ struct{}, p tasks.Progress) (int, error) {
		p.Report(0.1, nil)
		<-ctx.Done()
		return 0, ctx.Err()
	})
	res, err := stagedtest.RunStage(ctx, s, `{}`, stagedtest.OnReport(func(stagedtest.Report) { cancel() }))
	if !errors.Is(err, context.Canceled) || res.Failed != "wait" || len(res.Reports) != 1 {
		t.Errorf("RunStage = %+v, %v; want canceled after one report", res, err)
	}
}

// Outputs are encoded as the worker encodes them: "->" stays readable.
func TestOutputsAsTheWorkerWritesThem(t *testing.T) {
	s := tasks.StageOf("arrow", func(context.Context, struct{}, tasks.Progress) (string, error) { return "a -> <b>", nil })
	res, err := stagedtest.RunStage(context.Background(), s, `{}`)
	if err != nil || string(res.Output) != `"a -> <b>"` {
		t.Errorf("RunStage = %s, %v", res.Output, err)
	}
}
