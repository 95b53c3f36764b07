"""gunicorn settings for a measured server: the Procfile's own, plus CPU time per webhook.

The benchmark serves the line and the floor with `-c python:bench.cpu_meter` in place of
`-c python:gunicorn_config`. Every setting and hook of gunicorn_config stays; two hooks are
added. gunicorn's gthread worker calls `pre_request` and `post_request` on the thread that
handles the request, so the thread's CPU time between them is that request's CPU: routing, the
view, the database and provider calls it waits on, building the answer (not gunicorn's parsing
of the request, and not work handed to other threads). The line's code-sender jobs are timed
the same way, on their own threads, as the path "(sender)": `post_worker_init` wraps the one
function every job runs through (`ivr.sending._logging_failures`). Each worker appends "wall
time, path, CPU seconds" per request or job to BENCH_CPU_DIR/<pid>.txt; `bench.report.webhook_cpu`
keeps the burst's.

With BENCH_CPU_FUNCTIONS=1 (`bench/run.py --cpu-by-function`) the line's workers also time the
parts of a call listed in FUNCTIONS, each use as the path "fn:<label>" on its own thread: where
a call's CPU goes on a busy server, which a profile of one process in isolation does not show
(the same store call costs three to four times as much there). Timing every use adds its own
cost, so a run with it says where, not how much in all.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

from gunicorn_config import *  # noqa: F403 - the Procfile's settings and hooks, unchanged
from gunicorn_config import child_exit, on_exit, on_starting  # noqa: F401

_log = None
_lock = threading.Lock()  # sender threads and request threads append to the same file


def pre_request(worker, req) -> None:
    req.bench_started = (time.time(), time.thread_time())


def post_request(worker, req, environ, resp) -> None:
    started = getattr(req, "bench_started", None)
    if started is None:
        return
    cpu = time.thread_time() - started[1]
    # One line per request, written as it ends (after its CPU is read): a worker that is
    # killed with the server loses nothing.
    _record(f"{started[0]:.6f} {req.path} {cpu:.9f}\n")


# (module or services attribute, function, label): the parts of a call, timed inclusively.
FUNCTIONS = [
    ("flask", "preprocess_request", "before_request hooks (CSRF, signature, claim, ...)"),
    ("flask", "process_response", "after_request hooks"),
    ("ivr.voice", "is_signed_by_twilio", "signature check"),
    ("ivr.voice", "_caller_to_find", "form and phone numbers, for the claim"),
    ("store", "claim_webhook_finding", "store: claim webhook + find caller (+ check)"),
    ("store", "reserve_send", "store: reserve send + log + keep (+ code)"),
    ("store", "claim_attempt", "store: claim attempt"),
    ("store", "record_join", "store: record join + keep"),
    ("store", "sends_done", "store: sends done"),
    ("codes", "new_code", "provider: make a code (built-in)"),
    ("codes", "send", "provider: send code"),
    ("codes", "check", "provider: check code"),
    ("ivr.twiml", "welcome", "TwiML: welcome"),
    ("ivr.twiml", "join_conference", "TwiML: join"),
    ("log", "info", "log lines (ivr.voice)"),
    ("metrics", "call", "metrics: call outcome"),
    ("sender", "send", "hand the send to a sender thread"),
]


def post_worker_init(worker) -> None:
    sending = sys.modules.get("ivr.sending")
    if sending is None:
        return  # the floor: it sends inside /voice
    if os.environ.get("BENCH_CPU_FUNCTIONS") == "1":
        _time_functions(worker.wsgi)
    _time(sending, "_logging_failures", "(sender)")


def _time_functions(app) -> None:
    import ivr.twiml
    import ivr.voice

    services = app.extensions["ivr"]
    owners = {
        "flask": app,
        "ivr.voice": ivr.voice,
        "ivr.twiml": ivr.twiml,
        "store": services.store,
        "codes": services.codes,
        "metrics": services.metrics,
        "sender": services.sender,
        "log": ivr.voice.log,
    }
    for owner, name, label in FUNCTIONS:
        _time(owners[owner], name, f"fn:{label}")


def _time(owner, name: str, path: str) -> None:
    """Replace `owner.name` with itself timed: each use's thread CPU recorded as `path`."""
    original = getattr(owner, name)

    def timed(*args, **kwargs):
        started = (time.time(), time.thread_time())
        try:
            return original(*args, **kwargs)
        finally:
            _record(f"{started[0]:.6f} {path} {time.thread_time() - started[1]:.9f}\n")

    setattr(owner, name, timed)


def _record(line: str) -> None:
    global _log
    folder = os.environ.get("BENCH_CPU_DIR")
    if not folder:
        return
    with _lock:
        if _log is None:
            _log = Path(folder, f"{os.getpid()}.txt").open("a", buffering=1)
        _log.write(line)
