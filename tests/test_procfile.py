"""A new user's first hour: the commands from the README, then the Procfile's server, over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.conftest import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    BLATHERS,
    SECRET_KEY,
    STRANGER,
    call_params,
    free_port,
    sign,
)

ROOT = Path(__file__).resolve().parent.parent


def procfile_command(process: str) -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == process:
            return command.strip()
    raise AssertionError(f"no {process} process in the Procfile")


@pytest.fixture
def environment(fake_twilio, database, tmp_path):
    return {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(ROOT),
        "HOME": str(tmp_path),
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_PHONE_NUMBER": "+18005550100",
        "TWILIO_API_URL": fake_twilio.url,
        "SECRET_KEY": SECRET_KEY,
        "DATABASE_URL": database,
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "PORT": str(free_port()),
        "WEB_CONCURRENCY": "2",
    }


def flask(environment, cwd, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "ivr", *args],
        env=environment,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def server(environment, tmp_path):
    """The release step, one participant, then the Procfile's web process."""
    assert flask(environment, tmp_path, "init-db").stdout == "Database ready.\n"
    added = flask(environment, tmp_path, "participants", "add", BLATHERS, "Blathers")
    assert added.returncode == 0, added.stderr
    with procfile_web(environment, tmp_path) as web:
        yield web.base


@dataclass
class WebProcess:
    """The Procfile's web process, started by `procfile_web`."""

    base: str
    process: subprocess.Popen
    log: Path

    def wait_healthy(self) -> None:
        """Wait until it answers /healthz (every worker may not have booted yet)."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.base}/healthz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                # Not listening yet, or listening while its workers still boot.
                time.sleep(0.2)
        os.killpg(self.process.pid, signal.SIGKILL)
        raise AssertionError(self.log.read_text())

    def stop(self) -> None:
        """Stop the process group (sh and gunicorn), as a Procfile runner does."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


@contextmanager
def procfile_web(environment: dict, cwd: Path) -> Iterator[WebProcess]:
    """Run the Procfile's web process in `cwd` until it answers /healthz; stop it after.

    Its output, gunicorn's and the app's, goes to `cwd`/web.log.
    """
    log_path = cwd / "web.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            ["sh", "-c", procfile_command("web")],
            env=environment,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own process group: stopping `sh` alone would leave gunicorn running.
            start_new_session=True,
        )
        web = WebProcess(f"http://127.0.0.1:{environment['PORT']}", process, log_path)
        try:
            web.wait_healthy()
            yield web
        finally:
            web.stop()


def twilio_posts(base, path, params, *, signed=True):
    headers = {"X-Twilio-Signature": sign(base + path, params)} if signed else {}
    return requests.post(base + path, data=params, headers=headers, timeout=10)


def test_the_procfile_server_lets_in_exactly_the_right_caller(server, fake_twilio):
    unsigned = twilio_posts(server, "/voice", call_params(BLATHERS), signed=False)
    assert unsigned.status_code == 403

    stranger = twilio_posts(server, "/voice", call_params(STRANGER))
    assert stranger.status_code == 200
    assert ET.fromstring(stranger.content).find("Say").text == (
        "Sorry, I don't recognize the number you're calling from."
    )
    assert fake_twilio.requests == []

    welcome = twilio_posts(server, "/voice", call_params(BLATHERS))
    assert welcome.headers["Content-Type"].startswith("text/xml")
    assert ET.fromstring(welcome.content).find("Gather").get("action") == "/gather"

    joined = twilio_posts(
        server, "/gather", call_params(BLATHERS, Digits=fake_twilio.code_for(BLATHERS, wait=5))
    )
    conference = ET.fromstring(joined.content).find("Dial/Conference")
    assert conference.text == "main"
    assert conference.get("participantLabel") == "Blathers"
    assert conference.get("statusCallback") == f"{server}/conference/events"


@pytest.fixture
def json_logs(environment):
    environment["LOG_FORMAT"] = "json"


def test_the_procfile_server_logs_json_lines_with_the_call_sid(json_logs, server, tmp_path):
    answer = twilio_posts(server, "/voice", call_params(STRANGER))
    assert answer.status_code == 200

    # gunicorn's own lines stay as gunicorn writes them; the line's are JSON.
    written = (tmp_path / "web.log").read_text().splitlines()
    ours = [json.loads(line) for line in written if line.startswith("{")]
    assert [{k: v for k, v in line.items() if k != "time"} for line in ours] == [
        {
            "level": "INFO",
            "logger": "ivr.voice",
            "message": "outcome: unknown number",
            "call_sid": call_params(STRANGER)["CallSid"],
            "path": "/voice",
            "room": "main",
        }
    ]
    assert any("Booting worker" in line for line in written)
