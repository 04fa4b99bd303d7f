package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/staged-dev/staged/api"
	"golang.org/x/term"
)

// display shows a followed job's progress.
type display interface {
	// update shows a new record.
	update(j *api.Job)
	// finish shows the final record and ends the display.
	finish(j *api.Job)
	// stop ends the display early (the watch failed).
	stop()
}

// newDisplay returns a live progress bar when w is a terminal, else a
// display that prints one plain line per change.
func newDisplay(w io.Writer) display {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return newBarDisplay(w, time.Now, refreshEvery)
	}
	return &lineDisplay{w: w}
}

type nopDisplay struct{}

func (nopDisplay) update(*api.Job) {}
func (nopDisplay) finish(*api.Job) {}
func (nopDisplay) stop()           {}

// lineDisplay prints "2026-11-25T10:00:01Z running stage 2/4 preprocess 41%"
// whenever that line (without the time) changes.
type lineDisplay struct {
	w    io.Writer
	last string
}

func (d *lineDisplay) update(j *api.Job) {
	// A line per change of state, stage or whole percent (not per partial
	// result), with the partial result of that moment.
	line := describe(j)
	if line == d.last {
		return
	}
	d.last = line
	if p := partialLine(j.Partial, 60); p != "" && !j.State.Terminal() {
		line += " · " + p
	}
	ts := j.UpdatedAt
	if ts.IsZero() {
		ts = time.Now()
	}
	fmt.Fprintf(d.w, "%s %s\n", ts.UTC().Format(time.RFC3339), line)
}

func (d *lineDisplay) finish(j *api.Job) { d.update(j) }
func (d *lineDisplay) stop()             {}

// describe is the one-line state of j: "queued", "running stage 2/4
// preprocess 41%", "failed stage 3/4 train 60%: message".
func describe(j *api.Job) string {
	state := string(j.State)
	if j.CancelRequested && !j.State.Terminal() {
		state = "canceling"
	}
	if j.Stage.Index == 0 && !j.State.Terminal() {
		return state
	}
	s := fmt.Sprintf("%s stage %d/%d %s %d%%", state, j.Stage.Index, j.Stage.Total, j.Stage.Name, percent(j.Progress))
	if j.State == api.StateRetrying && j.Attempt > 0 {
		s += fmt.Sprintf(" (attempt %d)", j.Attempt+1)
	}
	if j.State == api.StateFailed && j.Error != nil {
		s += ": " + j.Error.Message
	}
	return s
}

// percent is the whole percentage of p (0..1), rounded down so that 100%
// means done.
func percent(p float64) int {
	return int(min(max(p, 0), 1)*100 + 1e-6)
}

// refreshEvery is how often the bar redraws its clock between records.
const refreshEvery = 500 * time.Millisecond

// barMax is the bar's resolution: progress in thousandths.
const barMax = 1000

// barDisplay draws a live progress bar (github.com/schollz/progressbar):
//
//	stage 2/4 preprocess · 12s · ETA 18s  41% |████████████░░░░░░░░░░░░░░░░░░|
//
// The elapsed time and the ETA are the job's own (from its started_at), not
// the bar's, so attaching to a running job shows them right; they tick
// between records.
type barDisplay struct {
	w    io.Writer
	bar  *progressbar.ProgressBar
	now  func() time.Time
	quit chan struct{}
	wg   sync.WaitGroup

	mu   sync.Mutex
	job  *api.Job
	seen time.Time // local time job arrived
	once sync.Once
}

func newBarDisplay(w io.Writer, now func() time.Time, refresh time.Duration) *barDisplay {
	d := &barDisplay{w: w, now: now, quit: make(chan struct{})}
	d.bar = progressbar.NewOptions(barMax,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetWidth(30),
		progressbar.OptionSetTheme(progressbar.Theme{Saucer: "█", SaucerPadding: "░", BarStart: "|", BarEnd: "|"}),
		progressbar.OptionSetPredictTime(false), // ours, from the job's times
		progressbar.OptionSetElapsedTime(false),
		progressbar.OptionUseANSICodes(true),
		progressbar.OptionSetDescription("connecting…"),
	)
	if refresh > 0 {
		d.wg.Add(1)
		go d.tick(refresh)
	}
	return d
}

func (d *barDisplay) tick(every time.Duration) {
	defer d.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-d.quit:
			return
		case <-t.C:
			d.mu.Lock()
			if d.job != nil {
				d.bar.Describe(barText(d.job, d.now().Sub(d.seen)))
			}
			d.mu.Unlock()
		}
	}
}

