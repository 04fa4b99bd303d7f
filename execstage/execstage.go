// Package execstage runs a staged stage as a command: any program, in any
// language, that reads the stage's input on stdin and writes protocol
// messages on stdout. The protocol (version 1) is docs/PROTOCOL.md; in
// short:
//
//   - stdin: the stage's input JSON (the job's input for the first stage,
//     else the previous stage's result), then end of file;
//   - environment: STAGED_JOB_ID, STAGED_STAGE, STAGED_STAGE_INDEX (1-based),
//     STAGED_STAGE_TOTAL, STAGED_ATTEMPT, STAGED_PROTOCOL=1, STAGED_SCRATCH;
//   - stdout lines starting with "::staged:: " are messages, a JSON object
//     each: {"progress":0.5,"partial":...}, {"result":...} or
//     {"error":"...","permanent":true}; every other line of stdout and
//     stderr is the stage's log;
//   - exit 0 after a result: success; exit ExitPermanent (78) or a
//     permanent error message: failed, no retry; any other exit: a failed
//     attempt, retried as the job's policy says.
//
// Cancel, timeouts, losing the lease and worker shutdown end the command's
// whole process group: SIGTERM, then SIGKILL after KillGrace. On Linux the
// command also gets SIGKILL if the worker dies (Pdeathsig). No process of
// the group outlives the stage.
//
// A Go program uses it as a stage's Run:
//
//	tasks.Stage{Name: "train", Run: (&execstage.Command{Argv: []string{"python3", "train.py"}}).Run}
package execstage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/staged-dev/staged/tasks"
)

// Protocol constants.
const (
	// Prefix starts every message line on stdout.
	Prefix = "::staged::"
	// ProtocolVersion is the value of STAGED_PROTOCOL.
	ProtocolVersion = 1
	// ExitPermanent is the exit status meaning "failed, do not retry"
	// (EX_CONFIG of sysexits.h).
	ExitPermanent = 78
)

// Command defaults: a zero Command field means the constant named after it.
const (
	// KillGraceDefault is how long a stopped stage's process group has
	// between SIGTERM and SIGKILL.
	KillGraceDefault = time.Second
	// ExitWaitDefault is how long a command may run on after closing its
	// stdout before it is killed and the stage fails.
	ExitWaitDefault = 5 * time.Second
	// MaxMessageDefault is the most bytes of one message line. The worker
	// limits results and partial results further (1 MiB by default).
	MaxMessageDefault = 4 << 20
	// MaxLogLineDefault is the most bytes of one log line; the rest of a
	// longer line is dropped.
	MaxLogLineDefault = 4 << 10
	// LogRateDefault is the most log lines per second a stage's output may
	// put in the worker's log (with bursts of LogBurstDefault); the others
	// are counted and dropped.
	LogRateDefault  = 100
	LogBurstDefault = 500
	// StderrTailDefault is how many bytes of the end of stderr a failed
	// stage's error carries.
	StderrTailDefault = 4 << 10
)

// Command is a stage run as a process. The zero value of each field but
// Argv means its documented default.
type Command struct {
	// Argv is the program and its arguments; no shell is involved. A
	// program name without a slash is looked up in PATH; a relative path
	// is relative to Dir.
	Argv []string
	// Dir is the working directory; "" means the worker's.
	Dir string
	// Env holds KEY=VALUE pairs added to the worker's environment; the
	// STAGED_ variables of the protocol are set after them.
	Env []string
	// KillGrace is the time between SIGTERM and SIGKILL; 0 means
	// KillGraceDefault.
	KillGrace time.Duration
	// ExitWait is how long the command may run on after closing its
	// stdout; 0 means ExitWaitDefault.
	ExitWait time.Duration
	// MaxMessage is the most bytes of a message line; 0 means
	// MaxMessageDefault.
	MaxMessage int
	// MaxLogLine is the most bytes kept of a log line; 0 means
	// MaxLogLineDefault.
	MaxLogLine int
	// LogRate is the most log lines per second (bursts of LogBurst); 0
	// means LogRateDefault and LogBurstDefault.
	LogRate, LogBurst int
	// StderrTail is how many bytes of the end of stderr a failure carries;
	// 0 means StderrTailDefault.
	StderrTail int
	// Logger receives the stage's log lines, with the job's id; nil means
	// slog.Default().
	Logger *slog.Logger
}

