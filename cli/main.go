// Package cli is the staged command line: the API (staged api), the workers
// (staged worker), both with an embedded Redis for trying it out (staged
// dev), and a CLI to submit, follow and cancel jobs.
//
// The stock binary (cmd/staged) is one call to Main. A team's own program
// gets every subcommand, with its pipelines added to the built-in ones, the
// same way:
//
//	func main() { cli.Main(crawl.Pipeline()) }
//
// Run "staged help" for the commands and their settings.
package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"

	"github.com/staged-dev/staged/tasks"
)

// version is set at build time:
// go build -ldflags "-X github.com/staged-dev/staged/cli.version=v1.2.3".
var version = "dev"

// Exit statuses.
const (
	exitOK          = 0
	exitFailed      = 1 // the job failed; cancel of a finished job (409); a server stopped on an error
	exitCanceled    = 2 // the job was canceled
	exitUsage       = 3 // bad command line or settings, or the API cannot be reached
	exitInterrupted = 130
)

// Main runs the staged command line in os.Args with the built-in pipelines
// and ps, and exits the process with its status. SIGINT or SIGTERM stops a
// server gracefully; a second one exits at once.
func Main(ps ...*tasks.Pipeline) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		cancel() // graceful: servers drain, watchers stop
		<-sigs
		fmt.Fprintln(os.Stderr, "staged: second signal, exiting at once")
		os.Exit(exitInterrupted)
	}()
	code := runWith(ctx, ps, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	cancel()
	os.Exit(code)
}

// run runs the staged command line args with the built-in pipelines only and
// returns the exit status.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	return runWith(ctx, nil, args, getenv, stdout, stderr)
}

// runWith runs the staged command line args, with pipelines ps added to the
// built-in ones in dev and worker, and returns the exit status.
func runWith(ctx context.Context, ps []*tasks.Pipeline, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "dev", "api", "worker":
		return runServe(ctx, cmd, ps, rest, getenv, stdout, stderr)
	case "submit":
		return runSubmit(ctx, rest, getenv, stdout, stderr)
	case "status":
		return runStatus(ctx, rest, getenv, stdout, stderr)
	case "watch":
		return runWatch(ctx, rest, getenv, stdout, stderr)
	case "cancel":
		return runCancel(ctx, rest, getenv, stdout, stderr)
	case "ls":
		return runLs(ctx, rest, getenv, stdout, stderr)
	case "retry":
		return runRetry(ctx, rest, getenv, stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintf(stdout, "staged %s (%s %s/%s)\n", buildVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return exitOK
	case "help", "-h", "-help", "--help":
		if len(rest) > 0 && rest[0] != "help" {
			return runWith(ctx, ps, []string{rest[0], "-h"}, getenv, stdout, stderr)
		}
		usage(stdout)
		return exitOK
	default:
		fmt.Fprintf(stderr, "staged: unknown command %q\n\n", cmd)
		usage(stderr)
		return exitUsage
	}
}

// buildVersion is version, or the module version when built by "go install
// module@version".
func buildVersion() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return version
}

