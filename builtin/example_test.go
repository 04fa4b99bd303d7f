package builtin_test

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/staged-dev/staged/builtin"
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

// A chain job run by hand, the way a worker runs it: the input is
// normalised, the stages are built from it, and each stage's JSON output is
// the next one's input.
func ExampleChainPipeline() {
	p := builtin.ChainPipeline()
	in, err := p.Input.Normalize(json.RawMessage(`{"data": "x", "stages": 2}`))
	if err != nil {
		panic(err)
	}
	stages, err := p.StagesFor(in)
	if err != nil {
		panic(err)
	}
	for _, s := range stages {
		out, err := s.Run(context.Background(), in, nil)
		if err != nil {
			panic(err)
		}
		in, _ = json.Marshal(out)
		fmt.Printf("%s: %q\n", s.Name, out.(builtin.ChainOutput).Data)
	}
	// Output:
	// stage1: "x -> processed by stage 1"
	// stage2: "x -> processed by stage 1 -> processed by stage 2"
}

// Input checks name the field at fault.
func ExampleTrainPipeline() {
	_, err := builtin.TrainPipeline().Input.Normalize(json.RawMessage(`{"learning_rate": 20}`))
	fmt.Println(tasks.ErrorCode(err), err.(*tasks.Error).Field, tasks.ErrorMessage(err))
	// Output:
	// unprocessable input.learning_rate learning_rate must be more than 0 and at most 10, not 20
}
