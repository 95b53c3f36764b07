"""Benchmark the conference line at the top of the hour: N callers at once, C in flight.

    python bench/run.py                          # N=200, C=50, 100 ms fake Twilio, SQLite
    python bench/run.py --provider verify        # codes by (fake) Twilio Verify
    python bench/run.py --n 50,200,500           # growth: one fresh server per N
    python bench/run.py --servers 2              # scale-out: two servers, PostgreSQL + Redis
    python bench/run.py --profile --skip-floor   # py-spy the app's workers (see bench/README.md)
    python bench/run.py --metrics on             # the line with Prometheus metrics on

One run: starts the fake Twilio REST API in its own process (--latency per request); for each N,
imports N participants (plus warm-up and guard-check callers) with `flask --app ivr init-db` and
`participants import`, starts the app exactly as the Procfile's `web:` line serves it (same
gunicorn settings; WEB_CONCURRENCY and GUNICORN_THREADS pass through if set), warms it with a
few calls, then lets N callers dial in at once with C in flight. Each caller posts a signed
/voice, reads its code from the fake, posts a signed /gather, and must be dialled into the
conference. Then the same for the floor app (bench/floor.py: signature check, one provider call
per webhook, constant TwiML) under the same gunicorn command line. It prints, for both, joined
and failed calls, call-setup time (the two webhooks' latencies added) p50/p99, each webhook's
p50/p99, when the code reached the caller, calls/s, the servers' peak RSS (gunicorn master +
workers, sampled every 50 ms) and CPU per call, and the project/floor ratios; after the burst
it checks that lockouts and the send cap hold across workers and servers. Each repeat then
bursts the project and the floor at the same time (--side-by-side), for a CPU ratio taken over
the same moments of the machine. Results, server logs
and profiles go to bench/results/<timestamp>/.

Exit status: 0 when every call joined and every guard check passed; 1 when not; 2 when the
benchmark itself could not run; 130 on Ctrl-C. Every child process is stopped on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from time import process_time
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import report  # noqa: E402
from bench.callers import Check, Twilio, lockout_check, send_cap_check  # noqa: E402
from bench.servers import (  # noqa: E402
    BenchError,
    Children,
    Fake,
    MemorySampler,
    Server,
    cpu_seconds,
    database_pids,
    floor_command,
    machine_busy_seconds,
    metered_command,
    procfile_command,
    rss_bytes,
    run_flask,
    start_fake,
    start_profiler,
    start_server,
    stop_profiler,
    stop_server,
    tail,
    wait_for_quiet,
    wait_until_ready,
)
from ivr.phones import parse_phone  # noqa: E402

# Dummy credentials: they only ever reach the fake Twilio on 127.0.0.1.
ACCOUNT_SID = "AC" + "be" * 16
AUTH_TOKEN = "bench-auth-token-not-a-secret"
VERIFY_SID = "VA" + "be" * 16
SECRET_KEY = "bench-secret-key-not-a-secret"
METRICS_TOKEN = "bench-metrics-token-not-a-secret"
LINE = "+18005550100"
# 555-0100..0199 is the range set aside for fiction in every North American area code.
AREA_CODES = (
    "201 202 203 205 206 207 208 209 210 212 213 214 215 216 217 218 219 224 225 228 "
    "229 231 234 239 240 248 251 252 253 254 256 260 262 267 269 270 276 281 301 302"
).split()
SENDS_PER_HOUR = 5
# Above this 1-minute load average before a burst, someone else is using the CPUs.
BUSY_LOAD = 0.5
# Side by side, the project gets between 1/4 and 4 times the floor's callers (see _pace).
MAX_PACE = 4.0
# Bursts measured again when other work took too much CPU.
MAX_REDOS = 2
MAX_ATTEMPTS = 3
# Environment a caller may set to try other server settings; recorded in the results.
PASSTHROUGH = ("WEB_CONCURRENCY", "GUNICORN_THREADS", "TWILIO_TIMEOUT_SECONDS")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Read the command line; defaults are issue 5's (N=200, C=50, 100 ms)."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog="See the module docstring and bench/README.md for what is measured.",
    )
    parser.add_argument(
        "--n",
        default="200",
        type=_counts,
        help="callers in the burst; a comma list (50,200,500) runs each in turn "
        "on fresh servers and prints a growth table (default 200)",
    )
    parser.add_argument(
        "--concurrency", "-c", type=int, default=50, help="calls in flight at once (default 50)"
    )
    parser.add_argument(
        "--latency",
        type=float,
        default=0.1,
        help="seconds the fake Twilio takes per API request (default 0.1)",
    )
    parser.add_argument(
        "--servers",
        type=int,
        choices=(1, 2),
        default=1,
        help="app servers, each the Procfile command on its own port; callers "
        "go round-robin; 2 needs PostgreSQL and sets REDIS_URL (default 1)",
    )
    parser.add_argument(
        "--provider",
        choices=("builtin", "verify"),
        default="builtin",
        help="the app's code provider: built-in codes sent by SMS, or Verify "
        "(VERIFY_SERVICE_SID set) (default builtin)",
    )
    parser.add_argument(
        "--database",
        choices=("sqlite", "postgres"),
        default=None,
        help="sqlite: a fresh file per run; postgres: --postgres-url, dropped "
        "and created afresh (default sqlite for 1 server, postgres for 2)",
    )
    parser.add_argument(
        "--postgres-url",
        default="postgresql://postgres@127.0.0.1:5432/ivr_bench",
        help="the benchmark's own database; it is DROPPED and re-created",
    )
    parser.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/5",
        help="REDIS_URL for --servers 2; this Redis database is flushed",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="bursts per N for each app, taking turns on fresh servers; latencies "
        "are pooled over them and each repeat's p50/p99 shown (default 3)",
    )
    parser.add_argument(
        "--metrics",
        choices=("on", "off"),
        default="off",
        help="on: the project runs with METRICS_TOKEN set, so it counts every call, and "
        "/metrics is scraped after each burst and must count every join; off: no "
        "METRICS_TOKEN, no metrics kept (default off)",
    )
    parser.add_argument("--skip-floor", action="store_true", help="measure the project only")
    parser.add_argument(
        "--side-by-side",
        choices=("on", "off"),
        default="on",
        help="on: each repeat also runs one burst of the project and one of the floor at the "
        "same time, each with C in flight, and compares their CPU per call over the same "
        "moments of the machine, which judges the CPU goal (default on; off without the floor)",
    )
    parser.add_argument(
        "--compare",
        type=Path,
        default=None,
        metavar="CHECKOUT",
        help="instead of the usual bursts, run this checkout's line side by side with the line "
        "of another checkout of the project (its own database; on PostgreSQL "
        "--postgres-url + '_compare', also dropped and re-created) and print their CPU per "
        "call: a change of a few percent, measured",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=64,
        help="unmeasured calls before each burst, C in flight, so that every request and "
        "code-sender thread of every worker has answered one (64)",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=30.0,
        help="before each burst, wait up to this long for other work on the "
        "machine to leave the CPUs idle (default 30 s)",
    )
    parser.add_argument(
        "--max-others",
        type=float,
        default=0.1,
        help="measure a burst again (twice at most) when processes outside the "
        "benchmark used more than this share of the CPUs during it (0.1)",
    )
    parser.add_argument(
        "--code-wait",
        type=float,
        default=10.0,
        help="how long a caller waits for its code to reach the fake (10 s)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run the project's servers under py-spy; writes a collapsed-stack "
        "profile per server and prints the hottest functions",
    )
    parser.add_argument(
        "--cpu-by-function",
        action="store_true",
        help="time the parts of a call (store calls, provider calls, signature, TwiML, log "
        "lines, hooks) on the line's busy threads and print CPU per call for each "
        "(bench/cpu_meter.py's FUNCTIONS); adds its own cost to the totals",
    )
    parser.add_argument(
        "--profile-idle",
        action="store_true",
        help="with --profile: also sample threads waiting on I/O (wall time)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=1800,
        help="stop the whole run after this many seconds (default 1800)",
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=ROOT / "bench" / "results",
        help="where each run's directory goes (default bench/results)",
    )
    args = parser.parse_args(argv)
    if args.database is None:
        args.database = "postgres" if args.servers == 2 else "sqlite"
    if args.servers == 2 and args.database == "sqlite":
        parser.error("--servers 2 stands for two machines: they share PostgreSQL, not a file")
    if args.concurrency < 1 or args.repeat < 1 or args.warmup < 0 or args.latency < 0:
        parser.error("--concurrency and --repeat must be at least 1, --warmup and --latency >= 0")
    if args.compare is not None:
        args.compare = args.compare.resolve()
        if not (args.compare / "ivr" / "__init__.py").is_file():
            parser.error(f"--compare: {args.compare} is not a checkout of this project")
        if not (args.compare / "bench" / "cpu_meter.py").is_file():
            parser.error(f"--compare: {args.compare} has no bench/cpu_meter.py to serve it with")
        if args.servers != 1:
            parser.error("--compare runs one server of each line")
    if args.profile_idle:
        args.profile = True
    if args.profile and shutil.which("py-spy") is None:
        parser.error("--profile needs py-spy: pip install -r bench/requirements.txt")
    return args


def _counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number or comma list: {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("caller counts must be at least 1")
    return counts


def fictional_phones(count: int) -> list[str]:
    """Return `count` distinct fictional US numbers (+1 AAA 555-01XX) the app accepts."""
    phones = []
    for area in AREA_CODES:
        for number in range(100, 200):
            phone = parse_phone(f"+1{area}555{number:04d}")
            if phone is not None:
                phones.append(phone)
            if len(phones) == count:
                return phones
    raise BenchError(f"at most {len(phones)} fictional numbers are available; asked for {count}")


class Callers:
    """Who dials in one scenario: warm-up callers, the burst, and two guard-check callers."""

    def __init__(self, n: float, warmup: int, after: int = 0) -> None:
        """`after`: skip that many numbers, for a second group dialling at the same time."""
        n = max(1, round(n))
        phones = fictional_phones(after + warmup + n + 2)[after:]
        self.warmup = phones[:warmup]
        self.burst = phones[warmup : warmup + n]
        self.lockout, self.send_cap = phones[-2:]
        self.count = len(phones)

    def write_csv(self, path: Path) -> None:
        """Write every caller as phone,name,role; the first of the burst is the moderator."""
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["phone", "name", "role"])
            for index, phone in enumerate([*self.warmup, *self.burst, self.lockout, self.send_cap]):
                role = "moderator" if phone == self.burst[0] else "participant"
                writer.writerow([phone, f"Caller {index + 1}", role])


class Bench:
    """One benchmark run: the fake, then per N the project's and the floor's servers."""

    def __init__(self, args: argparse.Namespace, children: Children, tmp: Path, out: Path):
        self.args = args
        self.children = children
        self.tmp = tmp
        self.out = out
        self.web = metered_command(procfile_command("web"))
        self.floor_web = floor_command(self.web)
        self.fake: Fake | None = None
        self.databases = 0
        self.side_by_side = args.side_by_side == "on" and not args.skip_floor

    def run(self) -> dict[str, Any]:
        """Run every N and return all results; print tables as they come."""
        args = self.args
        self.fake = start_fake(
            self.children, args.latency, ACCOUNT_SID, AUTH_TOKEN, self.out / "fake-twilio.log"
        )
        if args.compare is not None:
            return self.compare()
        runs = []
        for n in args.n:
            callers = Callers(n, args.warmup)
            project: list[report.Burst] = []
            floor: list[report.Burst] = []
            together: list[report.SideBySide] = []
            checks: list[Check] = []
            # Project and floor take turns, so drift in the machine's speed hits both alike:
            # the project first in odd repeats, the floor first in even ones (ABBA), so that a
            # machine growing slower or faster through the run favours neither.
            for repeat in range(args.repeat):
                of = f", repeat {repeat + 1}/{args.repeat}" if args.repeat > 1 else ""
                turns = ["project"] if args.skip_floor else ["project", "floor"]
                for turn in turns if repeat % 2 == 0 else reversed(turns):
                    if turn == "project":
                        burst, guard = self.project_burst(n, callers, of, profile=not repeat)
                        project.append(burst)
                        checks.extend(guard)
                    else:
                        floor.append(self.floor_burst(n, callers, of))
                if self.side_by_side:
                    pace = _pace(project[-1], floor[-1])
                    together.append(self.side_by_side_burst(n, pace, of))
            entry: dict[str, Any] = {
                "n": n,
                "project": report.summarize(project),
                "floor": report.summarize(floor) if floor else None,
                "side_by_side": report.summarize_side_by_side(together),
                "checks": [vars(check) for check in checks],
            }
            entry["ratios"] = report.ratios(entry["project"], entry["floor"], entry["side_by_side"])
            print(
                f"\nResults, N={n}, C={args.concurrency}, fake latency "
                f"{1000 * args.latency:.0f} ms, {args.servers} server(s), {args.provider} codes, "
                f"{args.database}, {args.repeat} repeat(s) pooled:"
            )
            print(report.phase_table(entry["project"], entry["floor"]))
            if entry["side_by_side"]:
                print(report.side_by_side_table(entry["side_by_side"]))
            functions = report.function_table(entry["project"])
            if functions:
                print(functions)
            print("Goals (issue 12):")
            print(report.goals_text(entry["project"], entry["floor"], entry["side_by_side"]))
            for name in dict.fromkeys(check.name for check in checks):
                same = [check for check in checks if check.name == name]
                failed = [check for check in same if not check.passed]
                shown = (failed or same)[0]
                passed = len(same) - len(failed)
                times = f" ({passed} of {len(same)} repeats)" if len(same) > 1 else ""
                print(f"  {'FAIL' if failed else 'PASS'}  {name}{times}: {shown.detail}")
            runs.append(entry)
        if len(runs) > 1:
            print("\nGrowth:")
            print(report.growth_table(runs))
        return {"runs": runs}

    def project_burst(
        self, n: int, callers: Callers, of: str, profile: bool
    ) -> tuple[report.Burst, list[Check]]:
        """One burst against the project (profiled if --profile and `profile`), its checks."""
        args = self.args
        servers = f"{args.servers} server{'s' if args.servers > 1 else ''}"
        print(
            f"\n== N={n}{of}: project ({args.provider} codes, {args.database}, {servers})",
            flush=True,
        )
        return self.undisturbed(
            partial(self.project_phase, n, callers, profile=args.profile and profile)
        )

    def floor_burst(self, n: int, callers: Callers, of: str) -> report.Burst:
        """One burst against the floor."""
        print(f"\n== N={n}{of}: floor", flush=True)
        burst, _ = self.undisturbed(
            partial(
                self.phase,
                "floor",
                n,
                callers,
                self.floor_web,
                self.app_env("sqlite:///unused"),
                checks=False,
            )
        )
        return burst

    def undisturbed(
        self, measure: Callable[[], tuple[report.Burst, list[Check]]]
    ) -> tuple[report.Burst, list[Check]]:
        """Measure; redo it (twice at most) if other work took over --max-others of the CPUs."""
        for attempt in range(MAX_REDOS + 1):
            burst, guard = measure()
            share = burst.others_cpu_share
            if share <= self.args.max_others or attempt == MAX_REDOS:
                if share > self.args.max_others:
                    print(f"  others still used {100 * share:.0f}% of the CPUs; keeping it")
                return burst, guard
            print(f"  others used {100 * share:.0f}% of the CPUs during the burst; again")
        raise AssertionError("unreachable")

    def project_phase(
        self, n: int, callers: Callers, profile: bool
    ) -> tuple[report.Burst, list[Check]]:
        """Set up the database and roster, then serve and drive the app."""
        args = self.args
        env = self.project_env(n, callers)
        if args.cpu_by_function:
            env["BENCH_CPU_FUNCTIONS"] = "1"
        if args.servers == 2:
            env["REDIS_URL"] = args.redis_url
            _flush_redis(args.redis_url)
        return self.phase("project", n, callers, self.web, env, checks=True, profile=profile)

    def compare(self) -> dict[str, Any]:
        """Run this checkout's line and --compare's side by side, N callers each; print and
        return their CPU per call (`--compare`)."""
        args = self.args
        runs = []
        for n in args.n:
            bursts = []
            for repeat in range(args.repeat):
                of = f", repeat {repeat + 1}/{args.repeat}" if args.repeat > 1 else ""
                bursts.append(self.side_by_side_burst(n, 1.0, of))
            together = report.summarize_side_by_side(bursts)
            print(f"\nN={n}, C={args.concurrency}, {args.provider} codes, {args.database}:")
            print(report.compare_table(together, str(args.compare)))
            runs.append({"n": n, "compare": str(args.compare), "side_by_side": together})
        return {"runs": runs}

    def project_env(
        self, n: int, callers: Callers, root: Path = ROOT, database: str | None = None
    ) -> dict[str, str]:
        """Return the environment of the line in checkout `root` on a fresh database (this
        N's, or `database`) holding `callers`."""
        env = self.app_env(database or self.fresh_database(n))
        env["PYTHONPATH"] = str(root)
        if self.args.metrics == "on":
            env["METRICS_TOKEN"] = METRICS_TOKEN
        cwd = self.workdir()
        roster = self.tmp / f"participants-{n}.csv"
        callers.write_csv(roster)
        run_flask(env, cwd, "init-db")
        print("  " + run_flask(env, cwd, "participants", "import", str(roster)).strip())
        return env

    def side_by_side_burst(self, n: int, pace: float, of: str) -> report.SideBySide:
        """One burst of the project and one of the floor at the same time, one server each.

        The floor gets N callers and the project N x `pace` (its calls/s over the floor's in
        this repeat's bursts in turn), so that both bursts last about as long: an app that
        finished first would leave the other the machine to itself for the rest of its burst.

        The machine's speed changes from one second to the next (a fixed loop of Python takes
        from 0.27 to 0.49 s on this kind of machine, seconds apart), so two bursts measured in
        turn carry that into their ratio. Bursting together, both apps run through the same
        moments: their CPU per call compares like with like. Latencies here are not the apps'
        own (each has half the machine), so only CPU is kept.
        """
        callers = Callers(min(MAX_PACE, max(1 / MAX_PACE, pace)) * n, self.args.warmup)
        # Other numbers for the floor's callers, so that no code one app sends is read for a
        # caller of the other.
        floor_callers = Callers(n, self.args.warmup, after=callers.count)
        stamp = time.strftime("%H%M%S")
        phases = self.side_by_side_phases(n, callers, floor_callers)
        who = " and ".join(f"{label} ({len(group.burst)} callers)" for label, *_, group in phases)
        print(f"\n== N={n}{of}: {who} side by side", flush=True)
        servers: list[Server] = []
        try:
            for label, command, env, _ in phases:
                meter = self.tmp / f"cpu-{label}-together-{stamp}"
                meter.mkdir(exist_ok=True)  # not read: both servers pay the meter's cost alike
                server_env = {**env, "PORT": str(_free_port()), "BENCH_CPU_DIR": str(meter)}
                servers.append(
                    start_server(
                        self.children,
                        f"{label} server (side by side)",
                        command,
                        server_env,
                        self.workdir(),
                        self.out / f"{label}-together-n{n}-{stamp}.log",
                    )
                )
            for server in servers:
                wait_until_ready(server)
            groups = [group for *_, group in phases]
            together = asyncio.run(self.drive_side_by_side(servers, groups))
        finally:
            for server in servers:
                stop_server(self.children, server)
        for server, failed in zip(servers, together.failed_each(), strict=True):
            if failed:
                print(f"  {server.label}: {len(failed)} calls failed, e.g. {failed[0]}")
        return together

    def side_by_side_phases(
        self, n: int, callers: Callers, floor_callers: Callers
    ) -> list[tuple[str, str, dict[str, str], Callers]]:
        """Return what runs side by side: label, command, environment and callers of each."""
        if self.args.compare is not None:
            if self.args.database == "postgres":
                other = f"{self.args.postgres_url}_compare"
                _recreate_postgres(other)
            else:
                other = self.fresh_database(n)
            return [
                ("project", self.web, self.project_env(n, callers), callers),
                (
                    "other",
                    self.web,
                    self.project_env(n, floor_callers, self.args.compare, other),
                    floor_callers,
                ),
            ]
        return [
            ("project", self.web, self.project_env(n, callers), callers),
            ("floor", self.floor_web, self.app_env("sqlite:///unused"), floor_callers),
        ]

    async def drive_side_by_side(
        self, servers: list[Server], groups: list[Callers]
    ) -> report.SideBySide:
        """Warm both servers up together, then burst both at once; each server's CPU is read
        from its own burst's start to its own burst's end."""
        args = self.args
        assert self.fake is not None
        self.fake.reset()
        twilios = tuple(self.twilio([server]) for server in servers)
        project, floor = twilios
        if args.warmup:
            async with project, floor:
                pairs = zip(twilios, groups, strict=True)
                await asyncio.gather(*(t.burst(g.warmup, args.concurrency) for t, g in pairs))
        wait_for_quiet(args.wait_quiet, cpus=len(os.sched_getaffinity(0)))

        async def burst(twilio: Twilio, server: Server, phones: list[str]):
            before = cpu_seconds(server.pids())
            results, wall = await twilio.burst(phones, args.concurrency)
            return results, wall, cpu_seconds(server.pids()) - before

        async with project, floor:
            (project_run, floor_run) = await asyncio.gather(
                *(burst(t, s, g.burst) for t, s, g in zip(twilios, servers, groups, strict=True))
            )
        return report.SideBySide(*project_run, *floor_run)

    def phase(
        self,
        label: str,
        n: int,
        callers: Callers,
        command: str,
        env: dict[str, str],
        checks: bool,
        profile: bool = False,
    ) -> tuple[report.Burst, list[Check]]:
        """Start the servers, warm them, drive the burst (and checks), stop the servers."""
        args = self.args
        assert self.fake is not None
        servers: list[Server] = []
        stamp = time.strftime("%H%M%S")
        meter = self.tmp / f"cpu-{label}-{stamp}"
        shutil.rmtree(meter, ignore_errors=True)
        meter.mkdir()
        env = {**env, "BENCH_CPU_DIR": str(meter)}
        try:
            for index in range(args.servers):
                server_env = {**env, "PORT": str(_free_port())}
                servers.append(
                    start_server(
                        self.children,
                        f"{label} server {index}",
                        command,
                        server_env,
                        self.workdir(),
                        self.out / f"{label}-n{n}-{stamp}-server{index}.log",
                    )
                )
            for server in servers:
                wait_until_ready(server)
            profiles = (
                [self.out / f"profile-n{n}-{stamp}-server{i}.txt" for i in range(len(servers))]
                if profile
                else None
            )
            burst, guard = asyncio.run(self.drive(servers, callers, checks, profiles))
        finally:
            for server in servers:
                stop_server(self.children, server)
        burst.webhook_cpu = report.webhook_cpu(meter, *burst.window)
        failed = [r.error for r in burst.results if not r.joined]
        if failed:
            print(f"  {len(failed)} calls failed, e.g. {failed[0]}")
            for server in servers:
                print(f"  last lines of {server.log}:\n{tail(server.log, 15)}")
        if profile:
            self.summarize_profiles(servers, n)
        return burst, guard

    async def drive(
        self,
        servers: list[Server],
        callers: Callers,
        checks: bool,
        profiles: list[Path] | None = None,
    ) -> tuple[report.Burst, list[Check]]:
        """Warm up, the measured burst (profiled if asked), then the project's guard checks."""
        args = self.args
        assert self.fake is not None
        self.fake.reset()
        twilio = self.twilio(servers)
        warm: list = []
        if callers.warmup:
            async with twilio:
                # A server at the top of the hour has been answering calls: its connections
                # are open and its statements compiled, on every thread. Those one-time costs
                # are not a call's.
                warm, _ = await twilio.burst(callers.warmup, args.concurrency)
            cold = [r.error for r in warm if not r.joined]
            if cold:
                print(f"  warm-up: {len(cold)} of {len(warm)} calls failed: {cold[0]}")
        idle_rss = sum(rss_bytes(s.pids()) for s in servers)
        cpus = len(os.sched_getaffinity(0))
        busy = wait_for_quiet(args.wait_quiet, cpus=cpus)
        if busy > 0.2:
            print(
                f"  the CPUs were still {100 * busy:.0f}% busy with other work after "
                f"--wait-quiet {args.wait_quiet:g} s; measuring anyway"
            )
        load = _load_average()
        # A fresh client for the burst: no connection has sat idle while waiting for quiet.
        async with twilio:
            before = self.fake.stats()
            spies = [
                start_profiler(self.children, server, path, args.profile_idle)
                for server, path in zip(servers, profiles or [], strict=False)
            ]
            cpu_before = sum(cpu_seconds(s.pids()) for s in servers)
            # Everyone's CPU, minus the servers', the driver's and the fake's: others' share.
            # The database's CPU is the line's own; py-spy's is the profile's cost.
            helpers = [self.fake.process.pid, *database_pids(), *(spy.pid for spy in spies)]
            ours_before = process_time() + cpu_seconds(helpers)
            database_before = cpu_seconds(database_pids())
            machine_before = machine_busy_seconds()
            window_start = time.time()
            try:
                with MemorySampler(servers) as memory:
                    results, wall = await twilio.burst(callers.burst, args.concurrency)
            finally:
                window = (window_start, time.time())
                cpu = sum(cpu_seconds(s.pids()) for s in servers) - cpu_before
                # Connections opened during the burst fork new PostgreSQL backends: count them.
                helpers += [pid for pid in database_pids() if pid not in helpers]
                ours = process_time() + cpu_seconds(helpers) - ours_before
                others = machine_busy_seconds() - machine_before - cpu - ours
                database_cpu = cpu_seconds(database_pids()) - database_before
                for spy in spies:
                    stop_profiler(self.children, spy)
            after = self.fake.stats()
            provider = {k: after.get(k, 0) - before.get(k, 0) for k in after}
            burst = report.Burst(
                results,
                wall,
                memory.peak_total,
                memory.peak_each,
                idle_rss,
                cpu,
                provider,
                load,
                max(0.0, others) / (wall * cpus),
                database_cpu,
                window=window,
            )
            guard: list[Check] = []
            if checks and args.metrics == "on":
                joined = sum(r.joined for r in [*warm, *results])
                guard.append(metrics_check(servers, joined))
            if checks:
                guard.append(await lockout_check(twilio, callers.lockout, MAX_ATTEMPTS))
                guard.append(await send_cap_check(twilio, callers.send_cap, SENDS_PER_HOUR))
        return burst, guard

    def twilio(self, servers: list[Server]) -> Twilio:
        """Return the driver that plays Twilio for `servers` (round-robin over them)."""
        assert self.fake is not None
        return Twilio(
            [server.url for server in servers],
            self.fake.url,
            ACCOUNT_SID,
            AUTH_TOKEN,
            LINE,
            self.args.concurrency,
            self.args.code_wait,
        )

    def summarize_profiles(self, servers: list[Server], n: int) -> None:
        """Print and save what py-spy saw in each server's workers."""
        for server in servers:
            if server.profile is None or not server.profile.is_file():
                print(f"  (no profile from {server.label}; see {server.log})")
                continue
            summary = report.profile_summary(server.profile)
            summary_path = server.profile.with_suffix(".summary.txt")
            summary_path.write_text(summary + "\n")
            print(
                f"\nProfile of {server.label}'s burst (py-spy, {self.args.concurrency} calls in "
                f"flight; raw stacks in {server.profile}, open them in "
                f"https://www.speedscope.app):\n{summary}"
            )

    def app_env(self, database: str) -> dict[str, str]:
        """Return the environment the Procfile's processes get: settings as on a real host."""
        env = {
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_PHONE_NUMBER": LINE,
            "TWILIO_API_URL": self.fake.url if self.fake else "",
            "SECRET_KEY": SECRET_KEY,
            "DATABASE_URL": database,
            "INSTANCE_PATH": str(self.tmp / "instance"),
            "PYTHONPATH": str(ROOT),
        }
        if self.args.provider == "verify":
            env["VERIFY_SERVICE_SID"] = VERIFY_SID
        for name in (
            "PATH",
            "HOME",
            "LANG",
            "LC_ALL",
            "PYENV_ROOT",
            "PYENV_VERSION",
            "VIRTUAL_ENV",
            *PASSTHROUGH,
        ):
            if name in os.environ:
                env[name] = os.environ[name]
        return env

    def fresh_database(self, n: int) -> str:
        """Return the URL of an empty database for this N."""
        if self.args.database == "sqlite":
            self.databases += 1
            return f"sqlite:///{self.tmp / f'ivr-bench-{n}-{self.databases}.sqlite3'}"
        _recreate_postgres(self.args.postgres_url)
        return self.args.postgres_url

    def workdir(self) -> Path:
        """Return an empty working directory, so no config.py or .env of a checkout is read."""
        path = self.tmp / "cwd"
        path.mkdir(exist_ok=True)
        return path


def metrics_check(servers: list[Server], joined: int) -> Check:
    """Scrape every server's /metrics once; the joins they counted must be the calls that joined.

    After the burst, outside its CPU measurement: Prometheus scrapes every 15 s or so, not
    per call.
    """
    import requests
    from prometheus_client.parser import text_string_to_metric_families

    counted = 0.0
    for server in servers:
        response = requests.get(
            f"{server.url}/metrics",
            headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
            timeout=10,
        )
        if response.status_code != 200:
            return Check("metrics", False, f"{server.label}: /metrics {response.status_code}")
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                if sample.name == "ivr_calls_total" and sample.labels["outcome"].startswith(
                    "joined"
                ):
                    counted += sample.value
    detail = f"/metrics counted {counted:.0f} joins; {joined} calls joined"
    return Check("metrics", counted == joined, detail)


def _recreate_postgres(url: str) -> None:
    """Drop and create the benchmark's own database (never any other)."""
    import psycopg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    name = parsed.database
    if not name or name in ("postgres", "template0", "template1"):
        raise BenchError(f"--postgres-url must name a database of its own, not {name!r}")
    conninfo = {
        "host": parsed.host or "127.0.0.1",
        "port": parsed.port or 5432,
        "user": parsed.username or "postgres",
        "dbname": "postgres",
        "connect_timeout": 5,
    }
    if parsed.password:
        conninfo["password"] = parsed.password
    try:
        with psycopg.connect(**conninfo, autocommit=True) as connection:
            quoted = '"' + name.replace('"', '""') + '"'
            connection.execute(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
            connection.execute(f"CREATE DATABASE {quoted}")
    except psycopg.Error as error:
        raise BenchError(f"cannot reset PostgreSQL database {name!r}: {error}") from None


def _pace(project: report.Burst, floor: report.Burst) -> float:
    """Return the project's calls per second over the floor's in a repeat's bursts in turn."""
    project_pace = sum(r.joined for r in project.results) / project.wall_seconds
    floor_pace = sum(r.joined for r in floor.results) / floor.wall_seconds
    return project_pace / floor_pace if project_pace and floor_pace else 1.0


def _flush_redis(url: str) -> None:
    """Empty the Redis database the servers share, so earlier runs' counters do not count."""
    try:
        import redis
    except ImportError:
        print("  (redis not installed: not flushing REDIS_URL)")
        return
    try:
        redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5).flushdb()
    except redis.RedisError as error:
        raise BenchError(f"cannot reach Redis at {url}: {error}") from None


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _load_average() -> float:
    """Return the 1-minute load average (runnable processes, all users)."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0


def _on_signal(signum: int, _frame: object) -> None:
    if signum == signal.SIGALRM:
        raise BenchError("the run took longer than --timeout; stopping")
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; return the exit status."""
    args = parse_args(argv)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.results_dir / stamp
    out.mkdir(parents=True, exist_ok=True)
    # SIGINT too: a shell starts background jobs with SIGINT ignored, and Python keeps that.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _on_signal)
    signal.signal(signal.SIGALRM, _on_signal)
    signal.alarm(max(1, int(args.timeout)))
    children = Children()
    info = report.machine()
    header = {
        "command": " ".join(["python", "bench/run.py", *(argv or sys.argv[1:])]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "parameters": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "server_settings": {k: os.environ[k] for k in PASSTHROUGH if k in os.environ},
        "machine": info,
    }
    print(
        f"Machine: {info['cpus']} CPUs ({info['cpu_model']}), {info['memory_gb']} GB, "
        f"Python {info['python']}; code {info['git']} on {info['git_branch']}"
    )
    load = _load_average()
    header["load_average_before"] = load
    if load > BUSY_LOAD:
        print(
            f"WARNING: load average {load:.2f} before the run: other work is using this "
            "machine's CPUs, so the numbers will be slower and noisier than on an idle one."
        )
    print(
        f"Parameters: N={','.join(map(str, args.n))} C={args.concurrency} "
        f"latency={args.latency}s servers={args.servers} provider={args.provider} "
        f"database={args.database} warmup={args.warmup} repeat={args.repeat}"
    )
    status = 2
    try:
        with tempfile.TemporaryDirectory(prefix="ivr-bench-") as tmp:
            try:
                bench = Bench(args, children, Path(tmp), out)
                print(f"Server: {bench.web}\nFloor:  {bench.floor_web}")
                header["procfile_web"], header["floor_web"] = bench.web, bench.floor_web
                results = bench.run()
            finally:
                signal.alarm(0)
                children.stop_all()
        failed = any(
            (run.get("project") or {}).get("failed")
            or (run.get("floor") or {}).get("failed")
            or (run["side_by_side"] or {}).get("project_failed")
            or (run["side_by_side"] or {}).get("floor_failed")
            or not all(check["passed"] for check in run.get("checks", []))
            for run in results["runs"]
        )
        status = 1 if failed else 0
        path = out / "results.json"
        path.write_text(json.dumps({**header, **results, "exit_status": status}, indent=2) + "\n")
        print(f"\nResults: {path}")
        if failed:
            print("FAILED: some calls did not join or a guard check failed (exit status 1)")
    except KeyboardInterrupt:
        print("\nInterrupted; every child process has been stopped.", file=sys.stderr)
        status = 130
    except BenchError as error:
        print(f"\nbench: {error}", file=sys.stderr)
        status = 2
    return status


if __name__ == "__main__":
    sys.exit(main())
