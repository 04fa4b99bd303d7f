// Command staged runs multi-stage jobs on asynq and Redis: the API (staged
// api), the workers (staged worker), both with an embedded Redis for trying
// it out (staged dev), and a CLI to submit, follow and cancel jobs.
//
// Run "staged help" for the commands and their settings. A program of your
// own that calls cli.Main with its pipelines gets every subcommand too.
package main

import "github.com/staged-dev/staged/cli"

func main() { cli.Main() }
