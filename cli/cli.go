package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/client"
)

// cliFlags defines --server on fs.
func cliFlags(fs *flag.FlagSet) {
	addFlags(fs, flagHelp, setServer)
}

// newClient reads the CLI settings and returns an API client, or an exit
// status after printing why not.
func newClient(fs *flag.FlagSet, getenv func(string) string, stderr io.Writer) (*client.Client, int, bool) {
	cfg, err := loadCLI(newSource(fs, getenv))
	if err != nil {
		printErr(stderr, "%v", err)
		return nil, exitUsage, false
	}
	var opts []client.Option
	if cfg.APIKey != "" {
		opts = append(opts, client.WithAPIKey(cfg.APIKey))
	}
	return client.New(cfg.Server, opts...), 0, true
}

// oneID checks pos holds exactly one job id.
func oneID(fs *flag.FlagSet, pos []string, stderr io.Writer) (string, bool) {
	if len(pos) != 1 {
		printErr(stderr, "%s needs exactly one job ID (see %s -h)", strings.TrimPrefix(fs.Name(), "staged "), fs.Name())
		return "", false
	}
	if !api.ValidID(pos[0]) {
		printErr(stderr, "%q is not a job ID: job IDs are UUIDs such as 0b6c6f8e-1f1a-4c1e-9a55-3f0f1b7d2a10", pos[0])
		return "", false
	}
	return pos[0], true
}

// apiError prints err, a failed API call, and returns its exit status: the
// API's problem as "staged: title: detail" (status 3, or conflict for a
// 409), or a connection error with a hint (3); 130 when interrupted.
func apiError(c *client.Client, err error, stderr io.Writer, conflict int) int {
	var p *client.Problem
	var ue *url.Error
	switch {
	case errors.Is(err, context.Canceled):
		printErr(stderr, "interrupted")
		return exitInterrupted
	case errors.As(err, &p):
		printErr(stderr, "%s", p.Error())
		if p.Status == 409 {
			return conflict
		}
		return exitUsage
	case errors.As(err, &ue):
		printErr(stderr, "cannot reach the staged API at %s: %v\n"+
			"  (is `staged dev` or `staged api` running there? set STAGED_SERVER or --server)", c.BaseURL(), ue.Err)
		return exitUsage
	default:
		printErr(stderr, "%v", err)
		return exitUsage
	}
}

func runSubmit(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := newFlagSet("submit", "TYPE [flags]", stderr)
	cliFlags(fs)
	input := fs.String("input", "", "the job's input: JSON, or @file to read it from a file")
	wait := fs.Bool("wait", false, "follow the job until it finishes, then print its result; exit 0 succeeded, 1 failed, 2 canceled")
	retention := fs.String("retention", "", "how long the finished job stays readable, e.g. 1h or 7d")
	timeout := fs.String("timeout", "", "timeout of one attempt, e.g. 10m")
	maxRetries := fs.String("max-retries", "", "retries after a failed attempt (default: the pipeline's)")
	queue := fs.String("queue", "", "asynq queue (default: default)")
	idem := fs.String("idempotency-key", "", "a repeat submit with the same key returns the first job")
	asJSON := fs.Bool("json", false, "print the job record as JSON (with --wait: the final record, without progress)")
	pos, code, done := parseArgs(fs, args, stdout)
	if done {
		return code
	}
	if len(pos) != 1 {
		printErr(stderr, "submit needs exactly one job type, as in: staged submit chain --input '{\"data\":\"x\"}' --wait")
		return exitUsage
	}
	typ := pos[0]
	opts := &client.SubmitOptions{Queue: *queue, IdempotencyKey: *idem}
	var err error
	if opts.Retention, err = durationFlag("--retention", *retention); err != nil {
		printErr(stderr, "%v", err)
		return exitUsage
	}
	if opts.Timeout, err = durationFlag("--timeout", *timeout); err != nil {
		printErr(stderr, "%v", err)
		return exitUsage
	}
	if *maxRetries != "" {
		n, err := strconv.Atoi(*maxRetries)
		if err != nil || n < 0 {
			printErr(stderr, "--max-retries: %q is not a whole number ≥ 0", *maxRetries)
			return exitUsage
		}
		opts.MaxRetries = &n
	}
	in, err := readInput(*input)
	if err != nil {
		printErr(stderr, "--input: %v", err)
		return exitUsage
	}
	c, code, ok := newClient(fs, getenv, stderr)
	if !ok {
		return code
	}
	j, err := c.Submit(ctx, typ, in, opts)
	if err != nil {
		return apiError(c, err, stderr, exitUsage) // a 409 here is a reused Idempotency-Key
	}
	if !*wait {
		if *asJSON {
			return printJSON(stdout, j)
		}
		fmt.Fprintln(stdout, j.ID)
		return exitOK
	}
	// stdout gets only the result; the id and the progress go to stderr,
	// so that the job can be found (status, cancel) while this waits.
	fmt.Fprintf(stderr, "job %s submitted; its page: %s/jobs/%s\n", j.ID, c.BaseURL(), j.ID)
	return follow(ctx, c, j, *asJSON, stdout, stderr)
}

