package execstage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/time/rate"

	"github.com/staged-dev/staged/tasks"
)

// drainWait bounds the wait for the output pipes to close once the
// command's process group is gone (a process that left the group may hold
// them open).
const drainWait = time.Second

// session is one run of a command: it reads its output, stops it when
// asked, and judges how it ended.
type session struct {
	cfg      *Command
	proc     *proc
	progress tasks.Progress
	log      *slog.Logger
	stage    string
	limiter  *rate.Limiter

	mu        sync.Mutex
	result    json.RawMessage
	failure   *failMessage
	protoErr  error
	frac      float64
	tail      []byte // the end of stderr
	dropped   int    // log lines over the rate limit
	truncated int    // log lines cut at MaxLogLine
}

type failMessage struct {
	msg       string
	permanent bool
}

// wait follows the command until it has exited and its output is read,
// and returns the stage's result or why it failed.
func (s *session) wait(ctx context.Context) (any, error) {
	s.limiter = rate.NewLimiter(rate.Limit(s.cfg.LogRate), s.cfg.LogBurst)
	protoErr := make(chan error, 1)
	outDone, errDone := make(chan struct{}), make(chan struct{})
	go func() { defer close(outDone); s.readStdout(protoErr) }()
	go func() { defer close(errDone); s.readStderr() }()
	defer s.proc.closePipes()

	var (
		waitErr  error
		stopped  error // why the session stopped the command, if it did
		outOpen  = (<-chan struct{})(outDone)
		exitWait <-chan time.Time
		killAt   <-chan time.Time
		giveUp   <-chan time.Time
	)
	stop := func(why error, sig syscall.Signal) {
		if stopped == nil {
			stopped = why
		}
		s.proc.signal(sig)
		if sig == syscall.SIGTERM && killAt == nil {
			killAt = time.After(s.cfg.KillGrace)
		}
		if sig == syscall.SIGKILL && giveUp == nil {
			giveUp = time.After(5 * time.Second)
		}
	}
	ctxDone := ctx.Done()
wait:
	for {
		select {
		case waitErr = <-s.proc.exited:
			break wait
		case <-ctxDone:
			ctxDone = nil
			stop(context.Cause(ctx), syscall.SIGTERM)
		case err := <-protoErr:
			stop(tasks.Permanent(err), syscall.SIGKILL)
		case <-outOpen:
			outOpen = nil
			exitWait = time.After(s.cfg.ExitWait)
		case <-exitWait:
			exitWait = nil
			stop(tasks.Permanent(fmt.Errorf("%s closed its stdout but was still running %s later; "+
				"a stage must exit once it has sent its result", quoteArgv(s.cfg.Argv), s.cfg.ExitWait)), syscall.SIGTERM)
		case <-killAt:
			killAt = nil
			s.log.Warn("the stage's processes did not exit after SIGTERM; sending SIGKILL", "grace", s.cfg.KillGrace)
			stop(nil, syscall.SIGKILL)
		case <-giveUp:
			s.log.Error("the stage's process did not exit after SIGKILL; abandoning it", "pid", s.proc.cmd.Process.Pid)
			waitErr = errors.New("did not exit after SIGKILL")
			break wait
		}
	}
	// No process of the group outlives the stage: kill what is left of it
	// (children that ignored SIGTERM, or that the command left behind).
	s.proc.signal(syscall.SIGKILL)
	late := make(chan struct{})
	drain := time.AfterFunc(drainWait, func() { close(late) })
	select {
	case <-outDone:
	case <-late:
	}
	select {
	case <-errDone:
	case <-late:
	}
	drain.Stop()
	s.proc.closePipes()
	<-outDone
	<-errDone
	s.logSummary()
	return s.outcome(ctx, stopped, waitErr)
}