func (c *Command) withDefaults() Command {
	d := *c
	def := func(v *int, n int) {
		if *v <= 0 {
			*v = n
		}
	}
	if d.KillGrace <= 0 {
		d.KillGrace = KillGraceDefault
	}
	if d.ExitWait <= 0 {
		d.ExitWait = ExitWaitDefault
	}
	def(&d.MaxMessage, MaxMessageDefault)
	def(&d.MaxLogLine, MaxLogLineDefault)
	def(&d.LogRate, LogRateDefault)
	def(&d.LogBurst, LogBurstDefault)
	def(&d.StderrTail, StderrTailDefault)
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	return d
}

// Run runs the command as one run of a stage; it is a tasks.StageFunc.
// The stage's description (job id, stage, attempt, scratch directory) comes
// from tasks.StageInfoFrom(ctx); outside a worker the job id is empty and a
// scratch directory is made for this run alone. The result is the
// command's result message, as JSON.
func (c *Command) Run(ctx context.Context, in json.RawMessage, p tasks.Progress) (any, error) {
	if len(c.Argv) == 0 || c.Argv[0] == "" {
		return nil, tasks.Permanent(errors.New("exec stage: no command to run"))
	}
	cfg := c.withDefaults()
	info, _ := tasks.StageInfoFrom(ctx)
	scratch, err := scratchFor(info)
	if err != nil {
		return nil, fmt.Errorf("stage %s: cannot make its scratch directory: %w", info.Stage, err)
	}
	if info.Scratch == nil {
		defer os.RemoveAll(scratch)
	}
	cmd := exec.Command(cfg.Argv[0], cfg.Argv[1:]...)
	cmd.Dir = cfg.Dir
	cmd.Env = append(append(os.Environ(), cfg.Env...),
		"STAGED_PROTOCOL="+strconv.Itoa(ProtocolVersion),
		"STAGED_JOB_ID="+info.JobID,
		"STAGED_STAGE="+info.Stage,
		"STAGED_STAGE_INDEX="+strconv.Itoa(info.Index),
		"STAGED_STAGE_TOTAL="+strconv.Itoa(info.Total),
		"STAGED_ATTEMPT="+strconv.Itoa(info.Attempt),
		"STAGED_SCRATCH="+scratch,
	)
	log := cfg.Logger.With("job_id", info.JobID, "stage", info.Stage)
	pr, err := start(cmd, in)
	if err != nil {
		return nil, tasks.Permanent(startError(cfg.Argv, cfg.Dir, err))
	}
	s := &session{cfg: &cfg, proc: pr, progress: p, log: log, stage: info.Stage}
	return s.wait(ctx)
}

// scratchFor returns the stage's scratch directory: the attempt's, or a
// new one when the stage runs outside a worker.
func scratchFor(info tasks.StageInfo) (string, error) {
	if info.Scratch != nil {
		return info.Scratch()
	}
	return os.MkdirTemp("", "staged-scratch-")
}

// startError says why a command did not start, and what to do about it.
func startError(argv []string, dir string, err error) error {
	where := ""
	if dir != "" {
		where = " (in directory " + dir + ")"
	}
	hint := ""
	switch {
	case errors.Is(err, exec.ErrNotFound):
		hint = "; install it on the worker, or give its full path in run"
	case errors.Is(err, fs.ErrNotExist):
		hint = "; check run's path and dir"
	case errors.Is(err, fs.ErrPermission):
		hint = "; make the file executable (chmod +x) or run it with its interpreter, e.g. [python3, script.py]"
	}
	return fmt.Errorf("cannot start %s%s: %v%s", quoteArgv(argv), where, err, hint)
}

func quoteArgv(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = strconv.Quote(a)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