// durationFlag parses an optional duration flag; "" is 0.
func durationFlag(name, v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	d, err := parseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s: %q is not a positive duration such as 90s, 10m, 1h or 7d", name, v)
	}
	return d, nil
}

// readInput returns the --input JSON: inline, or from @file. "" is nil (the
// pipeline's defaults).
func readInput(v string) (json.RawMessage, error) {
	if v == "" {
		return nil, nil
	}
	b := []byte(v)
	if name, ok := strings.CutPrefix(v, "@"); ok {
		var err error
		if b, err = os.ReadFile(name); err != nil {
			return nil, err
		}
	}
	b = bytes.TrimSpace(b)
	var probe any
	if err := json.Unmarshal(b, &probe); err != nil {
		return nil, fmt.Errorf("not valid JSON: %v", err)
	}
	if _, ok := probe.(map[string]any); !ok {
		return nil, errors.New(`the input must be a JSON object, such as {"data": "x"}`)
	}
	return b, nil
}

// idCommand parses the arguments of a command that takes one job id and an
// optional --json (status, watch, cancel) and makes the API client. When ok
// is false the command is over and code is its exit status.
func idCommand(name, jsonHelp string, args []string, getenv func(string) string, stdout, stderr io.Writer) (c *client.Client, id string, asJSON bool, code int, ok bool) {
	fs := newFlagSet(name, "ID [--json]", stderr)
	cliFlags(fs)
	jsonFlag := fs.Bool("json", false, jsonHelp)
	pos, code, done := parseArgs(fs, args, stdout)
	if done {
		return nil, "", false, code, false
	}
	if id, ok = oneID(fs, pos, stderr); !ok {
		return nil, "", false, exitUsage, false
	}
	if c, code, ok = newClient(fs, getenv, stderr); !ok {
		return nil, "", false, code, false
	}
	return c, id, *jsonFlag, 0, true
}

func runStatus(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	c, id, asJSON, code, ok := idCommand("status", "print the raw job record as JSON", args, getenv, stdout, stderr)
	if !ok {
		return code
	}
	j, err := c.Get(ctx, id)
	if err != nil {
		return apiError(c, err, stderr, exitFailed)
	}
	if asJSON {
		return printJSON(stdout, j)
	}
	printSummary(stdout, j, time.Now())
	return exitOK
}

func runWatch(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	c, id, asJSON, code, ok := idCommand("watch", "print only the final record as JSON, without progress", args, getenv, stdout, stderr)
	if !ok {
		return code
	}
	return follow(ctx, c, &api.Job{ID: id}, asJSON, stdout, stderr)
}

// cancelWait bounds how long staged cancel waits for a running job to stop.
const cancelWait = 10 * time.Second

