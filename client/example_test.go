package client_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/staged-dev/staged/client"
)

// Submit a job, follow it to the end and read its result.
func Example() {
	ctx := context.Background()
	c := client.New("http://localhost:8080", client.WithAPIKey("my-secret"))

	job, err := c.Submit(ctx, "chain", map[string]any{"data": "x", "stages": 4},
		&client.SubmitOptions{Retention: time.Hour, IdempotencyKey: "order-42"})
	if err != nil {
		log.Fatal(err) // a *client.Problem when the API refused it
	}
	for j, err := range c.Watch(ctx, job.ID) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s stage %d/%d %.0f%%\n", j.State, j.Stage.Index, j.Stage.Total, j.Progress*100)
		if j.State.Terminal() {
			fmt.Println(string(j.Result))
		}
	}
}

// Long-poll instead of streaming: each request waits up to 30s.
func ExampleClient_Wait() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := client.New("http://localhost:8080")
	j, err := c.Wait(ctx, "0b6c6f8e-1f1a-4c1e-9a55-3f0f1b7d2a10", 30*time.Second)
	if client.StatusCode(err) == 404 {
		fmt.Println("no such job, or it expired")
		return
	}
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(j.State)
}
