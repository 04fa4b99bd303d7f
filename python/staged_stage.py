"""Write a staged stage in Python: standard library only, one file.

staged runs each stage of a pipelines file as a command and talks to it
over stdin and stdout (protocol version 1, docs/PROTOCOL.md). This module
does the talking:

    import staged_stage as stage

    def main(data):
        for i in range(10):
            ...
            stage.progress((i + 1) / 10, partial={"step": i + 1})
        return {"answer": 42}

    stage.run(main)

run() reads the input from stdin, calls main with it, and sends main's
return value as the stage's result. An exception fails the attempt (the job
is retried if it has retries left), with its traceback on stderr, which the
job's error shows; raise Fail("why", permanent=True) when a retry cannot
help.
"""

import json
import os
import sys
import traceback

__all__ = [
    "PREFIX", "EXIT_PERMANENT", "Fail", "read_input", "progress", "partial",
    "result", "fail", "run", "job_id", "stage_name", "stage_index",
    "stage_total", "attempt", "scratch", "log",
]

PREFIX = "::staged::"
"""Starts every message line on stdout."""

EXIT_PERMANENT = 78
"""The exit status for "failed, do not retry" (EX_CONFIG)."""

_input_read = False
_input = None
_result_sent = False


class Fail(Exception):
    """Raise it from a stage to fail it with a message for people.

    permanent=True fails the job at once; otherwise the attempt fails and
    the job is retried if it has retries left.
    """

    def __init__(self, message, permanent=False):
        super().__init__(message)
        self.message = str(message)
        self.permanent = bool(permanent)


def _send(obj):
    """Writes one message line to stdout and flushes it."""
    try:
        line = json.dumps(obj, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise TypeError("staged_stage: the value is not JSON: %s" % e) from None
    out = sys.stdout
    out.write(PREFIX + " " + line + "\n")
    out.flush()


def read_input():
    """Returns the stage's input (parsed JSON), reading stdin on first use."""
    global _input_read, _input
    if not _input_read:
        raw = sys.stdin.read()
        _input_read = True
        _input = json.loads(raw) if raw.strip() else None
    return _input


def progress(fraction, partial=None):
    """Reports how far the stage is (0 to 1) and, if given, the job's
    partial result so far (any JSON value)."""
    msg = {"progress": float(fraction)}
    if partial is not None:
        msg["partial"] = partial
    _send(msg)


def partial(value):
    """Reports the job's partial result so far, without a fraction."""
    _send({"partial": value})


def result(value):
    """Sends the stage's result (any JSON value). Send it once, then exit 0;
    run() does both for you."""
    global _result_sent
    if _result_sent:
        raise RuntimeError("staged_stage: the result was sent already")
    _send({"result": value})
    _result_sent = True


def fail(message, permanent=False):
    """Fails the stage with message and exits: status 78 when permanent (no
    retry), else 1 (the attempt failed; the job may be retried)."""
    _send({"error": str(message) or "failed", "permanent": bool(permanent)})
    sys.stdout.flush()
    sys.exit(EXIT_PERMANENT if permanent else 1)


def log(*args):
    """Writes a log line to stderr (the worker logs it with the job id)."""
    print(*args, file=sys.stderr, flush=True)


def job_id():
    """The job's id."""
    return os.environ.get("STAGED_JOB_ID", "")


def stage_name():
    """This stage's name."""
    return os.environ.get("STAGED_STAGE", "")


def stage_index():
    """This stage's position in the job, 1 for the first."""
    return int(os.environ.get("STAGED_STAGE_INDEX", "0") or 0)


def stage_total():
    """How many stages the job has."""
    return int(os.environ.get("STAGED_STAGE_TOTAL", "0") or 0)


def attempt():
    """The job's attempt, 1 for the first."""
    return int(os.environ.get("STAGED_ATTEMPT", "0") or 0)


def scratch():
    """The scratch directory shared by the stages of this attempt on this
    worker (deleted when the attempt ends)."""
    d = os.environ.get("STAGED_SCRATCH")
    if not d:
        import tempfile
        d = tempfile.mkdtemp(prefix="staged-scratch-")
        os.environ["STAGED_SCRATCH"] = d
    return d


def run(main):
    """Runs a stage: main(input) -> result, then exits.

    Fail ends the stage as its message says; any other exception fails the
    attempt, with its traceback on stderr.
    """
    try:
        data = read_input()
    except ValueError as e:
        fail("the stage's input is not JSON: %s" % e, permanent=True)
    try:
        value = main(data)
    except Fail as e:
        fail(e.message, e.permanent)
    except SystemExit:
        raise
    except Exception as e:
        traceback.print_exc()
        sys.stderr.flush()
        fail("%s: %s" % (type(e).__name__, e))
    if not _result_sent:
        try:
            result(value)
        except TypeError as e:
            fail("the stage returned a value that is not JSON: %s" % e, permanent=True)
    sys.stdout.flush()
    sys.exit(0)
