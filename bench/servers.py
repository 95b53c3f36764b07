"""Child processes of a benchmark run: the fake Twilio, the Procfile's web servers, py-spy.

Every child starts in a session of its own, so Ctrl-C in the terminal reaches only the driver,
which then ends each child's whole process group itself (`Children.stop_all`).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
APP_TARGET = "'ivr:create_app()'"
FLOOR_TARGET = "'bench.floor:create_app()'"
GUNICORN_CONFIG = "-c python:gunicorn_config"
METERED_CONFIG = "-c python:bench.cpu_meter"
PAGE_KB = 1024
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SHELLS = {"sh", "dash", "bash"}


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


def procfile_command(process: str = "web") -> str:
    """Return the Procfile's command line for `process`, as test_procfile.py reads it."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == process:
            return command.strip()
    raise BenchError(f"no {process}: process in {ROOT / 'Procfile'}")


def floor_command(web_command: str) -> str:
    """Return the web command serving the floor app: the app string swapped, nothing else."""
    if web_command.count(APP_TARGET) != 1:
        raise BenchError(
            f"the Procfile's web command must name the app once as {APP_TARGET} so the floor "
            f"can be served the same way; it is: {web_command}"
        )
    return web_command.replace(APP_TARGET, FLOOR_TARGET)


def metered_command(web_command: str) -> str:
    """Return the web command with bench/cpu_meter.py's settings: gunicorn_config's, plus CPU
    time per webhook. Nothing else changes."""
    if web_command.count(GUNICORN_CONFIG) != 1:
        raise BenchError(
            f"the Procfile's web command must load its settings once as {GUNICORN_CONFIG} so "
            f"the benchmark can add its CPU meter; it is: {web_command}"
        )
    return web_command.replace(GUNICORN_CONFIG, METERED_CONFIG)


class Children:
    """Every process the run started; `stop_all` ends them all, whatever happened."""

    def __init__(self) -> None:
        self._processes: list[subprocess.Popen] = []

    def start(self, argv: list[str], **kwargs) -> subprocess.Popen:
        """Start `argv` in its own session and remember it."""
        process = subprocess.Popen(argv, start_new_session=True, **kwargs)
        self._processes.append(process)
        return process

    def stop(self, process: subprocess.Popen, grace: float = 10.0) -> None:
        """SIGTERM the process's group, then SIGKILL it if it is still there after `grace` s."""
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait(timeout=5)
        # Workers may outlive a master killed hard; the group signal reaches them too.
        _signal_group(process, signal.SIGKILL)
        if process in self._processes:
            self._processes.remove(process)

    def stop_all(self) -> None:
        """Stop every remembered process, newest first."""
        for process in reversed(list(self._processes)):
            try:
                self.stop(process, grace=5.0)
            except (OSError, subprocess.TimeoutExpired) as error:
                sys.stderr.write(f"bench: could not stop pid {process.pid}: {error}\n")


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


# -- the fake Twilio ---------------------------------------------------------------------------


@dataclass
class Fake:
    """The fake Twilio process and its base URL."""

    process: subprocess.Popen
    url: str

    def reset(self) -> None:
        """Forget every code and send count (between phases, so limits start from zero)."""
        requests.post(f"{self.url}/_bench/reset", timeout=5).raise_for_status()

    def stats(self) -> dict[str, int]:
        """Return how many API requests of each kind the fake answered since the last reset."""
        response = requests.get(f"{self.url}/_bench/stats", timeout=5)
        response.raise_for_status()
        return response.json()["requests"]


def start_fake(
    children: Children, latency: float, account_sid: str, auth_token: str, log: Path
) -> Fake:
    """Start bench/fake_twilio_server.py and wait (15 s at most) for its READY line."""
    argv = [
        sys.executable,
        str(ROOT / "bench" / "fake_twilio_server.py"),
        "--port=0",
        f"--latency={latency}",
        f"--account-sid={account_sid}",
        f"--auth-token={auth_token}",
        "--max-seconds=7200",
    ]
    with log.open("w") as errors:
        process = children.start(argv, stdout=subprocess.PIPE, stderr=errors, text=True)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.2)
        if ready:
            line = process.stdout.readline()
            if line.startswith("READY "):
                return Fake(process, line.split()[1])
            if not line:
                break
        if process.poll() is not None:
            break
    raise BenchError(f"the fake Twilio did not start; see {log}:\n{tail(log)}")


# -- the app servers ---------------------------------------------------------------------------


@dataclass
class Server:
    """One web server started from the Procfile command (profiled by py-spy if `profile`)."""

    label: str
    port: int
    process: subprocess.Popen
    log: Path
    profile: Path | None = None
    master_pid: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pids(self) -> list[int]:
        """Return the gunicorn master and its workers (not the shell or py-spy around them)."""
        if self.master_pid is None:
            return []
        return [self.master_pid, *descendants(self.master_pid)]


def start_server(
    children: Children, label: str, command: str, env: dict[str, str], cwd: Path, log: Path
) -> Server:
    """Run `command` with `sh -c`, as a Procfile runner does."""
    with log.open("w") as output:
        process = children.start(
            ["sh", "-c", command], env=env, cwd=cwd, stdout=output, stderr=subprocess.STDOUT
        )
    return Server(label, int(env["PORT"]), process, log)


