package tasks_test

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

func split(_ context.Context, in Text, _ tasks.Progress) (Words, error) {
	if strings.TrimSpace(in.Text) == "" {
		return Words{}, tasks.Permanent(tasks.FieldError("input.text", "text has no words"))
	}
	return Words{Words: strings.Fields(in.Text)}, nil
}

func count(ctx context.Context, in Words, p tasks.Progress) (Count, error) {
	seen := map[string]bool{}
	for i, w := range in.Words {
		if err := ctx.Err(); err != nil {
			return Count{}, err
		}
		seen[w] = true
		p.Report(float64(i+1)/float64(len(in.Words)), Count{Words: i + 1, Distinct: len(seen)})
	}
	return Count{Words: len(in.Words), Distinct: len(seen)}, nil
}

// A two-stage pipeline with typed stages, run in-process by the test kit.
func Example() {
	wordcount := &tasks.Pipeline{
		Name:        "wordcount",
		Description: "Counts the words of a text.",
		Input:       tasks.InputOf(Text{Text: "hello world"}, nil),
		MaxRetries:  2,
		Stages: []tasks.Stage{
			tasks.StageOf("split", split),
			tasks.StageOf("count", count).WithWeight(3),
		},
	}
	reg := tasks.NewRegistry(wordcount) // what cli.Main and worker.Main are given

	res, err := stagedtest.RunPipeline(context.Background(), reg.Get("wordcount"), `{"text": "to be or not to be"}`)
	if err != nil {
		panic(err)
	}
	fmt.Println(string(res.Output))
	// Output:
	// {"words":6,"distinct":4}
}

// Registration refuses typed stages that do not chain.
func ExampleRegistry_Register() {
	p := &tasks.Pipeline{
		Name:   "backwards",
		Input:  tasks.InputOf(Text{}, nil),
		Stages: []tasks.Stage{tasks.StageOf("count", count), tasks.StageOf("split", split)},
	}
	fmt.Println((&tasks.Registry{}).Register(p))
	// Output:
	// pipeline "backwards": stage "count" takes tasks_test.Words but the pipeline's input (InputOf) is tasks_test.Text: the stages do not chain
}

// A typed stage decodes its input strictly: a wrong field fails the job at
// once, naming the stage and the field.
func ExampleStageOf() {
	s := tasks.StageOf("count", count)
	_, err := stagedtest.RunStage(context.Background(), s, `{"word": ["a"]}`)
	fmt.Println(tasks.IsPermanent(err), tasks.ErrorMessage(err))
	// Output:
	// true stage count: unknown field "word" in its input (tasks_test.Words)
}

// InputOf's defaults fill what a submit leaves out; check refuses values
// naming the field.
func ExampleInputOf() {
	type Resize struct {
		Width  int    `json:"width" doc:"target width in pixels, 1..10000" jsonschema:"minimum=1,maximum=10000"`
		Format string `json:"format" doc:"png or jpeg"`
	}
	spec := tasks.InputOf(Resize{Width: 640, Format: "png"}, func(r *Resize) error {
		if r.Format != "png" && r.Format != "jpeg" {
			return tasks.FieldError("input.format", "format must be png or jpeg, not %q", r.Format)
		}
		return nil
	})
	in, _ := spec.Normalize([]byte(`{"width": 320}`))
	fmt.Println(string(in))
	_, err := spec.Normalize([]byte(`{"format": "gif"}`))
	fmt.Println(err.(*tasks.Error).Field, tasks.ErrorMessage(err))
	// Output:
	// {"width":320,"format":"png"}
	// input.format format must be png or jpeg, not "gif"
}
