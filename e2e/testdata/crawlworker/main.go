// Command crawlworker is a team's own staged program, as the README's
// "Your own pipelines" shows: one call to cli.Main with its pipeline gives
// it every staged subcommand. The e2e tests build it as a separate module
// (go.mod replaces staged with this checkout) and run it as `worker`.
//
// CRAWL_VERSION=2 adds a third stage: another definition of the pipeline,
// for the rolling-deploy test.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/staged-dev/staged/cli"
	"github.com/staged-dev/staged/tasks"
)

// CrawlInput is the crawl pipeline's input.
type CrawlInput struct {
	URL   string `json:"url" doc:"the page to start from (required)" jsonschema:"minLength=1"`
	Depth int    `json:"depth" doc:"how many links deep to follow, 1..5" jsonschema:"minimum=1,maximum=5"`
	MS    int    `json:"ms" doc:"milliseconds each stage works, 0..60000" jsonschema:"minimum=0,maximum=60000"`
}

// Page is what the stages pass on: the input, and which process ran which
// stage of which pipeline version.
type Page struct {
	CrawlInput
	Ran []string `json:"ran"`
}

func stage(name string) tasks.StageFunc {
	return func(ctx context.Context, in json.RawMessage, p tasks.Progress) (any, error) {
		var pg Page
		if err := json.Unmarshal(in, &pg); err != nil {
			return nil, tasks.Permanent(err)
		}
		select {
		case <-time.After(time.Duration(pg.MS) * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		p.Report(1, nil)
		pg.Ran = append(pg.Ran, fmt.Sprintf("%s@%d/v%s", name, os.Getpid(), version()))
		return pg, nil
	}
}

func version() string {
	if v := os.Getenv("CRAWL_VERSION"); v != "" {
		return v
	}
	return "1"
}

// Crawl is the pipeline.
func Crawl() *tasks.Pipeline {
	p := &tasks.Pipeline{
		Name:        "crawl",
		Description: "fetches a page and follows its links (a test pipeline)",
		Input:       tasks.InputOf(CrawlInput{URL: "", Depth: 2, MS: 0}, nil),
		Stages: []tasks.Stage{
			{Name: "fetch", Run: stage("fetch")},
			{Name: "parse", Run: stage("parse")},
		},
	}
	if version() == "2" {
		p.Stages = append(p.Stages, tasks.Stage{Name: "store", Run: stage("store")})
	}
	return p
}

func main() { cli.Main(Crawl()) }
