package worker_test

import (
	"context"
	"encoding/json"
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
			{Name: "upper", Run: func(ctx context.Context, in json.RawMessage, p tasks.Progress) (any, error) {
				v, err := tasks.Decode[input](in)
				if err != nil {
					return nil, err // Permanent: a retry cannot fix bad input
				}
				p.Report(0.5, map[string]string{"seen": v.Text})
				return strings.ToUpper(v.Text), nil
			}},
			{Name: "sign", Run: func(ctx context.Context, in json.RawMessage, p tasks.Progress) (any, error) {
				s, err := tasks.Decode[string](in) // the previous stage's output
				if err != nil {
					return nil, err
				}
				return map[string]string{"text": s + " -- staged"}, nil
			}},
		},
	}
	// Reads STAGED_REDIS_URL and STAGED_CONCURRENCY; stops on SIGINT/SIGTERM.
	if err := worker.Main(tasks.NewRegistry(shout)); err != nil {
		log.Fatal(err)
	}
}
