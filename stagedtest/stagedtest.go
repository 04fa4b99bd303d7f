// Package stagedtest runs pipelines and stages in-process, without Redis or
// a worker, for the tests of the people who write them.
//
// RunPipeline runs a whole job as a worker would: the input is validated
// and given its defaults by the pipeline's InputSpec, the stage list is
// built from it (Pipeline.Build), and each stage's output is encoded as the
// worker encodes it (api.Marshal) and decoded by the next stage. RunStages
// starts from any stage, for tests of a job resumed from a checkpoint;
// RunStage runs one. Each returns a Result holding every stage's output and
// every progress report, in order, also when a stage fails.
//
// A stage always gets a non-nil tasks.Progress, a context carrying a
// tasks.StageInfo (with a scratch directory removed when the run ends) and
// its Stage.Timeout, as under a worker.
//
// A user-style test:
//
//	func TestWordCount(t *testing.T) {
//		res, err := stagedtest.RunPipeline(context.Background(), WordCount(), `{"text": "to be or not to be"}`)
//		if err != nil {
//			t.Fatal(err)
//		}
//		if got, want := string(res.Output), `{"words":6,"distinct":4}`; got != want {
//			t.Errorf("result %s, want %s", got, want)
//		}
//	}
package stagedtest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/tasks"
)

// JobID is the job id a stage sees in its tasks.StageInfo.
const JobID = "00000000-0000-4000-8000-000000000000"

// Report is one call of tasks.Progress.Report.
type Report struct {
	// Stage is the reporting stage's name.
	Stage string
	// Fraction is the stage's completed fraction, as given.
	Fraction float64
	// Partial is the partial result as given (nil for none); the worker
	// writes it as JSON (api.Marshal) into the job record.
	Partial any
}

// Result is what a run did.
type Result struct {
	// Input is what the first stage got: for RunPipeline the normalised
	// input, defaults applied.
	Input json.RawMessage
	// Stages are the stages run, or started when one failed.
	Stages []string
	// Outputs holds each stage's output, JSON-encoded as the worker
	// checkpoints it, for the stages that succeeded.
	Outputs []json.RawMessage
	// Output is the last stage's output: the job's result. Nil when a
	// stage failed.
	Output json.RawMessage
	// Reports are every progress report of every stage, in order.
	Reports []Report
	// Failed names the stage that returned an error, "" if none.
	Failed string
}

// Option changes how a run goes.
type Option func(*config)

type config struct {
	onReport func(Report)
}

// OnReport calls f after each progress report, from the reporting stage's
// goroutine: use it to act while a stage runs (cancel it, say).
func OnReport(f func(Report)) Option { return func(c *config) { c.onReport = f } }

// RunPipeline runs a job of p with input: a JSON document (string,
// []byte or json.RawMessage; "" means no input) or any other value, which
// is JSON-encoded first. An input the pipeline refuses is the error
// Normalize returns (a *tasks.Error naming the field), with a nil Result.
// A stage's error is returned as the stage returned it, with the Result
// up to then.
func RunPipeline(ctx context.Context, p *tasks.Pipeline, input any, opts ...Option) (*Result, error) {
	raw, err := encode(input)
	if err != nil {
		return nil, err
	}
	in, err := p.Input.Normalize(raw)
	if err != nil {
		return nil, err
	}
	stages, err := p.StagesFor(in)
	if err != nil {
		return nil, err
	}
	return RunStages(ctx, stages, in, opts...)
}

// RunStages runs stages in order, the first on in (encoded as RunPipeline
// encodes its input), each later one on the previous one's output. Use it
// to resume a job from a checkpoint: Result.Outputs of an earlier run are
// the checkpoints.
func RunStages(ctx context.Context, stages []tasks.Stage, in any, opts ...Option) (*Result, error) {
	raw, err := encode(in)
	if err != nil {
		return nil, err
	}
	var c config
	for _, o := range opts {
		o(&c)
	}
	r := &run{cfg: c}
	defer r.cleanup()
	res := &Result{Input: raw}
	for i, s := range stages {
		res.Stages = append(res.Stages, s.Name)
		out, err := r.stage(ctx, s, i+1, len(stages), raw)
		res.Reports = r.reports()
		if err != nil {
			res.Failed = s.Name
			return res, err
		}
		res.Outputs = append(res.Outputs, out)
		raw = out
	}
	if n := len(res.Outputs); n > 0 {
		res.Output = res.Outputs[n-1]
	}
	return res, nil
}

// RunStage runs one stage on in (encoded as RunPipeline encodes its input).
func RunStage(ctx context.Context, s tasks.Stage, in any, opts ...Option) (*Result, error) {
	return RunStages(ctx, []tasks.Stage{s}, in, opts...)
}

// encode returns v as JSON: as it is when it is JSON text already.
func encode(v any) (json.RawMessage, error) {
	switch v := v.(type) {
	case nil:
		return nil, nil
	case json.RawMessage:
		return v, nil
	case []byte:
		return v, nil
	case string:
		return json.RawMessage(v), nil
	}
	b, err := api.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("stagedtest: encode the input: %w", err)
	}
	return b, nil
}

// run is one RunStages call: its progress reports and scratch directory.
type run struct {
	cfg     config
	mu      sync.Mutex
	reps    []Report
	scratch string
}

func (r *run) reports() []Report {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Report(nil), r.reps...)
}

// progress is the tasks.Progress of one stage.
type progress struct {
	r     *run
	stage string
}

func (p progress) Report(fraction float64, partial any) {
	rep := Report{Stage: p.stage, Fraction: fraction, Partial: partial}
	p.r.mu.Lock()
	p.r.reps = append(p.r.reps, rep)
	p.r.mu.Unlock()
	if p.r.cfg.onReport != nil {
		p.r.cfg.onReport(rep)
	}
}

// stage runs stage s (index of total, 1-based) on in and returns its
// output as JSON.
func (r *run) stage(ctx context.Context, s tasks.Stage, index, total int, in json.RawMessage) (json.RawMessage, error) {
	if s.Run == nil {
		return nil, fmt.Errorf("stagedtest: stage %q has no Run func", s.Name)
	}
	if s.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.Timeout)
		defer cancel()
	}
	ctx = tasks.WithStageInfo(ctx, tasks.StageInfo{
		JobID: JobID, Stage: s.Name, Index: index, Total: total, Attempt: 1, Scratch: r.scratchDir,
	})
	out, err := s.Run(ctx, in, progress{r: r, stage: s.Name})
	if err != nil {
		return nil, err
	}
	b, err := api.Marshal(out)
	if err != nil {
		return nil, tasks.Permanent(fmt.Errorf("stage %s returned an output that is not JSON: %w", s.Name, err))
	}
	return b, nil
}

func (r *run) scratchDir() (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.scratch == "" {
		d, err := os.MkdirTemp("", "stagedtest-")
		if err != nil {
			return "", err
		}
		r.scratch = d
	}
	return r.scratch, nil
}

func (r *run) cleanup() {
	if r.scratch != "" {
		os.RemoveAll(r.scratch)
	}
}
