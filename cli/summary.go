package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/staged-dev/staged/api"
)

// printSummary prints the human view of a record (staged status):
//
//	job       0b6c6f8e-…  (chain)
//	state     running, attempt 1
//	stage     2/4 stage2  41%
//	stages    stage1  succeeded  1.2s
//	          stage2  running    3.0s
//	…
func printSummary(w io.Writer, j *api.Job, now time.Time) {
	row := func(label, format string, args ...any) {
		fmt.Fprintf(w, "%-*s%s\n", labelWidth, label, fmt.Sprintf(format, args...))
	}
	row("job", "%s  (%s)", j.ID, j.Type)
	state := string(j.State)
	if j.CancelRequested && !j.State.Terminal() {
		state += " (cancel requested)"
	}
	if j.Attempt > 0 {
		state += fmt.Sprintf(", attempt %d", j.Attempt)
	}
	if j.State == api.StateRetrying && j.NextAttemptAt != nil {
		state += ", next attempt at " + stamp(*j.NextAttemptAt)
	}
	row("state", "%s", state)
	if j.Stage.Index > 0 {
		row("stage", "%d/%d %s  %d%%", j.Stage.Index, j.Stage.Total, j.Stage.Name, percent(j.Progress))
	} else {
		row("stage", "0/%d  %d%%", j.Stage.Total, percent(j.Progress))
	}
	st := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for i, s := range j.Stages {
		label := ""
		if i == 0 {
			label = "stages"
		}
		fmt.Fprintf(st, "%-*s%s\t%s\t%s\n", labelWidth, label, s.Name, stageState(s), stageDuration(s, now))
	}
	st.Flush()
	for _, t := range []struct {
		label string
		t     *time.Time
	}{{"created", &j.CreatedAt}, {"started", j.StartedAt}, {"finished", j.FinishedAt}, {"expires", &j.ExpiresAt}} {
		if t.t != nil && !t.t.IsZero() {
			row(t.label, "%s", stamp(*t.t))
		}
	}
	if j.Error != nil {
		row("error", "stage %s: %s", j.Error.Stage, j.Error.Message)
	}
	if isJSONValue(j.Result) {
		row("result", "%s", indentUnder(j.Result))
	} else if isJSONValue(j.Partial) {
		row("partial", "%s", indentUnder(j.Partial))
	}
}

// labelWidth is the width of the summary's label column.
const labelWidth = 10

func stageState(s api.StageStatus) string {
	if s.Attempts > 1 {
		return fmt.Sprintf("%s (%d attempts)", s.State, s.Attempts)
	}
	return string(s.State)
}

// stageDuration is how long a stage ran, or has been running.
func stageDuration(s api.StageStatus, now time.Time) string {
	switch {
	case s.StartedAt == nil:
		return ""
	case s.FinishedAt != nil:
		return fmtDur(s.FinishedAt.Sub(*s.StartedAt))
	default:
		return fmtDur(max(now.Sub(*s.StartedAt), 0)) + " so far"
	}
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func isJSONValue(raw json.RawMessage) bool {
	s := strings.TrimSpace(string(raw))
	return s != "" && s != "null"
}

// indentUnder indents JSON with its continuation lines under the value
// column; a short value stays on one line.
func indentUnder(raw json.RawMessage) string {
	var buf bytes.Buffer
	if json.Compact(&buf, raw) == nil && buf.Len() <= 100 {
		return string(unescapeHTML(buf.Bytes()))
	}
	buf.Reset()
	if json.Indent(&buf, raw, strings.Repeat(" ", labelWidth), "  ") != nil {
		return string(raw)
	}
	return string(unescapeHTML(buf.Bytes()))
}
