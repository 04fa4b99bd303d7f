package stagedtest_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/staged-dev/staged/stagedtest"
	"github.com/staged-dev/staged/tasks"
)

// Text is the input of the wordcount pipeline.
type Text struct {
	Text string `json:"text" doc:"the text to count the words of"`
}

// Words is what split hands to count.
type Words struct {
	Words []string `json:"words"`
}

// Count is the wordcount pipeline's result.
type Count struct {
	Words    int `json:"words"`
	Distinct int `json:"distinct"`
}

// WordCount is a pipeline as a user writes it: typed stages, progress.
func WordCount() *tasks.Pipeline {
	return &tasks.Pipeline{
		Name:  "wordcount",
		Input: tasks.InputOf(Text{Text: "hello world"}, nil),
		Stages: []tasks.Stage{
			tasks.StageOf("split", func(_ context.Context, in Text, _ tasks.Progress) (Words, error) {
				return Words{Words: strings.Fields(in.Text)}, nil
			}),
			tasks.StageOf("count", func(_ context.Context, in Words, p tasks.Progress) (Count, error) {
				seen := map[string]bool{}
				for i, w := range in.Words {
					seen[w] = true
					p.Report(float64(i+1)/float64(len(in.Words)), Count{Words: i + 1, Distinct: len(seen)})
				}
				return Count{Words: len(in.Words), Distinct: len(seen)}, nil
			}),
		},
	}
}

// A test of a whole pipeline: the result, and every progress report.
func Example() {
	res, err := stagedtest.RunPipeline(context.Background(), WordCount(), `{"text": "to be or not to be"}`)
	if err != nil {
		panic(err) // in a test: t.Fatal(err)
	}
	fmt.Println("result:", string(res.Output))
	fmt.Println("split gave:", string(res.Outputs[0]))
	last := res.Reports[len(res.Reports)-1]
	fmt.Printf("%d reports, the last from %s at %.0f%%: %+v\n", len(res.Reports), last.Stage, 100*last.Fraction, last.Partial)
	// Output:
	// result: {"words":6,"distinct":4}
	// split gave: {"words":["to","be","or","not","to","be"]}
	// 6 reports, the last from count at 100%: {Words:6 Distinct:4}
}

// Defaults apply as under a worker, and a bad input is refused naming the
// field.
func ExampleRunPipeline_input() {
	res, _ := stagedtest.RunPipeline(context.Background(), WordCount(), nil)
	fmt.Println(string(res.Input), "->", string(res.Output))
	_, err := stagedtest.RunPipeline(context.Background(), WordCount(), `{"txt": "typo"}`)
	fmt.Println(err.(*tasks.Error).Field, tasks.ErrorMessage(err))
	// Output:
	// {"text":"hello world"} -> {"words":2,"distinct":2}
	// input.txt unknown input field "txt"
}

// One stage, on an input given as a Go value; a wrong checkpoint fails it
// naming the stage and the field.
func ExampleRunStage() {
	count := WordCount().Stages[1]
	res, err := stagedtest.RunStage(context.Background(), count, Words{Words: []string{"a", "b", "a"}})
	fmt.Println(string(res.Output), err)
	_, err = stagedtest.RunStage(context.Background(), count, `{"words": "a b a"}`)
	fmt.Println(tasks.IsPermanent(err), tasks.ErrorMessage(err))
	// Output:
	// {"words":3,"distinct":2} <nil>
	// true stage count: field words must be array, not string
}
