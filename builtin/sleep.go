package builtin

import (
	"context"
	"time"

	"github.com/staged-dev/staged/tasks"
)

// SleepInput is the input of the sleep pipeline.
type SleepInput struct {
	Stages int `json:"stages" doc:"number of stages, 1..100" jsonschema:"minimum=1,maximum=100"`
	MS     int `json:"ms" doc:"milliseconds each stage waits, 0..3,600,000 (the job's timeout, 1h by default, bounds the total)" jsonschema:"minimum=0,maximum=3600000"`
}

// SleepOutput is the output of each sleep stage; the last one's is the
// job's result: {"stage": N, "slept_ms": MS}.
type SleepOutput struct {
	Stage   int `json:"stage"`    // 1-based
	SleptMS int `json:"slept_ms"` // how long the stage waited
}

// SleepMaxMS is the longest a sleep stage may wait: an hour.
const SleepMaxMS = 3_600_000

// sleepReportEvery is how often a sleeping stage reports its progress.
const sleepReportEvery = 50 * time.Millisecond

// SleepPipeline returns the sleep pipeline: input {"stages": 4, "ms": 1000}
// gives stages "stage1".."stage4", each waiting 1000 ms while it reports its
// fraction and a partial result {"stage": k, "slept_ms": n} about every
// 50 ms. With ms 0 the stages do nothing at all, which measures staged's own
// per-stage overhead.
func SleepPipeline() *tasks.Pipeline {
	def := SleepInput{Stages: 4, MS: 1000}
	p := &tasks.Pipeline{
		Name:        "sleep",
		Description: "Each stage waits ms milliseconds, reporting progress: for demos, tests and benchmarks.",
		Input:       tasks.InputOf(def, checkSleep),
		Build:       tasks.BuildOf(buildSleep),
	}
	p.Stages = sleepStages(def)
	return p
}

func checkSleep(in *SleepInput) error {
	if err := checkInt("stages", in.Stages, 1, MaxStages); err != nil {
		return err
	}
	return checkInt("ms", in.MS, 0, SleepMaxMS)
}

// buildSleep is the sleep pipeline's Build: one stage per input "stages".
func buildSleep(in SleepInput) ([]tasks.Stage, error) {
	if err := checkSleep(&in); err != nil {
		return nil, err
	}
	return sleepStages(in), nil
}

func sleepStages(in SleepInput) []tasks.Stage {
	st := make([]tasks.Stage, in.Stages)
	st[0] = tasks.StageOf(stageName(1), func(ctx context.Context, _ SleepInput, p tasks.Progress) (SleepOutput, error) {
		return sleepStage(ctx, 1, in.MS, p)
	})
	for i := 1; i < len(st); i++ {
		k := i + 1
		st[i] = tasks.StageOf(stageName(k), func(ctx context.Context, _ SleepOutput, p tasks.Progress) (SleepOutput, error) {
			return sleepStage(ctx, k, in.MS, p)
		})
	}
	return st
}

// sleepStage is the work of stage k: it waits ms milliseconds, reporting
// its progress. Its in is not used: the job's shape and ms come from Build.
func sleepStage(ctx context.Context, k, ms int, p tasks.Progress) (SleepOutput, error) {
	if err := sleep(ctx, time.Duration(ms)*time.Millisecond, func(slept time.Duration, frac float64) {
		p.Report(frac, SleepOutput{Stage: k, SleptMS: int(slept.Milliseconds())})
	}); err != nil {
		return SleepOutput{}, err
	}
	return SleepOutput{Stage: k, SleptMS: ms}, nil
}

// sleep waits d, calling report about every sleepReportEvery with the time
// slept so far and the fraction of d it is. It returns ctx.Err() as soon as
// ctx is done.
func sleep(ctx context.Context, d time.Duration, report func(slept time.Duration, frac float64)) error {
	if d <= 0 {
		return ctx.Err()
	}
	start := time.Now()
	done := time.NewTimer(d)
	defer done.Stop()
	tick := time.NewTicker(sleepReportEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-done.C:
			return nil
		case now := <-tick.C:
			slept := min(now.Sub(start), d)
			report(slept, float64(slept)/float64(d))
		}
	}
}
