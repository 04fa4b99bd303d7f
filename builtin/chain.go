package builtin

import (
	"context"
	"strconv"

	"github.com/staged-dev/staged/tasks"
)

// ChainInput is the input of the chain pipeline.
type ChainInput struct {
	Data   string `json:"data" doc:"the string the stages append to, at most 64 KiB" jsonschema:"maxLength=65536"`
	Stages int    `json:"stages" doc:"number of stages, 1..100" jsonschema:"minimum=1,maximum=100"`
}

// ChainOutput is the output of each chain stage, and the last one's is the
// job's result. For input {"data": "x", "stages": 2} stage 1 outputs
// {"data": "x -> processed by stage 1"} and stage 2, the result,
// {"data": "x -> processed by stage 1 -> processed by stage 2"}.
type ChainOutput struct {
	Data string `json:"data"`
}

// ChainMaxData is the longest "data" chain accepts, in bytes.
const ChainMaxData = 64 << 10

// ChainPipeline returns the chain pipeline: input {"data": "x", "stages": 4}
// gives stages "stage1".."stage4"; stage k appends " -> processed by stage k"
// to the previous stage's data (the input's, for stage 1).
func ChainPipeline() *tasks.Pipeline {
	def := ChainInput{Data: "x", Stages: 4}
	p := &tasks.Pipeline{
		Name:        "chain",
		Description: `Each stage appends " -> processed by stage k" to the data: the classic polling demo.`,
		Input:       tasks.InputOf(def, checkChain),
		Build:       tasks.BuildOf(buildChain),
	}
	p.Stages = chainStages(def.Stages)
	return p
}

func checkChain(in *ChainInput) error {
	if len(in.Data) > ChainMaxData {
		return tasks.FieldError("input.data", "data must be at most %s bytes, not %s",
			group(ChainMaxData), group(int64(len(in.Data))))
	}
	return checkInt("stages", in.Stages, 1, MaxStages)
}

// buildChain is the chain pipeline's Build: one stage per input "stages".
func buildChain(in ChainInput) ([]tasks.Stage, error) {
	if err := checkChain(&in); err != nil {
		return nil, err
	}
	return chainStages(in.Stages), nil
}

func chainStages(n int) []tasks.Stage {
	st := make([]tasks.Stage, n)
	st[0] = tasks.StageOf(stageName(1), func(_ context.Context, in ChainInput, _ tasks.Progress) (ChainOutput, error) {
		return ChainOutput{Data: in.Data + chainSuffix(1)}, nil
	})
	for i := 1; i < n; i++ {
		suffix := chainSuffix(i + 1)
		st[i] = tasks.StageOf(stageName(i+1), func(_ context.Context, prev ChainOutput, _ tasks.Progress) (ChainOutput, error) {
			return ChainOutput{Data: prev.Data + suffix}, nil
		})
	}
	return st
}

// chainSuffix is what stage k appends.
func chainSuffix(k int) string { return " -> processed by stage " + strconv.Itoa(k) }
