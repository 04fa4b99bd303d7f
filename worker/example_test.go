package worker_test

import (
	"context"
	"log"
	"strings"

	"github.com/staged-dev/staged/tasks"
	"github.com/staged-dev/staged/worker"
)

// A program that runs its own two-stage pipeline: `shout` upper-cases a
// text, then `sign` appends a signature. Submit jobs of type "shout" through
// the API; run as many copies of this program as you need.
func Example() {
	type input struct {
		Text string `json:"text" doc:"the text to shout"`
	}
	shout := &tasks.Pipeline{
		Name:        "shout",
		Description: "upper-cases a text and signs it",
		Input:       tasks.InputOf(input{Text: "hello"}, nil),
		MaxRetries:  3,
		Stages: []tasks.Stage{
			tasks.StageOf("upper", func(ctx context.Context, in input, p tasks.Progress) (string, error) {
				p.Report(0.5, map[string]string{"seen": in.Text})
				return strings.ToUpper(in.Text), nil
			}),
			tasks.StageOf("sign", func(ctx context.Context, s string, p tasks.Progress) (map[string]string, error) {
				return map[string]string{"text": s + " -- staged"}, nil // s is the previous stage's output
			}),
		},
	}
	// Reads STAGED_REDIS_URL and STAGED_CONCURRENCY; stops on SIGINT/SIGTERM.
	if err := worker.Main(tasks.NewRegistry(shout)); err != nil {
		log.Fatal(err)
	}
}
