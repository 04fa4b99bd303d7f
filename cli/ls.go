package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/client"
)

// runLs is `staged ls`: the caller's jobs, newest first, as a table (or
// JSON with --json), with the API's filters.
func runLs(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := newFlagSet("ls", "[flags]", stderr)
	cliFlags(fs)
	state := fs.String("state", "", "only jobs in these states, comma-separated (queued, running, retrying, succeeded, failed, canceled)")
	typ := fs.String("type", "", "only jobs of these types, comma-separated")
	queue := fs.String("queue", "", "only jobs on these queues, comma-separated")
	since := fs.String("since", "", "only jobs created in the last DURATION, e.g. 1h or 7d")
	after := fs.String("created-after", "", "only jobs created after this RFC 3339 time")
	before := fs.String("created-before", "", "only jobs created before this RFC 3339 time")
	limit := fs.Int("limit", 50, "at most this many jobs (1 to 500 a page; with --all, per page)")
	all := fs.Bool("all", false, "follow the pages to the end")
	cursor := fs.String("cursor", "", "continue after an earlier page (its next cursor)")
	asJSON := fs.Bool("json", false, `print {"jobs": [...], "next": ..., "counts": {...}} as the API answers it`)
	pos, code, done := parseArgs(fs, args, stdout)
	if done {
		return code
	}
	if len(pos) > 0 {
		printErr(stderr, "ls takes no arguments, only flags (see staged ls -h); got %q", pos[0])
		return exitUsage
	}
	o := &client.ListOptions{Types: split(*typ), Queues: split(*queue), Limit: *limit, Cursor: *cursor}
	for _, s := range split(*state) {
		o.States = append(o.States, api.State(s))
	}
	var err error
	if o.CreatedAfter, err = timeFlag("--created-after", *after); err != nil {
		printErr(stderr, "%v", err)
		return exitUsage
	}
	if o.CreatedBefore, err = timeFlag("--created-before", *before); err != nil {
		printErr(stderr, "%v", err)
		return exitUsage
	}
	if *since != "" {
		d, err := durationFlag("--since", *since)
		if err != nil {
			printErr(stderr, "%v", err)
			return exitUsage
		}
		o.CreatedAfter = time.Now().Add(-d)
	}
	c, code, ok := newClient(fs, getenv, stderr)
	if !ok {
		return code
	}
	l, err := c.List(ctx, o)
	if err != nil {
		return apiError(c, err, stderr, exitUsage)
	}
	for *all && l.Next != "" {
		o.Cursor = l.Cursor()
		more, err := c.List(ctx, o)
		if err != nil {
			return apiError(c, err, stderr, exitUsage)
		}
		l.Jobs, l.Next = append(l.Jobs, more.Jobs...), more.Next
	}
	if *asJSON {
		out := struct {
			*client.JobList
			Next *string `json:"next"`
		}{JobList: l}
		if l.Next != "" {
			out.Next = &l.Next
		}
		return printJSON(stdout, out)
	}
	printJobTable(stdout, l.Jobs, time.Now())
	if len(l.Counts) > 0 {
		fmt.Fprintln(stderr, countsLine(l.Counts))
	}
	if l.Next != "" {
		fmt.Fprintf(stderr, "more: staged ls --cursor %s (or --all)\n", l.Cursor())
	}
	return exitOK
}

// printJobTable prints one line per job: id, type, state, stage k/N,
// progress, age.
func printJobTable(w io.Writer, jobs []*api.Job, now time.Time) {
	if len(jobs) == 0 {
		fmt.Fprintln(w, "no jobs")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTYPE\tSTATE\tSTAGE\tPROGRESS\tAGE")
	for _, j := range jobs {
		stage := fmt.Sprintf("%d/%d", j.Stage.Index, j.Stage.Total)
		if j.Stage.Name != "" {
			stage += " " + j.Stage.Name
		}
		state := string(j.State)
		if j.State == api.StateFailed && j.Error != nil && j.Error.Stage != "" {
			state += " in " + j.Error.Stage
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d%%\t%s\n", j.ID, j.Type, state, stage, percent(j.Progress), age(now.Sub(j.CreatedAt)))
	}
	tw.Flush()
}

// countsLine is "3 queued, 1 running, ..." for the states that have jobs.
func countsLine(counts map[api.State]int) string {
	var parts []string
	total := 0
	for _, st := range []api.State{api.StateQueued, api.StateRunning, api.StateRetrying, api.StateSucceeded, api.StateFailed, api.StateCanceled} {
		if n := counts[st]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, st))
			total += n
		}
	}
	noun := "jobs"
	if total == 1 {
		noun = "job"
	}
	return fmt.Sprintf("%d %s: %s", total, noun, strings.Join(parts, ", "))
}

// age is a short duration: 45s, 12m, 3h, 2d.
func age(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(max(d, 0).Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// split returns the non-empty comma-separated parts of s.
func split(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// timeFlag parses an optional RFC 3339 time flag; "" is the zero time.
func timeFlag(name, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return t, fmt.Errorf("%s: %q is not an RFC 3339 time such as 2026-11-30T18:00:00Z", name, v)
	}
	return t, nil
}

func runRetry(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := newFlagSet("retry", "ID [--wait] [--json]", stderr)
	cliFlags(fs)
	wait := fs.Bool("wait", false, "follow the job until it finishes, then print its result; exit 0 succeeded, 1 failed, 2 canceled")
	asJSON := fs.Bool("json", false, "print the job record as JSON (with --wait: the final record, without progress)")
	pos, code, done := parseArgs(fs, args, stdout)
	if done {
		return code
	}
	id, ok := oneID(fs, pos, stderr)
	if !ok {
		return exitUsage
	}
	c, code, ok := newClient(fs, getenv, stderr)
	if !ok {
		return code
	}
	j, err := c.Retry(ctx, id)
	if err != nil {
		return apiError(c, err, stderr, exitFailed)
	}
	if *wait {
		fmt.Fprintf(stderr, "job %s queued again from stage %d/%d; its page: %s/jobs/%s\n", id, j.Stage.Index+1, j.Stage.Total, c.BaseURL(), id)
		return follow(ctx, c, j, *asJSON, stdout, stderr)
	}
	if *asJSON {
		return printJSON(stdout, j)
	}
	fmt.Fprintf(stdout, "%s (runs again from stage %d/%d)\n", j.State, j.Stage.Index+1, j.Stage.Total)
	return exitOK
}