def wait_until_ready(server: Server, timeout: float = 60.0) -> None:
    """Wait for /healthz to answer 200 and find the gunicorn master; raise if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise BenchError(
                f"{server.label} exited with status {server.process.returncode}; "
                f"its log {server.log}:\n{tail(server.log)}"
            )
        try:
            if requests.get(f"{server.url}/healthz", timeout=2).status_code == 200:
                server.master_pid = _gunicorn_master(server.process.pid)
                if server.master_pid is not None:
                    return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise BenchError(
        f"{server.label} did not answer /healthz in {timeout:.0f} s:\n{tail(server.log)}"
    )


def stop_server(children: Children, server: Server) -> None:
    """Stop a server and its workers."""
    children.stop(server.process, grace=15.0)


def start_profiler(
    children: Children, server: Server, output: Path, idle: bool
) -> subprocess.Popen:
    """Attach py-spy to a running server's master and workers; it samples until stopped.

    Attaching just before the burst keeps start-up, imports and warm-up out of the profile.
    --nonblocking samples without pausing the workers, so timings stay close to real.
    """
    assert server.master_pid is not None
    argv = [
        "py-spy",
        "record",
        "--pid",
        str(server.master_pid),
        "--subprocesses",
        "--nonblocking",
        "--format",
        "raw",
        "--output",
        str(output),
    ]
    argv += ["--idle"] if idle else []
    log = output.with_suffix(".log")
    with log.open("w") as messages:
        process = children.start(argv, stdout=messages, stderr=subprocess.STDOUT)
    # py-spy reports when it has attached; give it that long (bounded) before the burst.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and process.poll() is None:
        if "Sampling process" in log.read_text(errors="replace"):
            break
        time.sleep(0.05)
    if process.poll() is not None:
        raise BenchError(f"py-spy could not attach to {server.label}:\n{tail(log)}")
    server.profile = output
    return process


def stop_profiler(children: Children, process: subprocess.Popen) -> None:
    """Stop py-spy the way Ctrl-C does, so it writes its file, then make sure it is gone."""
    try:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        sys.stderr.write("bench: py-spy did not write its profile within 60 s\n")
    children.stop(process)


def _gunicorn_master(root: int) -> int | None:
    """Return the first process at or below `root` that is gunicorn itself."""
    for pid in [root, *descendants(root)]:
        argv = _cmdline(pid)
        if not argv or Path(argv[0]).name in SHELLS | {"py-spy"}:
            continue
        if any("gunicorn" in Path(arg).name for arg in argv[:3]):
            return pid
    return None


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def descendants(pid: int) -> list[int]:
    """Return every process below `pid`, breadth first, from /proc/*/task/*/children."""
    found: list[int] = []
    queue = [pid]
    while queue:
        parent = queue.pop(0)
        try:
            tasks = list(Path(f"/proc/{parent}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            found.extend(children)
            queue.extend(children)
    return found


def rss_bytes(pids: Iterable[int]) -> int:
    """Return the summed resident set size of `pids` (processes that are gone count 0)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * PAGE_KB
                    break
        except OSError:
            pass
    return total


def cpu_seconds(pids: Iterable[int]) -> float:
    """Return the user + system CPU time `pids` have used so far."""
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of stat
    return total / CLOCK_TICKS


def database_pids() -> list[int]:
    """Return the PostgreSQL and Redis server processes: part of the line, not other work."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                comm = (entry / "comm").read_text().strip()
            except OSError:
                continue
            if comm in ("postgres", "redis-server"):
                pids.append(int(entry.name))
    return pids


def machine_busy_seconds() -> float:
    """Return the CPU time every process on the machine has used so far (from /proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def wait_for_quiet(max_wait: float, busy_share: float = 0.2, cpus: int = 1) -> float:
    """Wait (at most `max_wait` s) until the CPUs are mostly idle; return the last busy share.

    Other work on the machine (a test suite, a browser) competes with the servers and makes
    the numbers slower and noisier, so each burst starts when the machine is quiet if it can.
    """
    deadline = time.monotonic() + max_wait
    while True:
        before = machine_busy_seconds()
        time.sleep(0.5)
        share = (machine_busy_seconds() - before) / (0.5 * cpus)
        if share <= busy_share or time.monotonic() >= deadline:
            return share


@dataclass
class MemorySampler:
    """Sample the servers' summed RSS every `interval` seconds in a thread; keep the peaks."""

    servers: list[Server]
    interval: float = 0.05
    peak_total: int = 0
    peak_each: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.peak_each = [0] * len(self.servers)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        """Take one sample now."""
        each = [rss_bytes(server.pids()) for server in self.servers]
        self.peak_each = [max(old, new) for old, new in zip(self.peak_each, each, strict=True)]
        self.peak_total = max(self.peak_total, sum(each))


def run_flask(env: dict[str, str], cwd: Path, *args: str) -> str:
    """Run `flask --app ivr ARGS` (the release step, imports); raise with its output if it fails."""
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "ivr", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise BenchError(f"flask {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def tail(path: Path, lines: int = 30) -> str:
    """Return the last `lines` lines of a log file."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
