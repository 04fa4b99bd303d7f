package builtin_test

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/staged-dev/staged/builtin"
	"github.com/staged-dev/staged/stagedtest"
	"github.com/staged-dev/staged/tasks"
)

// The built-in pipelines, their default stages and default inputs.
func ExamplePipelines() {
	for _, p := range builtin.Pipelines() {
		fmt.Print(p.Name, ":")
		for _, s := range p.Stages {
			fmt.Print(" ", s.Name)
		}
		fmt.Printf(" %s\n", p.Input.Defaults)
	}
	// Output:
	// chain: stage1 stage2 stage3 stage4 {"data":"x","stages":4}
	// sleep: stage1 stage2 stage3 stage4 {"stages":4,"ms":1000}
	// train: prepare preprocess train package {"samples":20000,"features":16,"epochs":1000,"learning_rate":0.1,"seed":42}
}

// A chain job run in-process with the test kit, the way a worker runs it:
// the input is normalised, the stages are built from it, and each stage's
// JSON output is the next one's input.
func ExampleChainPipeline() {
	res, err := stagedtest.RunPipeline(context.Background(), builtin.ChainPipeline(), `{"data": "x", "stages": 2}`)
	if err != nil {
		panic(err)
	}
	for i, out := range res.Outputs {
		fmt.Printf("%s: %s\n", res.Stages[i], out)
	}
	// Output:
	// stage1: {"data":"x -> processed by stage 1"}
	// stage2: {"data":"x -> processed by stage 1 -> processed by stage 2"}
}

// Each sleep stage reports its progress and a partial result while it
// waits; with ms 0 it does not wait at all.
func ExampleSleepPipeline() {
	res, err := stagedtest.RunPipeline(context.Background(), builtin.SleepPipeline(), builtin.SleepInput{Stages: 3, MS: 0})
	if err != nil {
		panic(err)
	}
	fmt.Println(res.Stages, string(res.Output))
	// Output:
	// [stage1 stage2 stage3] {"stage":3,"slept_ms":0}
}

// Input checks name the field at fault.
func ExampleTrainPipeline() {
	_, err := builtin.TrainPipeline().Input.Normalize(json.RawMessage(`{"learning_rate": 20}`))
	fmt.Println(tasks.ErrorCode(err), err.(*tasks.Error).Field, tasks.ErrorMessage(err))
	// Output:
	// unprocessable input.learning_rate learning_rate must be more than 0 and at most 10, not 20
}