// outcome judges the run from why it was stopped and how it exited.
func (s *session) outcome(ctx context.Context, stopped, waitErr error) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	argv := quoteArgv(s.cfg.Argv)
	if ctx.Err() != nil {
		return nil, fmt.Errorf("%s stopped: %w", argv, context.Cause(ctx))
	}
	if s.protoErr != nil {
		return nil, tasks.Permanent(s.withTail(s.protoErr))
	}
	if stopped != nil {
		return nil, s.withTail(stopped)
	}
	if s.failure != nil {
		err := s.withTail(errors.New(s.failure.msg))
		if s.failure.permanent {
			return nil, tasks.Permanent(err)
		}
		return nil, err
	}
	var ee *exec.ExitError
	switch {
	case waitErr == nil && s.result != nil:
		return s.result, nil
	case waitErr == nil:
		return nil, tasks.Permanent(s.withTail(fmt.Errorf("%s exited 0 without sending a result: "+
			"print a line `%s {\"result\": ...}` on stdout before exiting", argv, Prefix)))
	case errors.As(waitErr, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return nil, s.withTail(fmt.Errorf("%s was killed by signal %s", argv, ws.Signal()))
		}
		if ee.ExitCode() == ExitPermanent {
			return nil, tasks.Permanent(s.withTail(fmt.Errorf("%s exited with status %d (permanent failure, no retry)", argv, ExitPermanent)))
		}
		return nil, s.withTail(fmt.Errorf("%s exited with status %d", argv, ee.ExitCode()))
	}
	return nil, s.withTail(fmt.Errorf("%s: %v", argv, waitErr))
}

// withTail adds the end of the command's stderr to err's message.
func (s *session) withTail(err error) error {
	t := strings.TrimSpace(string(s.tail))
	if t == "" {
		return err
	}
	return fmt.Errorf("%w; the end of its stderr:\n%s", err, t)
}

// readStdout reads messages and log lines from stdout until it closes.
// A protocol mistake is sent on protoErr (once) and ends the reading.
func (s *session) readStdout(protoErr chan<- error) {
	err := readLines(s.proc.stdout, func(first []byte) int {
		if isMessage(first) {
			return s.cfg.MaxMessage
		}
		return s.cfg.MaxLogLine
	}, func(line []byte, cut bool) error {
		if !isMessage(line) {
			s.logLine("stdout", line, cut)
			return nil
		}
		if cut {
			return fmt.Errorf("the stage sent a message line over the %d-byte limit (results and partial results are limited further by the worker, 1 MiB by default); "+
				"keep large data in files and pass their paths", s.cfg.MaxMessage)
		}
		return s.handle(line)
	})
	if err != nil {
		s.mu.Lock()
		s.protoErr = err
		s.mu.Unlock()
		protoErr <- err
		_, _ = discard(s.proc.stdout) // keep the pipe flowing until the group is killed
	}
}

// handle applies one message line.
func (s *session) handle(line []byte) error {
	m, err := parseMessage(line)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case m.result != nil:
		if s.result != nil {
			return errors.New("the stage sent two result messages; a stage sends exactly one")
		}
		s.result = m.result
	case m.failure != nil:
		s.failure = m.failure
	default:
		if m.hasProgress {
			s.frac = m.progress
		}
		if m.partial != nil {
			s.progress.Report(s.frac, m.partial)
		} else {
			s.progress.Report(s.frac, nil)
		}
	}
	return nil
}

// readStderr logs stderr's lines and keeps its end for the error message.
func (s *session) readStderr() {
	_ = readLines(s.proc.stderr, func([]byte) int { return s.cfg.MaxLogLine }, func(line []byte, cut bool) error {
		s.logLine("stderr", line, cut)
		s.mu.Lock()
		s.tail = append(s.tail, line...)
		if cut {
			s.tail = append(s.tail, " [...]"...)
		}
		s.tail = append(s.tail, '\n')
		if n := s.cfg.StderrTail; len(s.tail) > 2*n {
			s.tail = append(s.tail[:0], s.tail[len(s.tail)-n:]...)
		}
		s.mu.Unlock()
		return nil
	})
	s.mu.Lock()
	if n := s.cfg.StderrTail; len(s.tail) > n {
		t := s.tail[len(s.tail)-n:]
		if i := strings.IndexByte(string(t), '\n'); i >= 0 && i < len(t)-1 {
			t = t[i+1:]
		}
		s.tail = t
	}
	s.mu.Unlock()
}

// logLine puts one line of the stage's output in the worker's log, within
// the rate limit.
func (s *session) logLine(stream string, line []byte, cut bool) {
	s.mu.Lock()
	if cut {
		s.truncated++
	}
	ok := s.limiter.Allow()
	if !ok {
		s.dropped++
	}
	s.mu.Unlock()
	if ok {
		s.log.Info("stage output", "stream", stream, "line", strings.ToValidUTF8(string(line), "\uFFFD"))
	}
}

func (s *session) logSummary() {
	s.mu.Lock()
	dropped, truncated := s.dropped, s.truncated
	s.mu.Unlock()
	if dropped > 0 || truncated > 0 {
		s.log.Warn("the stage's output was more than the log takes", "dropped_lines", dropped, "truncated_lines", truncated,
			"rate", s.cfg.LogRate, "max_line", s.cfg.MaxLogLine)
	}
}