func (d *barDisplay) update(j *api.Job) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.job, d.seen = j, d.now()
	d.bar.Describe(barText(j, 0))
	d.bar.Set(min(int(j.Progress*barMax), barMax-1)) // full only in finish
}

func (d *barDisplay) finish(j *api.Job) {
	d.stopTicker()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.job, d.seen = j, d.now()
	d.bar.Describe(barText(j, 0))
	if j.State == api.StateSucceeded {
		d.bar.Finish()
	} else {
		d.bar.Set(min(int(j.Progress*barMax), barMax-1))
		d.bar.Exit()
	}
	fmt.Fprintln(d.w)
}

func (d *barDisplay) stop() {
	d.stopTicker()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.bar.Exit()
	fmt.Fprintln(d.w)
}

func (d *barDisplay) stopTicker() {
	d.once.Do(func() { close(d.quit) })
	d.wg.Wait()
}

// barText is the text before the bar: where the job is, how long it has
// run and, while it runs, the estimated time left. since is the time since
// the record arrived, to keep the clock moving between records.
func barText(j *api.Job, since time.Duration) string {
	elapsed := jobElapsed(j, since)
	switch {
	case j.State == api.StateQueued || j.Stage.Index == 0 && !j.State.Terminal():
		return "queued · " + fmtDur(elapsed)
	case j.State.Terminal():
		return fmt.Sprintf("%s · stage %d/%d %s · %s", j.State, j.Stage.Index, j.Stage.Total, j.Stage.Name, fmtDur(elapsed))
	}
	state := "stage"
	switch {
	case j.CancelRequested:
		state = "canceling · stage"
	case j.State == api.StateRetrying:
		state = "retrying · stage"
	}
	s := fmt.Sprintf("%s %d/%d %s · %s · ETA %s", state, j.Stage.Index, j.Stage.Total, j.Stage.Name,
		fmtDur(elapsed), eta(j, since))
	if p := partialLine(j.Partial, 40); p != "" {
		s += " · " + p
	}
	return s
}

// partialLine is one short line of a partial result: its numbers first
// ("epoch=12 loss=0.4132"), then its short strings and booleans; nested
// values are left out. At most width characters.
func partialLine(raw json.RawMessage, width int) string {
	if len(raw) == 0 {
		return ""
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return ""
	}
	var nums, rest []string
	switch v := v.(type) {
	case json.Number:
		nums = append(nums, shortNumber(v))
	case string:
		rest = append(rest, v)
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			switch x := v[k].(type) {
			case json.Number:
				nums = append(nums, k+"="+shortNumber(x))
			case string:
				if len(x) <= 24 {
					rest = append(rest, k+"="+x)
				}
			case bool:
				rest = append(rest, fmt.Sprintf("%s=%v", k, x))
			}
		}
	}
	line := strings.Join(append(nums, rest...), " ")
	if r := []rune(line); len(r) > width {
		line = string(r[:width-1]) + "…"
	}
	return line
}

// shortNumber shows n with at most 4 significant digits after the point
// for fractions: 0.413212 → 0.4132, 12 → 12.
func shortNumber(n json.Number) string {
	if i, err := n.Int64(); err == nil {
		return strconv.FormatInt(i, 10)
	}
	f, err := n.Float64()
	if err != nil {
		return n.String()
	}
	return strconv.FormatFloat(f, 'g', 4, 64)
}

// jobElapsed is how long j has been running (queued, if it has not
// started): measured on the server's clock up to the record's update, plus
// since, so that the client's clock skew does not matter.
func jobElapsed(j *api.Job, since time.Duration) time.Duration {
	start := j.CreatedAt
	if j.StartedAt != nil {
		start = *j.StartedAt
	}
	if start.IsZero() {
		return 0
	}
	end := j.UpdatedAt
	if j.FinishedAt != nil {
		end, since = *j.FinishedAt, 0
	}
	return max(end.Sub(start)+since, 0)
}

// eta extrapolates the job's rate so far: the time left at its last update,
// less the time since.
func eta(j *api.Job, since time.Duration) string {
	p := j.Progress
	if p < 0.01 || p >= 1 || j.StartedAt == nil {
		return "–"
	}
	atUpdate := jobElapsed(j, 0)
	left := time.Duration(float64(atUpdate)*(1-p)/p) - since
	return fmtDur(max(left, 0))
}

// fmtDur formats d for people: 850ms, 12s, 3m05s, 1h02m.
func fmtDur(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < 10*time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
}
