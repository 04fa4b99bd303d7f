package cli_test

import (
	"context"
	"strings"

	"github.com/staged-dev/staged/cli"
	"github.com/staged-dev/staged/tasks"
)

// Page is the input of the crawl pipeline.
type Page struct {
	URL string `json:"url" doc:"page to fetch"`
}

// Fetched is what fetch hands to parse.
type Fetched struct {
	URL  string `json:"url"`
	HTML string `json:"html"`
}

// Links is the crawl pipeline's result.
type Links struct {
	Links int `json:"links"`
}

// A team's own staged program: every subcommand of the stock binary (dev,
// api, worker, submit, watch, ...) with the crawl pipeline added to the
// built-in ones. Run "go run . dev" to try it; in production run it as
// "worker" next to a stock "staged api", which learns the pipeline from the
// catalogue the worker publishes in Redis. Main exits the
// process with the command's status; SIGINT or SIGTERM stops a server
// gracefully.
func ExampleMain() {
	crawl := &tasks.Pipeline{
		Name:        "crawl",
		Description: "Fetches a page and counts its links.",
		Input:       tasks.InputOf(Page{URL: "https://example.com"}, nil),
		Stages: []tasks.Stage{
			tasks.StageOf("fetch", func(ctx context.Context, in Page, p tasks.Progress) (Fetched, error) {
				p.Report(0.5, map[string]string{"fetching": in.URL})
				return Fetched{URL: in.URL, HTML: `<a href="/a">a</a><a href="/b">b</a>`}, nil
			}),
			tasks.StageOf("parse", func(ctx context.Context, in Fetched, p tasks.Progress) (Links, error) {
				return Links{Links: strings.Count(in.HTML, "<a ")}, nil
			}),
		},
	}
	cli.Main(crawl)
}
