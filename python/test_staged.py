"""Tests of staged_stage.py and staged_client.py (python3 -m unittest in python/).

The stage helper runs as a real child process, as the worker runs it; the
client talks to a small HTTP server in this process that speaks the parts of
the staged API it uses, Server-Sent Events with Last-Event-ID included. The
Go e2e tests (e2e/exec_*_test.go) run both against the real staged.
"""

import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import staged_client  # noqa: E402
import staged_stage  # noqa: E402


def run_stage(code, stdin="{}", env=None):
    """Runs code as a stage; returns (exit status, messages, other stdout lines, stderr)."""
    e = dict(os.environ, PYTHONPATH=HERE, STAGED_JOB_ID="j1", STAGED_STAGE="s", STAGED_STAGE_INDEX="2",
             STAGED_STAGE_TOTAL="3", STAGED_ATTEMPT="1", STAGED_PROTOCOL="1")
    e.update(env or {})
    p = subprocess.run([sys.executable, "-c", code], input=stdin, capture_output=True, text=True, env=e, timeout=60)
    msgs, logs = [], []
    for line in p.stdout.splitlines():
        if line.startswith(staged_stage.PREFIX + " "):
            msgs.append(json.loads(line[len(staged_stage.PREFIX) + 1:]))
        else:
            logs.append(line)
    return p.returncode, msgs, logs, p.stderr


class StageHelperTest(unittest.TestCase):
    def test_result_and_progress(self):
        code = ("import staged_stage as s\n"
                "def main(d):\n"
                "    print('a log line')\n"
                "    s.progress(0.5, partial={'n': d['n']})\n"
                "    return {'n': d['n'] * 2, 'job': s.job_id(), 'index': s.stage_index(), 'attempt': s.attempt()}\n"
                "s.run(main)\n")
        rc, msgs, logs, _ = run_stage(code, '{"n": 21}')
        self.assertEqual(rc, 0)
        self.assertEqual(msgs, [{"progress": 0.5, "partial": {"n": 21}},
                                {"result": {"n": 42, "job": "j1", "index": 2, "attempt": 1}}])
        self.assertEqual(logs, ["a log line"])

    def test_permanent_failure(self):
        code = "import staged_stage as s\ndef main(d):\n    raise s.Fail('no header row', permanent=True)\ns.run(main)\n"
        rc, msgs, _, _ = run_stage(code)
        self.assertEqual(rc, staged_stage.EXIT_PERMANENT)
        self.assertEqual(msgs, [{"error": "no header row", "permanent": True}])

    def test_exception_is_a_failed_attempt_with_traceback(self):
        rc, msgs, _, err = run_stage("import staged_stage as s\ns.run(lambda d: 1 / 0)\n")
        self.assertEqual(rc, 1)
        self.assertEqual(msgs, [{"error": "ZeroDivisionError: division by zero", "permanent": False}])
        self.assertIn("Traceback", err)

    def test_bad_input_and_result(self):
        rc, msgs, _, _ = run_stage("import staged_stage as s\ns.run(lambda d: d)\n", "{not json")
        self.assertEqual(rc, 78)
        self.assertIn("not JSON", msgs[0]["error"])
        rc, msgs, _, _ = run_stage("import staged_stage as s\ns.run(lambda d: float('nan'))\n")
        self.assertEqual(rc, 78)
        self.assertIn("not JSON", msgs[0]["error"])

    def test_scratch(self):
        with tempfile.TemporaryDirectory() as d:
            rc, msgs, _, _ = run_stage("import staged_stage as s\ns.run(lambda _: s.scratch())\n", env={"STAGED_SCRATCH": d})
            self.assertEqual((rc, msgs), (0, [{"result": d}]))


class FakeAPI(http.server.ThreadingHTTPServer):
    """A staged API for one job whose records are given; the event stream
    drops the connection after `drop_after` events, once."""

    def __init__(self, records, drop_after):
        super().__init__(("127.0.0.1", 0), Handler)
        self.records = records
        self.drop_after = drop_after
        self.last_event_ids = []
        self.submitted = []


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_json(self, status, body, ctype="application/json"):
        b = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if body.get("type") != "classic":
            return self.send_json(422, {"type": "about:blank", "title": "Unprocessable", "status": 422,
                                        "detail": 'unknown job type "%s"' % body.get("type")}, "application/problem+json")
        self.server.submitted.append((body, self.headers.get("Idempotency-Key")))
        self.send_json(202, self.server.records[0])

    def do_GET(self):
        recs = self.server.records
        if self.path.endswith("/events"):
            last = self.headers.get("Last-Event-ID")
            self.server.last_event_ids.append(last)
            start = int(last) + 1 if last else 0
            if start >= len(recs):
                self.send_response(204)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"retry: 10\n\n")
            for i in range(start, len(recs)):
                if last is None and i == self.server.drop_after:
                    self.wfile.flush()
                    return  # the connection drops mid-stream
                data = json.dumps(recs[i], indent=1).replace("\n", "\ndata: ")
                self.wfile.write(("id: %d\nevent: job\ndata: %s\n\n" % (i, data)).encode())
                self.wfile.flush()
            return
        if "/v1/jobs/" in self.path:
            return self.send_json(200, recs[-1])
        self.send_json(404, {"title": "Not Found", "status": 404, "detail": "no such thing"}, "application/problem+json")


class ClientTest(unittest.TestCase):
    def setUp(self):
        self.records = [{"id": "j1", "state": "queued", "progress": 0}] + [
            {"id": "j1", "state": "running", "progress": k / 4, "partial": {"k": k}} for k in range(1, 4)
        ] + [{"id": "j1", "state": "succeeded", "progress": 1, "result": {"data": "x -> 4"}}]
        self.srv = FakeAPI(self.records, drop_after=2)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        self.client = staged_client.Client("http://127.0.0.1:%d" % self.srv.server_address[1], api_key="")

    def tearDown(self):
        self.srv.shutdown()
        self.srv.server_close()

    def test_submit_get_wait(self):
        job = self.client.submit("classic", {"data": "x"}, idempotency_key="k1", timeout="1m")
        self.assertEqual(job["state"], "queued")
        self.assertEqual(self.srv.submitted, [({"type": "classic", "input": {"data": "x"}, "timeout": "1m"}, "k1")])
        self.assertEqual(self.client.get("j1")["state"], "succeeded")
        self.assertEqual(self.client.wait("j1", timeout=5)["result"], {"data": "x -> 4"})

    def test_problem(self):
        with self.assertRaises(staged_client.APIError) as cm:
            self.client.submit("nope")
        self.assertEqual(cm.exception.status, 422)
        self.assertIn('unknown job type "nope"', cm.exception.detail)

    def test_watch_resumes_with_last_event_id(self):
        seen = list(self.client.watch("j1"))
        self.assertEqual(seen, self.records)  # every record once, in order, across the drop
        self.assertEqual(self.srv.last_event_ids, [None, "1"])


if __name__ == "__main__":
    unittest.main()
