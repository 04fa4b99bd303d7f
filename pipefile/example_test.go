package pipefile_test

import (
	"context"
	"fmt"

	"github.com/staged-dev/staged/pipefile"
	"github.com/staged-dev/staged/stagedtest"
)

// A pipelines file with one pipeline of one command stage, parsed and its
// pipeline run in-process with stagedtest.
func ExampleParse() {
	f, err := pipefile.Parse("pipelines.yaml", []byte(`
pipelines:
  - name: greet
    input:
      type: object
      properties:
        name: {type: string, default: "world"}
    stages:
      - name: hello
        run: [sh, -c, 'read -r in; echo "::staged:: {\"result\": $in}"']
`), ".")
	if err != nil {
		panic(err)
	}
	p := f.Pipelines[0]
	res, err := stagedtest.RunPipeline(context.Background(), p, nil)
	if err != nil {
		panic(err)
	}
	fmt.Println(p.Name, res.Stages, string(res.Output))
	// Output:
	// greet [hello] {"name":"world"}
}
