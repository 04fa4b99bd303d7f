package server_test

import (
	"context"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/staged-dev/staged/builtin"
	"github.com/staged-dev/staged/server"
	"github.com/staged-dev/staged/tasks"
)

// The API in a program of its own, for the built-in pipelines, until
// SIGINT or SIGTERM. "staged api" (package cli) does this with every
// setting read from flags and the environment; use the server package
// directly only to embed the API in another program.
func ExampleNew() {
	const addr = "localhost:6379"
	srv, err := server.New(server.Config{
		Redis:        redis.NewClient(&redis.Options{Addr: addr}),
		RedisConnOpt: asynq.RedisClientOpt{Addr: addr},
		Registry:     tasks.NewRegistry(builtin.Pipelines()...),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := srv.Run(ctx, ":8080"); err != nil {
		log.Fatal(err)
	}
}
