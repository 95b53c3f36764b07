"""CPU per call one call at a time: the line and the floor, each alone in a process of its own.

    python bench/one_call.py                      # SQLite, Verify, 3 pairs of 600 calls each
    python bench/one_call.py --provider builtin --pairs 5
    python bench/one_call.py --postgres-url postgresql://postgres@127.0.0.1/scratch  # DROPPED

On the busy server (`bench/run.py`) a call's CPU includes what a worker's threads cost each
other: waiting for the GIL, and caches the others emptied. Here each app answers one call at a
time - each webhook through its WSGI callable, signed as Twilio signs it, the fake Twilio
answering at once in a process of its own - so what is left is the app's own work, and the
ratio says how much of the busy server's ratio that explains. The thread CPU of `/voice` and
`/gather` is read around each WSGI call, and the line's code-sender jobs on their own threads,
as `bench/cpu_meter.py` reads them on the server. Each app runs in a fresh child process (with
metrics and logging on, as in production), line and floor taking turns; every pair is printed.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.callers import Twilio  # noqa: E402
from bench.run import (  # noqa: E402
    ACCOUNT_SID,
    AUTH_TOKEN,
    LINE,
    METRICS_TOKEN,
    SECRET_KEY,
    VERIFY_SID,
    _recreate_postgres,
    fictional_phones,
)
from bench.servers import BenchError, Children, run_flask, start_fake  # noqa: E402

BASE_URL = "http://127.0.0.1:8000"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--provider", choices=("verify", "builtin"), default="verify")
    parser.add_argument(
        "--postgres-url", help="run the line on this database instead of SQLite (it is DROPPED)"
    )
    parser.add_argument("--calls", type=int, default=600, help="measured calls per app and pair")
    parser.add_argument("--warmup", type=int, default=30, help="unmeasured calls first")
    parser.add_argument("--pairs", type=int, default=3, help="line and floor runs, taking turns")
    parser.add_argument("--app", choices=("line", "floor"), help=argparse.SUPPRESS)
    parser.add_argument("--fake-url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.app:
        print(json.dumps(measure(args)))
        return 0
    try:
        return compare(args)
    except BenchError as error:
        print(f"one_call: {error}", file=sys.stderr)
        return 1


def compare(args: argparse.Namespace) -> int:
    """Run the line and the floor in turn, `args.pairs` times, and print CPU per call."""
    children = Children()
    with tempfile.TemporaryDirectory(prefix="ivr-one-call-") as folder:
        tmp = Path(folder)
        try:
            fake = start_fake(children, 0.0, ACCOUNT_SID, AUTH_TOKEN, tmp / "fake-twilio.log")
            database = args.postgres_url or "sqlite"
            print(f"{args.calls} calls one at a time, {args.provider} codes, {database}:")
            print(f"{'':12}{'/voice':>9}{'senders':>9}{'/gather':>9}{'per call':>10}")
            ratios = []
            for pair in range(1, args.pairs + 1):
                # Line first in odd pairs, floor first in even ones.
                order = ("line", "floor") if pair % 2 else ("floor", "line")
                per_call = {}
                for app in order:
                    fake.reset()
                    figures = _run_child(args, app, fake.url, tmp / f"{app}-{pair}")
                    per_call[app] = figures["voice"] + figures["senders"] + figures["gather"]
                    print(
                        f"{app + ' ' + str(pair):12}{figures['voice']:>6.0f} us"
                        f"{figures['senders']:>6.0f} us{figures['gather']:>6.0f} us"
                        f"{per_call[app]:>7.0f} us"
                    )
                ratios.append(per_call["line"] / per_call["floor"])
                print(f"{'line/floor':12}{ratios[-1]:>34.2f}x")
            print(f"pairs: {', '.join(f'{r:.2f}x' for r in ratios)}")
        finally:
            children.stop_all()
    return 0


def _run_child(args: argparse.Namespace, app: str, fake_url: str, folder: Path) -> dict:
    """Prepare `app`'s database and settings in `folder`, measure in a child, return figures."""
    folder.mkdir()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", ""),
        "PYTHONPATH": str(ROOT),
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_PHONE_NUMBER": LINE,
        "TWILIO_API_URL": fake_url,
        "SECRET_KEY": SECRET_KEY,
        "INSTANCE_PATH": str(folder / "instance"),
        "METRICS_TOKEN": METRICS_TOKEN,
        # As gunicorn_config sets it for the Procfile's workers: metrics in files per process.
        "PROMETHEUS_MULTIPROC_DIR": str(folder / "metrics"),
    }
    (folder / "metrics").mkdir()
    if args.provider == "verify":
        env["VERIFY_SERVICE_SID"] = VERIFY_SID
    if app == "line":
        if args.postgres_url:
            _recreate_postgres(args.postgres_url)
            env["DATABASE_URL"] = args.postgres_url
        else:
            env["DATABASE_URL"] = f"sqlite:///{folder / 'line.sqlite3'}"
        roster = folder / "participants.csv"
        with roster.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["phone", "name", "role"])
            for index, phone in enumerate(fictional_phones(args.warmup + args.calls)):
                writer.writerow([phone, f"Caller {index + 1}", "participant"])
        run_flask(env, folder, "init-db")
        run_flask(env, folder, "participants", "import", str(roster))
    argv = [
        sys.executable,
        str(Path(__file__).resolve()),
        f"--app={app}",
        f"--fake-url={fake_url}",
        f"--provider={args.provider}",
        f"--calls={args.calls}",
        f"--warmup={args.warmup}",
    ]
    with (folder / "stderr.log").open("w") as log:
        result = subprocess.run(
            argv, env=env, cwd=folder, stdout=subprocess.PIPE, stderr=log, text=True, timeout=900
        )
    if result.returncode != 0:
        raise BenchError(f"the {app} run failed; its log:\n{(folder / 'stderr.log').read_text()}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure(args: argparse.Namespace) -> dict:
    """In the child: build the app, make the calls one at a time, return CPU per call in us."""
    from werkzeug.test import EnvironBuilder

    sender = _timed_sender_jobs() if args.app == "line" else None
    if args.app == "line":
        from ivr import create_app
    else:
        from bench.floor import create_app
    app = create_app()
    # Its webhook forms and signatures, as bench/run.py's callers send them (no HTTP here).
    twilio = Twilio([BASE_URL], args.fake_url, ACCOUNT_SID, AUTH_TOKEN, LINE, 1, 10.0)

    def post(path: str, form: dict[str, str]) -> tuple[float, ET.Element]:
        headers = {
            "X-Twilio-Signature": twilio.validator.compute_signature(BASE_URL + path, form),
            "I-Twilio-Idempotency-Token": uuid.uuid4().hex,
        }
        environ = EnvironBuilder(
            path=path, base_url=BASE_URL, method="POST", data=form, headers=headers
        ).get_environ()
        statuses = []
        started = time.thread_time()
        body = app.wsgi_app(environ, lambda status, _headers, _info=None: statuses.append(status))
        answer = b"".join(body)
        getattr(body, "close", lambda: None)()
        cpu = time.thread_time() - started
        if not statuses[0].startswith("200"):
            raise BenchError(f"{path} answered {statuses[0]}")
        return cpu, ET.fromstring(answer)

    voice = gather = 0.0
    phones = fictional_phones(args.warmup + args.calls)
    for index, phone in enumerate(phones):
        if index == args.warmup and sender is not None:
            sender.clear()
        call_sid = "CA" + uuid.uuid4().hex
        voice_cpu, _ = post("/voice", twilio.params(phone, call_sid))
        code = _code_for(args.fake_url, phone)
        gather_cpu, answer = post("/gather", twilio.params(phone, call_sid, Digits=code))
        if answer.find("Dial/Conference") is None:
            raise BenchError(f"{phone} did not join: {ET.tostring(answer, encoding='unicode')}")
        if index >= args.warmup:
            voice += voice_cpu
            gather += gather_cpu
    senders = 0.0
    if sender is not None:
        with app.app_context():
            app.extensions["ivr"].sender.wait_idle()
        senders = sender.total()
    scale = 1e6 / args.calls
    return {"voice": voice * scale, "senders": senders * scale, "gather": gather * scale}


class _JobTimes:
    """Thread CPU of the line's code-sender jobs, added up."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seconds = 0.0

    def add(self, seconds: float) -> None:
        with self._lock:
            self._seconds += seconds

    def clear(self) -> None:
        with self._lock:
            self._seconds = 0.0

    def total(self) -> float:
        with self._lock:
            return self._seconds


def _timed_sender_jobs() -> _JobTimes:
    """Time every code-sender job on its thread, as bench/cpu_meter.py does on the server."""
    import ivr.sending

    times = _JobTimes()
    original = ivr.sending._logging_failures

    def timed(*args, **kwargs):
        started = time.thread_time()
        try:
            return original(*args, **kwargs)
        finally:
            times.add(time.thread_time() - started)

    ivr.sending._logging_failures = timed
    return times


def _code_for(fake_url: str, phone: str, wait: float = 10.0) -> str:
    """Poll the fake for the code sent to `phone` (the line sends after answering /voice)."""
    url = f"{fake_url}/_bench/code?to={urllib.parse.quote(phone)}"
    deadline = time.monotonic() + wait
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.load(response)["code"]
        except urllib.error.HTTPError as error:
            if error.code != 404 or time.monotonic() > deadline:
                raise BenchError(f"no code reached {phone}") from None
        time.sleep(0.001)


if __name__ == "__main__":
    sys.exit(main())