func usage(w io.Writer) {
	fmt.Fprint(w, `staged runs multi-stage jobs on asynq and Redis.

Usage:
  staged dev                 API, worker and dashboard in one process (embedded Redis unless STAGED_REDIS_URL is set)
  staged api                 the HTTP API and the dashboard
  staged worker              a worker: runs the jobs' stages
  staged submit TYPE         submit a job (--input JSON|@file, --wait to follow it)
  staged status ID           show a job
  staged watch ID            follow a job until it finishes
  staged cancel ID           cancel a job
  staged ls                  list your jobs, newest first (--state, --type, --queue, --since, --json)
  staged retry ID            run a failed or canceled job again from its failed stage (--wait)
  staged version             print the version
  staged help [COMMAND]      this help, or a command's flags

Settings (environment, overridden by the flags of the same name; the
secrets have no flag, as a command line shows in ps):
  STAGED_REDIS_URL     --redis        redis://, rediss://, redis-sentinel://s1:p1,s2:p2/0?master=NAME,
                                      redis+cluster://n1:p1,n2:p2,n3:p3 (api, worker: default `+RedisURLDefault+`)
  STAGED_ADDR          --addr         API listen address (default `+AddrDefault+`)
  STAGED_SERVER        --server       the API the CLI talks to (default `+ServerDefault+`)
  STAGED_CONCURRENCY   --concurrency  jobs per worker
  STAGED_RETENTION     --retention    how long finished jobs stay readable (default 24h)
  STAGED_PIPELINES     --pipelines    a YAML or JSON file of pipelines whose stages are commands (dev, worker; docs/PROTOCOL.md)
  STAGED_PIPELINES_ONLY --pipelines-only  run only these of the program's pipelines, name,... (dev, worker)
  STAGED_HEARTBEAT     --heartbeat    how often a worker refreshes its pipeline catalogue entry (default 5s)
  STAGED_CATALOG_TTL   --catalog-ttl  how long a pipeline stays known with no live worker (default 24h)
  STAGED_ORPHAN_AFTER  --orphan-after how long a job waits for a worker with its pipeline's definition (default 10m)
  STAGED_QUEUES        --queues       queues a submit may name and workers serve, name=weight,... (default `+QueuesDefault+`)
  STAGED_API_KEYS                     name=secret,... keys the API accepts (each name is a tenant)
  STAGED_ADMIN_KEYS                   name=secret,... keys that may open the dashboard
  STAGED_TENANT_MAX_LIVE --tenant-max-live  live jobs one tenant may have, 0 = no limit (default 10000)
  STAGED_REDIS_WAIT_REPLICAS          replicas that must have a job before 202 (default auto: 1 if any, 0 = off)
  STAGED_REDIS_WAIT_TIMEOUT           how long a submit waits for them (default 1s; then 503)
  STAGED_MAX_STREAMS_PER_KEY --max-streams-per-key  event streams one key may hold open, 0 = no cap (default 100)
  STAGED_MAX_WAITS_PER_KEY --max-waits-per-key  long polls one key may hold, 0 = no cap (default 100)
  STAGED_API_KEYS_FILE --api-keys-file  keys by digest, lines "name sha256:<hex of SHA-256(secret)> [admin]"
  STAGED_MONITORING_WRITE --monitoring-write  1 lets the dashboard change queues and tasks (default read-only)
  STAGED_RATE_LIMIT    --rate-limit   requests per second per key (default 100, 0 = off)
  STAGED_LOG_FORMAT    --log-format   json (api, worker) or text (dev)
  STAGED_API_KEY                      the secret the CLI sends

Exit status: 0 ok, or the job succeeded; 1 the job failed, or cancel found it
already finished; 2 the job was canceled; 3 bad usage or settings, an error
answer of the API, or the API cannot be reached; 130 interrupted.
`)
}

// newFlagSet returns a FlagSet for subcommand name that reports errors on
// stderr and prints usage (a line, then the flags) on -h.
func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("staged "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: staged %s %s\n\nFlags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseArgs parses flags and positional arguments in any order ("submit
// train --wait" and "submit --wait train"). It returns the positional ones,
// or an exit status when parsing ends the command (-h: 0, an error: 3).
func parseArgs(fs *flag.FlagSet, args []string, stdout io.Writer) (pos []string, code int, done bool) {
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "-h" || a == "-help" || a == "--help" {
			fs.SetOutput(stdout)
			fs.Usage()
			return nil, exitOK, true
		}
	}
	for {
		if err := fs.Parse(args); err != nil {
			return nil, exitUsage, true // the flag package printed the error and usage
		}
		if fs.NArg() == 0 {
			return pos, 0, false
		}
		rest := fs.Args()
		// After "--" everything is positional.
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), 0, false
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// printErr prints "staged: msg" on stderr.
func printErr(stderr io.Writer, format string, args ...any) {
	fmt.Fprintf(stderr, "staged: "+format+"\n", args...)
}
