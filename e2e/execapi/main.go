// Command execapi is staged with the pipelines of the file named by
// STAGED_PIPELINES built in, so that its "api" knows them: the e2e tests of
// command stages run it as their API next to stock staged workers. (Once
// workers publish their pipelines to a catalogue the stock API reads, the
// tests can use the stock binary instead.)
package main

import (
	"fmt"
	"os"

	"github.com/staged-dev/staged/cli"
	"github.com/staged-dev/staged/pipefile"
)

func main() {
	f, err := pipefile.Load(os.Getenv("STAGED_PIPELINES"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "execapi:", err)
		os.Exit(3)
	}
	cli.Main(f.Pipelines...)
}
