"""A client for the staged HTTP API: standard library only, one file.

    from staged_client import Client

    c = Client("http://localhost:8080")          # api_key=... when keys are on
    job = c.submit("classic", {"data": "hello"})
    for rec in c.watch(job["id"]):               # live, resumes after a dropped connection
        print(rec["state"], rec["stage"]["name"], rec["progress"], rec.get("partial"))
    print(c.get(job["id"])["result"])

Or from a shell:

    python3 staged_client.py submit classic --input '{"data": "hello"}' --watch
    python3 staged_client.py status ID

Errors of the API (application/problem+json) raise APIError with its status,
title and detail.
"""

import argparse
import json
import os
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

__all__ = ["Client", "APIError", "TERMINAL"]

TERMINAL = ("succeeded", "failed", "canceled")
"""The states a job ends in."""


class APIError(Exception):
    """An error answer of the API (RFC 9457 problem details)."""

    def __init__(self, status, title, detail="", body=None):
        super().__init__("%d %s: %s" % (status, title, detail) if detail else "%d %s" % (status, title))
        self.status = status
        self.title = title
        self.detail = detail
        self.body = body or {}


class Client:
    """Talks to one staged API at base (e.g. http://localhost:8080)."""

    def __init__(self, base=None, api_key=None, timeout=30.0):
        self.base = (base or os.environ.get("STAGED_SERVER") or "http://localhost:8080").rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("STAGED_API_KEY")
        self.timeout = timeout

    # -- plumbing ---------------------------------------------------------

    def _request(self, method, path, body=None, headers=None, timeout=None):
        data = None
        hdrs = {"Accept": "application/json"}
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        if self.api_key:
            hdrs["Authorization"] = "Bearer " + self.api_key
        hdrs.update(headers or {})
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=hdrs)
        try:
            return urllib.request.urlopen(req, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as e:
            raise _problem(e) from None

    def _json(self, method, path, body=None, headers=None, timeout=None):
        with self._request(method, path, body, headers, timeout) as resp:
            return json.loads(resp.read() or b"null")

    # -- the API ----------------------------------------------------------

    def submit(self, type, input=None, idempotency_key=None, **options):
        """Submits a job of pipeline type with input (a dict); options are
        the API's optional fields (timeout="10m", max_retries=2, queue=...,
        retention="1h"). Returns the job record."""
        body = {"type": type}
        if input is not None:
            body["input"] = input
        body.update({k: v for k, v in options.items() if v is not None})
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self._json("POST", "/v1/jobs", body, headers)

    def get(self, id, wait=None):
        """Returns job id's record. wait (seconds, at most 60) long-polls
        until the job finishes or the time is up."""
        path = "/v1/jobs/" + urllib.parse.quote(id, safe="")
        if wait:
            path += "?wait=%ds" % max(1, int(wait))
            return self._json("GET", path, timeout=self.timeout + wait)
        return self._json("GET", path)

    def cancel(self, id):
        """Cancels job id; returns its record. APIError 409 if it had finished."""
        return self._json("POST", "/v1/jobs/" + urllib.parse.quote(id, safe="") + "/cancel")

    def pipelines(self):
        """Returns the pipelines the API knows."""
        return self._json("GET", "/v1/pipelines")

    def wait(self, id, timeout=None):
        """Waits until job id finishes (or timeout seconds pass) and returns
        its latest record."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = 30
            if deadline is not None:
                step = min(step, max(1, int(deadline - time.monotonic())))
            rec = self.get(id, wait=step)
            if rec.get("state") in TERMINAL or (deadline is not None and time.monotonic() >= deadline):
                return rec

    def watch(self, id, reconnects=10):
        """Yields job id's record on every change (Server-Sent Events), the
        last one finished. A dropped connection is resumed with
        Last-Event-ID, so no change is missed; after `reconnects` failed
        attempts in a row it raises the last error."""
        last_id = None
        failures = 0
        delay = 0.5
        while True:
            headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
            if last_id:
                headers["Last-Event-ID"] = last_id
            try:
                resp = self._request("GET", "/v1/jobs/" + urllib.parse.quote(id, safe="") + "/events",
                                     headers=headers, timeout=max(self.timeout, 60))
                with resp:
                    if resp.status == 204:  # nothing after last_id: the job finished
                        yield self.get(id)
                        return
                    for ev_id, data, retry in _events(resp):
                        if retry:
                            delay = retry / 1000.0
                        if data is None:
                            continue
                        failures = 0
                        if ev_id:
                            last_id = ev_id
                        rec = json.loads(data)
                        yield rec
                        if rec.get("state") in TERMINAL:
                            return
            except APIError as e:
                if e.status not in (408, 429) and e.status < 500:
                    raise
                err = e
            except (OSError, urllib.error.URLError, socket.timeout, ValueError) as e:
                err = e
            else:
                err = ConnectionError("the event stream closed before the job finished")
            failures += 1
            if failures > reconnects:
                raise err
            time.sleep(min(delay * (2 ** (failures - 1)), 10))


def _events(resp):
    """Yields (id, data, retry) per Server-Sent Event of resp; data is None
    for an event without data (a retry: hint alone)."""
    ev_id, data, retry = None, [], None
    for raw in resp:
        line = raw.decode("utf-8").rstrip("\r\n")
        if line == "":
            if data or retry:
                yield ev_id, ("\n".join(data) if data else None), retry
            ev_id, data, retry = None, [], None
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "id":
            ev_id = value
        elif field == "data":
            data.append(value)
        elif field == "retry" and value.isdigit():
            retry = int(value)


def _problem(e):
    body = {}
    try:
        body = json.loads(e.read() or b"{}")
    except ValueError:
        pass
    if not isinstance(body, dict):
        body = {}
    return APIError(e.code, body.get("title") or e.reason or "error", body.get("detail", ""), body)


def _line(rec):
    st = rec.get("stage") or {}
    s = "%s %s" % (rec.get("state"), "%d%%" % round(100 * (rec.get("progress") or 0)))
    if st.get("total"):
        s += " stage %d/%d %s" % (st.get("index", 0), st["total"], st.get("name", ""))
    if rec.get("partial") is not None:
        s += " partial=" + json.dumps(rec["partial"])
    return s


def main(argv=None):
    p = argparse.ArgumentParser(prog="staged_client.py", description="Submit and follow staged jobs.")
    p.add_argument("--server", help="the API (default $STAGED_SERVER or http://localhost:8080)")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("submit", help="submit a job")
    s.add_argument("type")
    s.add_argument("--input", default=None, help="the input as JSON")
    s.add_argument("--watch", action="store_true", help="follow the job until it finishes")
    for name in ("status", "watch", "cancel"):
        sub.add_parser(name).add_argument("id")
    a = p.parse_args(argv)
    c = Client(a.server)
    try:
        if a.cmd == "submit":
            rec = c.submit(a.type, json.loads(a.input) if a.input else None)
            print("job", rec["id"], "page", c.base + rec.get("links", {}).get("page", ""), file=sys.stderr)
            if not a.watch:
                print(json.dumps(rec, indent=2))
                return 0
            a.id = rec["id"]
        if a.cmd in ("submit", "watch"):
            rec = None
            for rec in c.watch(a.id):
                print(_line(rec), file=sys.stderr, flush=True)
            print(json.dumps(rec.get("result") if rec["state"] == "succeeded" else rec.get("error"), indent=2))
            return {"succeeded": 0, "canceled": 2}.get(rec["state"], 1)
        if a.cmd == "status":
            print(json.dumps(c.get(a.id), indent=2))
        elif a.cmd == "cancel":
            print(json.dumps(c.cancel(a.id), indent=2))
        return 0
    except APIError as e:
        print("staged_client:", e, file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