func runCancel(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	c, id, asJSON, code, ok := idCommand("cancel", "print the job record as JSON", args, getenv, stdout, stderr)
	if !ok {
		return code
	}
	j, err := c.Cancel(ctx, id)
	if err != nil {
		return apiError(c, err, stderr, exitFailed)
	}
	if asJSON {
		return printJSON(stdout, j)
	}
	if j.CancelRequested && !j.State.Terminal() {
		// The worker stops a running job within about a second: wait for it,
		// so that what follows (staged retry) sees the job canceled.
		if done, err := c.Wait(ctx, id, cancelWait); err == nil && done.State.Terminal() {
			j = done
		} else {
			fmt.Fprintf(stdout, "%s (cancel requested: the worker is stopping it)\n", j.State)
			return exitOK
		}
	}
	fmt.Fprintln(stdout, j.State)
	return exitOK
}

// follow watches job j until it finishes, showing its progress (unless
// asJSON), and prints the outcome: the result, or the final record with
// asJSON. It returns 0 succeeded, 1 failed, 2 canceled.
func follow(ctx context.Context, c *client.Client, j *api.Job, asJSON bool, stdout, stderr io.Writer) int {
	// Progress goes to stderr (a bar when it is a terminal), so that stdout
	// holds only the result: staged submit ... --wait > out.json.
	var d display = nopDisplay{}
	if !asJSON {
		d = newDisplay(stderr)
	}
	last := j
	if j.Type != "" {
		d.update(j)
	}
	for rec, err := range c.Watch(ctx, j.ID) {
		if err != nil {
			d.stop()
			if last.Type != "" && !asJSON {
				printErr(stderr, "stopped following job %s; it goes on (staged status %s, staged cancel %s)", last.ID, last.ID, last.ID)
			}
			return apiError(c, err, stderr, exitFailed)
		}
		last = rec
		d.update(rec)
	}
	d.finish(last)
	if asJSON {
		printJSON(stdout, last)
	} else {
		printOutcome(stdout, stderr, last)
	}
	switch last.State {
	case api.StateSucceeded:
		return exitOK
	case api.StateCanceled:
		return exitCanceled
	default:
		return exitFailed
	}
}

// printOutcome prints a finished job's result on stdout, or why it did not
// succeed on stderr.
func printOutcome(stdout, stderr io.Writer, j *api.Job) {
	switch j.State {
	case api.StateSucceeded:
		writeJSONValue(stdout, j.Result)
	case api.StateCanceled:
		printErr(stderr, "job %s was canceled", j.ID)
	default:
		if j.Error != nil {
			printErr(stderr, "job %s failed in stage %s: %s", j.ID, j.Error.Stage, j.Error.Message)
		} else {
			printErr(stderr, "job %s %s", j.ID, j.State)
		}
	}
}

// printJSON prints v as indented JSON.
func printJSON(w io.Writer, v any) int {
	b, err := json.Marshal(v)
	if err != nil {
		fmt.Fprintln(w, err)
		return exitFailed
	}
	writeJSONValue(w, b)
	return exitOK
}

// writeJSONValue prints raw JSON indented, "<", ">" and "&" shown as
// themselves rather than as the \u003c escapes Go's encoder writes; null
// for none.
func writeJSONValue(w io.Writer, raw json.RawMessage) {
	if len(raw) == 0 {
		raw = json.RawMessage("null")
	}
	var buf bytes.Buffer
	if json.Indent(&buf, raw, "", "  ") != nil {
		buf.Reset()
		buf.Write(raw)
	}
	out := unescapeHTML(buf.Bytes())
	w.Write(append(out, '\n'))
}

// unescapeHTML turns the escapes \u003c, \u003e and \u0026 of valid JSON
// back into "<", ">" and "&"; every other escape is kept as it is.
func unescapeHTML(b []byte) []byte {
	if !bytes.Contains(b, []byte(`\u00`)) {
		return b
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' || i+1 >= len(b) {
			out = append(out, b[i])
			continue
		}
		if b[i+1] == 'u' && i+6 <= len(b) {
			switch string(b[i+2 : i+6]) {
			case "003c", "003C":
				out, i = append(out, '<'), i+5
				continue
			case "003e", "003E":
				out, i = append(out, '>'), i+5
				continue
			case "0026":
				out, i = append(out, '&'), i+5
				continue
			}
		}
		out, i = append(out, b[i], b[i+1]), i+1 // any other escape, whole
	}
	return out
}
