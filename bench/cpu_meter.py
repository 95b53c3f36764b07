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


def post_worker_init(worker) -> None:
    sending = sys.modules.get("ivr.sending")
    if sending is None:
        return  # the floor: it sends inside /voice
    run_job = sending._logging_failures

    def timed_job(job, *args) -> None:
        started = (time.time(), time.thread_time())
        try:
            run_job(job, *args)
        finally:
            _record(f"{started[0]:.6f} (sender) {time.thread_time() - started[1]:.9f}\n")

    sending._logging_failures = timed_job


def _record(line: str) -> None:
    global _log
    folder = os.environ.get("BENCH_CPU_DIR")
    if not folder:
        return
    with _lock:
        if _log is None:
            _log = Path(folder, f"{os.getpid()}.txt").open("a", buffering=1)
        _log.write(line)
