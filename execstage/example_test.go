package execstage_test

import (
	"context"
	"fmt"

	"github.com/staged-dev/staged/execstage"
	"github.com/staged-dev/staged/stagedtest"
	"github.com/staged-dev/staged/tasks"
)

// A stage run as a command, tested in-process with stagedtest: the command
// reads its input on stdin and writes a progress report and its result as
// protocol messages on stdout.
func ExampleCommand() {
	script := `read -r in
echo '::staged:: {"progress": 0.5, "partial": {"read": true}}'
echo "::staged:: {\"result\": {\"got\": $in}}"`
	stage := tasks.Stage{Name: "echo", Run: (&execstage.Command{Argv: []string{"sh", "-c", script}}).Run}
	res, err := stagedtest.RunStage(context.Background(), stage, `{"n": 1}`)
	if err != nil {
		panic(err)
	}
	fmt.Println(string(res.Output))
	fmt.Printf("%s at %.1f: %s\n", res.Reports[0].Stage, res.Reports[0].Fraction, res.Reports[0].Partial)
	// Output:
	// {"got":{"n":1}}
	// echo at 0.5: {"read": true}
}
