"""gunicorn settings for the Procfile's web process: Prometheus metrics summed over the workers.

Loaded with `gunicorn -c python:gunicorn_config` (found from any working directory on the
Python path, as the tests and the benchmark run the web line elsewhere). Each worker counts in
files of its own in PROMETHEUS_MULTIPROC_DIR and a scrape sums them. prometheus_client picks
that mode when it is imported, so the variable is set here, in the master, before any worker
imports the app. Unset by the operator, it is a fresh temporary folder removed at shutdown.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

_operator_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _operator_dir:
    Path(_operator_dir).mkdir(parents=True, exist_ok=True)
    _made_here = None
else:
    _made_here = tempfile.mkdtemp(prefix="ivr-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _made_here


def on_starting(server) -> None:
    """Start counting from zero, and say once what the line runs without."""
    # An operator's folder may hold an earlier run's files.
    for stale in Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).glob("*.db"):
        stale.unlink()
    _warn_once(server)


def _warn_once(server) -> None:
    """Log the app's start-up warnings here, in the master, instead of once per worker."""
    from ivr.settings import STARTUP_WARNED, SettingsError, startup_warnings

    try:
        settings = _settings()
    except SettingsError:
        return  # every worker stops with the one line that names it
    for warning in startup_warnings(settings):
        server.log.warning(warning)
    os.environ[STARTUP_WARNED] = "1"


def _settings() -> dict:
    from flask import Flask

    from ivr.settings import read_sources, validate

    raw = read_sources(Path.cwd(), dict(os.environ))
    # Where create_app would put it: INSTANCE_PATH, or Flask's instance folder of the package.
    instance = raw.get("INSTANCE_PATH") or Flask("ivr").instance_path
    return validate(raw, Path(instance).resolve())


def child_exit(server, worker) -> None:
    """Let prometheus_client forget a dead worker's live gauges; its counters still count."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    if _made_here:
        shutil.rmtree(_made_here, ignore_errors=True)
