"""Numbers from a benchmark run: percentiles, the printed tables, the machine, py-spy summaries."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.callers import CallResult

ROOT = Path(__file__).resolve().parent.parent
# Issue 12's goals, against the floor in the same run: setup time at most 0.8x at p50 and 1.0x
# at p99, at least 0.9x the calls per second, at most 1.5x the server CPU per call.
GOAL_P50_RATIO = 0.8
GOAL_P99_RATIO = 1.0
GOAL_CALLS_RATIO = 0.9
GOAL_CPU_RATIO = 1.5


def percentile(values: Sequence[float], q: float) -> float | None:
    """Return the q-th percentile (0-100) by linear interpolation, or None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class Burst:
    """What one burst measured: every call, and the servers' memory and CPU meanwhile."""

    results: list[CallResult]
    wall_seconds: float
    peak_rss: int
    peak_rss_each: list[int]
    idle_rss: int
    cpu_seconds: float
    provider_requests: dict[str, int]
    load_before: float = 0.0
    others_cpu_share: float = 0.0
    database_cpu_seconds: float = 0.0
    # When the burst started and ended (time.time()), and each webhook request's CPU seconds
    # on its request thread, by path (bench/cpu_meter.py).
    window: tuple[float, float] = (0.0, 0.0)
    webhook_cpu: dict[str, list[float]] = field(default_factory=dict)


@dataclass
class SideBySide:
    """One burst of the project and one of the floor at the same time: calls and server CPU."""

    project_results: list[CallResult]
    project_wall_seconds: float
    project_cpu_seconds: float
    floor_results: list[CallResult]
    floor_wall_seconds: float
    floor_cpu_seconds: float

    def failed_each(self) -> tuple[list[str], list[str]]:
        """Return why each app's calls that did not join failed: project's, floor's."""
        return (
            [r.error or "?" for r in self.project_results if not r.joined],
            [r.error or "?" for r in self.floor_results if not r.joined],
        )

    def cpu_ms_per_call(self) -> tuple[float, float]:
        """Return the project's and the floor's server CPU per call, in milliseconds."""
        return (
            1000 * self.project_cpu_seconds / len(self.project_results),
            1000 * self.floor_cpu_seconds / len(self.floor_results),
        )


def summarize_side_by_side(bursts: Sequence[SideBySide]) -> dict[str, Any] | None:
    """Return the side-by-side bursts' CPU per call, pooled and per repeat, or None if none."""
    if not bursts:
        return None
    project_calls = sum(len(b.project_results) for b in bursts)
    floor_calls = sum(len(b.floor_results) for b in bursts)
    project_ms = 1000 * sum(b.project_cpu_seconds for b in bursts) / project_calls
    floor_ms = 1000 * sum(b.floor_cpu_seconds for b in bursts) / floor_calls
    failed = [len(errors) for b in bursts for errors in b.failed_each()]
    return {
        "project_cpu_ms_per_call": project_ms,
        "floor_cpu_ms_per_call": floor_ms,
        "cpu_ratio": project_ms / floor_ms if floor_ms else None,
        "project_failed": sum(failed[0::2]),
        "floor_failed": sum(failed[1::2]),
        "project_calls_per_second": sum(sum(r.joined for r in b.project_results) for b in bursts)
        / sum(b.project_wall_seconds for b in bursts),
        "floor_calls_per_second": sum(sum(r.joined for r in b.floor_results) for b in bursts)
        / sum(b.floor_wall_seconds for b in bursts),
        "repeats": [
            {"project_cpu_ms_per_call": p, "floor_cpu_ms_per_call": f, "cpu_ratio": p / f}
            for p, f in (b.cpu_ms_per_call() for b in bursts)
        ],
    }


def side_by_side_table(together: dict[str, Any]) -> str:
    """Return the side-by-side bursts' lines: CPU per call of each app and their ratio."""
    repeats = together["repeats"]
    ratio = together["cpu_ratio"]
    lines = [
        "Side by side (project and floor bursting at the same time, C in flight each; CPU only):",
        f"{'  server CPU / call':24} {together['project_cpu_ms_per_call']:13.1f} ms "
        f"{together['floor_cpu_ms_per_call']:13.1f} ms {_num(ratio, '.2f') + 'x':>14}",
        f"{'  calls / s (shared)':24} {together['project_calls_per_second']:16.1f} "
        f"{together['floor_calls_per_second']:16.1f}",
    ]
    if len(repeats) > 1:
        cells = [
            "/".join(f"{r[key]:.1f}" for r in repeats)
            for key in ("project_cpu_ms_per_call", "floor_cpu_ms_per_call")
        ]
        ratios_each = "/".join(f"{r['cpu_ratio']:.2f}" for r in repeats)
        lines.append(f"{'  CPU ms per repeat':24} {cells[0]:>16} {cells[1]:>16} {ratios_each:>14}")
    if together["project_failed"] or together["floor_failed"]:
        lines.append(
            f"{'  failed':24} {together['project_failed']:>16} {together['floor_failed']:>16}"
        )
    return "\n".join(lines)


def compare_table(together: dict[str, Any], other: str) -> str:
    """Return `--compare`'s lines: this checkout's line and the other's, side by side."""
    lines = [
        f"{'':24} {'this checkout':>16} {'--compare':>16} {'this / other':>14}",
        f"{'server CPU / call':24} {together['project_cpu_ms_per_call']:13.2f} ms "
        f"{together['floor_cpu_ms_per_call']:13.2f} ms {together['cpu_ratio']:13.3f}x",
        f"{'calls / s (shared)':24} {together['project_calls_per_second']:16.1f} "
        f"{together['floor_calls_per_second']:16.1f}",
    ]
    repeats = together["repeats"]
    if len(repeats) > 1:
        ratios_each = "/".join(f"{r['cpu_ratio']:.3f}" for r in repeats)
        lines.append(f"{'  per repeat':24} {'':>16} {'':>16} {ratios_each:>14}")
    if together["project_failed"] or together["floor_failed"]:
        lines.append(
            f"{'failed':24} {together['project_failed']:>16} {together['floor_failed']:>16}"
        )
    lines.append(f"(--compare: {other})")
    return "\n".join(lines)


def webhook_cpu(folder: Path, start: float, end: float) -> dict[str, list[float]]:
    """Return the CPU seconds of each request that started between `start` and `end`, by path,
    from the lines bench/cpu_meter.py's workers wrote."""
    by_path: dict[str, list[float]] = {}
    for file in folder.glob("*.txt"):
        for line in file.read_text().splitlines():
            # "wall path cpu"; a timed function's path ("fn:<label>") has spaces of its own.
            started, _, rest = line.partition(" ")
            path, _, cpu = rest.rpartition(" ")
            try:
                started, cpu = float(started), float(cpu)
            except ValueError:
                continue  # the last line of a worker killed while writing it
            if not path:
                continue
            if start <= started <= end:
                by_path.setdefault(path, []).append(cpu)
    return by_path


def summarize(bursts: Sequence[Burst]) -> dict[str, Any]:
    """Return a phase's numbers over its repeats: latencies pooled over the calls that joined."""
    results = [r for burst in bursts for r in burst.results]
    joined = [r for r in results if r.joined]

    def pooled(attribute: str) -> list[float]:
        values = (getattr(r, attribute) for r in joined)
        return [v for v in values if v is not None]

    setup, voice = pooled("setup_seconds"), pooled("voice_seconds")
    gather, code_wait = pooled("gather_seconds"), pooled("code_wait_seconds")
    errors = Counter(r.error for r in results if not r.joined)
    wall = sum(b.wall_seconds for b in bursts)
    provider: Counter[str] = Counter()
    for burst in bursts:
        provider.update(burst.provider_requests)
    return {
        "calls": len(results),
        "joined": len(joined),
        "failed": len(results) - len(joined),
        "errors": dict(errors.most_common(10)),
        "joined_per_server": dict(sorted(Counter(r.server for r in joined).items())),
        "setup_p50": percentile(setup, 50),
        "setup_p99": percentile(setup, 99),
        "setup_max": max(setup, default=None),
        "voice_p50": percentile(voice, 50),
        "voice_p99": percentile(voice, 99),
        "gather_p50": percentile(gather, 50),
        "gather_p99": percentile(gather, 99),
        "code_wait_p50": percentile(code_wait, 50),
        "code_wait_p99": percentile(code_wait, 99),
        "wall_seconds": wall / len(bursts),
        "calls_per_second": len(joined) / wall if wall else None,
        "peak_rss_mb": max(b.peak_rss for b in bursts) / 2**20,
        "peak_rss_mb_each": [
            max(each) / 2**20 for each in zip(*(b.peak_rss_each for b in bursts), strict=True)
        ],
        "idle_rss_mb": max(b.idle_rss for b in bursts) / 2**20,
        "cpu_ms_per_call": 1000 * sum(b.cpu_seconds for b in bursts) / len(results)
        if results
        else None,
        "database_cpu_ms_per_call": 1000
        * sum(b.database_cpu_seconds for b in bursts)
        / len(results)
        if results
        else None,
        "provider_requests": dict(provider),
        "voice_cpu_ms": _mean_cpu_ms(bursts, "/voice"),
        "gather_cpu_ms": _mean_cpu_ms(bursts, "/gather"),
        "sender_cpu_ms_per_call": _cpu_ms_per_call(bursts, "(sender)"),
        "functions": _functions(bursts),
        "repeats": [_one_repeat(b) for b in bursts],
    }


def _mean_cpu_ms(bursts: Sequence[Burst], path: str) -> float | None:
    """Return the mean CPU of one `path` request on its request thread, in milliseconds."""
    seconds = [cpu for burst in bursts for cpu in burst.webhook_cpu.get(path, [])]
    return 1000 * sum(seconds) / len(seconds) if seconds else None


def _cpu_ms_per_call(bursts: Sequence[Burst], path: str) -> float | None:
    """Return the CPU of all `path` jobs during the bursts per call, in milliseconds."""
    calls = sum(len(burst.results) for burst in bursts)
    seconds = [cpu for burst in bursts for cpu in burst.webhook_cpu.get(path, [])]
    return 1000 * sum(seconds) / calls if seconds and calls else None


def _functions(bursts: Sequence[Burst]) -> dict[str, dict[str, float]]:
    """Return the CPU of each timed function (--cpu-by-function): per call and per use."""
    calls = sum(len(burst.results) for burst in bursts)
    if not calls:
        return {}
    found: dict[str, list[float]] = {}
    for burst in bursts:
        for path, seconds in burst.webhook_cpu.items():
            if path.startswith("fn:"):
                found.setdefault(path[3:], []).extend(seconds)
    return {
        label: {
            "ms_per_call": 1000 * sum(seconds) / calls,
            "us_each": 1e6 * sum(seconds) / len(seconds),
            "uses_per_call": len(seconds) / calls,
        }
        for label, seconds in sorted(found.items(), key=lambda item: -sum(item[1]))
    }


def function_table(summary: dict[str, Any]) -> str:
    """Return where the line's CPU went by function (--cpu-by-function), or "" without it."""
    functions = summary.get("functions") or {}
    if not functions:
        return ""
    lines = [
        "CPU by function on the line's threads (inclusive; timing them adds its own cost):",
        f"  {'function':56} {'per call':>9} {'each':>9} {'uses':>5}",
    ]
    for label, numbers in functions.items():
        lines.append(
            f"  {label:56} {numbers['ms_per_call']:6.3f} ms {numbers['us_each']:6.0f} us "
            f"{numbers['uses_per_call']:5.2f}"
        )
    return "\n".join(lines)


def _one_repeat(burst: Burst) -> dict[str, Any]:
    """Return the headline numbers of one burst, to show how much repeats differ."""
    setup = [r.setup_seconds for r in burst.results if r.joined and r.setup_seconds is not None]
    return {
        "joined": len(setup),
        "setup_p50": percentile(setup, 50),
        "setup_p99": percentile(setup, 99),
        "calls_per_second": len(setup) / burst.wall_seconds if burst.wall_seconds else None,
        "cpu_ms_per_call": 1000 * burst.cpu_seconds / len(burst.results) if burst.results else None,
        "peak_rss_mb": burst.peak_rss / 2**20,
        "load_average_before": burst.load_before,
        "others_cpu_share": burst.others_cpu_share,
    }


def ratios(
    project: dict[str, Any],
    floor: dict[str, Any] | None,
    together: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Return project/floor for the setup percentiles, and whether issue 12's goals are met.

    The CPU goal is judged side by side (`together`) when there were such bursts: bursts
    measured in turn carry the machine's changes of speed between them into their ratio.
    """
    if floor is None:
        return None
    result: dict[str, Any] = {}
    for key in ("setup_p50", "setup_p99", "voice_p50", "voice_p99", "gather_p50", "gather_p99"):
        if project.get(key) and floor.get(key):
            result[key] = project[key] / floor[key]
    for key in ("calls_per_second", "cpu_ms_per_call"):
        if project.get(key) and floor.get(key):
            result[key] = project[key] / floor[key]
    p50, p99 = result.get("setup_p50"), result.get("setup_p99")
    calls, cpu = result.get("calls_per_second"), result.get("cpu_ms_per_call")
    result["goal_p50"] = p50 is not None and p50 <= GOAL_P50_RATIO
    result["goal_p99"] = p99 is not None and p99 <= GOAL_P99_RATIO
    result["goal_calls"] = calls is not None and calls >= GOAL_CALLS_RATIO
    if together is not None and together["cpu_ratio"] is not None:
        result["cpu_ratio_side_by_side"] = cpu = together["cpu_ratio"]
    result["goal_cpu"] = cpu is not None and cpu <= GOAL_CPU_RATIO
    result["goal_all_joined"] = project["failed"] == 0 and not (
        together and together["project_failed"]
    )
    return result


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{1000 * value:.0f} ms"


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


ROWS: list[tuple[str, Any]] = [
    ("joined / failed", lambda s: f"{s['joined']} / {s['failed']}"),
    ("setup p50", lambda s: _ms(s["setup_p50"])),
    ("setup p99", lambda s: _ms(s["setup_p99"])),
    ("/voice p50", lambda s: _ms(s["voice_p50"])),
    ("/voice p99", lambda s: _ms(s["voice_p99"])),
    ("/gather p50", lambda s: _ms(s["gather_p50"])),
    ("/gather p99", lambda s: _ms(s["gather_p99"])),
    ("code arrives p50 / p99", lambda s: f"{_ms(s['code_wait_p50'])} / {_ms(s['code_wait_p99'])}"),
    ("calls / s", lambda s: _num(s["calls_per_second"], ".1f")),
    ("burst wall time", lambda s: f"{s['wall_seconds']:.2f} s"),
    ("server RSS idle / peak", lambda s: f"{s['idle_rss_mb']:.0f} / {s['peak_rss_mb']:.0f} MB"),
    ("server CPU / call", lambda s: _num(s["cpu_ms_per_call"], ".1f") + " ms"),
    ("  CPU / /voice request", lambda s: _num(s.get("voice_cpu_ms"), ".2f") + " ms"),
    ("  CPU / /gather request", lambda s: _num(s.get("gather_cpu_ms"), ".2f") + " ms"),
    ("  CPU / call, code senders", lambda s: _num(s.get("sender_cpu_ms_per_call"), ".2f") + " ms"),
    ("  CPU / call elsewhere", lambda s: _num(_elsewhere(s), ".1f") + " ms"),
    ("database CPU / call", lambda s: _num(s.get("database_cpu_ms_per_call"), ".1f") + " ms"),
]


def _elsewhere(summary: dict[str, Any]) -> float | None:
    """Server CPU per call spent neither on the two webhooks' request threads nor on the line's
    code senders: gunicorn reading and writing requests, and anything else in the processes."""
    parts = (
        summary.get("cpu_ms_per_call"),
        summary.get("voice_cpu_ms"),
        summary.get("gather_cpu_ms"),
    )
    if any(part is None for part in parts):
        return None
    senders = summary.get("sender_cpu_ms_per_call") or 0.0
    return parts[0] - parts[1] - parts[2] - senders


def phase_table(project: dict[str, Any], floor: dict[str, Any] | None) -> str:
    """Return the table of one N's bursts in turn: project, floor, project/floor."""
    ratio = ratios(project, floor) or {}
    keys = {
        "setup p50": "setup_p50",
        "setup p99": "setup_p99",
        "/voice p50": "voice_p50",
        "/voice p99": "voice_p99",
        "/gather p50": "gather_p50",
        "/gather p99": "gather_p99",
        "calls / s": "calls_per_second",
        "server CPU / call": "cpu_ms_per_call",
    }
    lines = [f"{'':24} {'project':>16} {'floor':>16} {'project/floor':>14}"]
    for label, cell in ROWS:
        ratio_cell = ""
        if label in keys and keys[label] in ratio:
            ratio_cell = f"{ratio[keys[label]]:.2f}x"
        floor_cell = cell(floor) if floor else "(skipped)"
        lines.append(f"{label:24} {cell(project):>16} {floor_cell:>16} {ratio_cell:>14}")
    for phase_label, phase in (("project", project), ("floor", floor)):
        if phase:
            shares = "/".join(f"{100 * r['others_cpu_share']:.0f}" for r in phase["repeats"])
            lines.append(f"{'  others CPU % ' + phase_label:24} {shares:>16}")
    if len(project["repeats"]) > 1:
        per_repeat = (
            ("setup_p50", "  p50 per repeat", 1000, ".0f"),
            ("setup_p99", "  p99 per repeat", 1000, ".0f"),
            # Each repeat's own line / floor pair: how far one burst's CPU moves from the next.
            ("cpu_ms_per_call", "  CPU ms per repeat", 1, ".1f"),
        )
        for key, label, scale, fmt in per_repeat:
            cells = [
                "/".join(
                    format(scale * r[key], fmt) for r in phase["repeats"] if r[key] is not None
                )
                if phase
                else ""
                for phase in (project, floor)
            ]
            lines.append(f"{label:24} {cells[0]:>16} {cells[1]:>16}")
    if len(project["peak_rss_mb_each"]) > 1:
        each = " + ".join(f"{mb:.0f}" for mb in project["peak_rss_mb_each"])
        lines.append(f"{'  peak RSS per server':24} {each + ' MB':>16}")
        spread = " + ".join(str(count) for count in project["joined_per_server"].values())
        lines.append(f"{'  joined per server':24} {spread:>16}")
    return "\n".join(lines)


def goals_text(
    project: dict[str, Any], floor: dict[str, Any] | None, together: dict[str, Any] | None = None
) -> str:
    """Return issue 12's goals, each marked met or not."""
    ratio = ratios(project, floor, together)
    joined = project["failed"] == 0 and not (together and together["project_failed"])
    lines = [f"every call joins: {'met' if joined else 'NOT met'}"]
    if ratio is not None:
        for key, sign, goal, good in (
            ("setup_p50", "<=", GOAL_P50_RATIO, "goal_p50"),
            ("setup_p99", "<=", GOAL_P99_RATIO, "goal_p99"),
            ("calls_per_second", ">=", GOAL_CALLS_RATIO, "goal_calls"),
            ("cpu_ms_per_call", "<=", GOAL_CPU_RATIO, "goal_cpu"),
        ):
            value = ratio.get(key)
            shown = "-" if value is None else f"{value:.2f}x"
            if key == "cpu_ms_per_call" and "cpu_ratio_side_by_side" in ratio:
                alone = shown
                shown = f"{ratio['cpu_ratio_side_by_side']:.2f}x side by side ({alone} in turn)"
            verdict = "met" if ratio[good] else "NOT met"
            lines.append(f"{key} {sign} {goal}x floor: {shown} {verdict}")
    return "\n".join("  " + line for line in lines)


def growth_table(runs: Sequence[dict[str, Any]]) -> str:
    """Return one row per N: how setup time, throughput and memory grow."""
    header = (
        f"{'N':>5} {'joined':>8} {'setup p50':>10} {'setup p99':>10} {'floor p50':>10} "
        f"{'floor p99':>10} {'p50 x':>6} {'p99 x':>6} {'calls/s':>8} {'RSS MB':>7} "
        f"{'floor RSS':>9} {'CPU ms/call':>11}"
    )
    lines = [header]
    for run in runs:
        project, floor = run["project"], run.get("floor")
        ratio = ratios(project, floor) or {}
        lines.append(
            f"{run['n']:>5} {project['joined']:>4}/{project['calls']:<3} "
            f"{_ms(project['setup_p50']):>10} {_ms(project['setup_p99']):>10} "
            f"{_ms(floor['setup_p50']) if floor else '-':>10} "
            f"{_ms(floor['setup_p99']) if floor else '-':>10} "
            f"{_num(ratio.get('setup_p50'), '.2f'):>6} {_num(ratio.get('setup_p99'), '.2f'):>6} "
            f"{_num(project['calls_per_second'], '.1f'):>8} {project['peak_rss_mb']:>7.0f} "
            f"{floor['peak_rss_mb'] if floor else 0:>9.0f} "
            f"{_num(project['cpu_ms_per_call'], '.1f'):>11}"
        )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """Return what the numbers depend on: CPUs, memory, Python, and the code measured."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gb = None
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory_gb = round(kb / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpus": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "memory_gb": memory_gb,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "git": _git("describe", "--always", "--dirty"),
        "git_branch": _git("rev-parse", "--abbrev-ref", "HEAD"),
    }


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None


# -- py-spy's raw (collapsed stack) output ------------------------------------------------------

_LIBRARY_PREFIX = re.compile(r"^.*/lib/python3\.\d+/(site-packages/)?")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
# Frames every worker stack passes through; they say nothing about the line's own work.
_PLUMBING = ("threading.py", "gunicorn/", "concurrent/futures", "<frozen", "selectors.py")


def profile_summary(path: Path, top: int = 25) -> str:
    """Summarize a py-spy raw profile: where the workers spent their samples, by function."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        # py-spy --subprocesses starts each stack with the process tree: leave that out.
        frames = [_short(f) for f in stack.split(";") if not f.startswith("process ")]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return f"(no samples in {path})"

    def lines(counter: Counter[str], keep) -> list[str]:
        rows = [(f, c) for f, c in counter.most_common() if keep(f)][:top]
        return [f"  {100 * c / total:5.1f}%  {f}" for f, c in rows]

    out = [f"{total} samples in {path.name}", "Inclusive, the line's own code (ivr/):"]
    out += lines(inclusive, lambda f: "ivr/" in f)
    out.append("Inclusive, libraries (without threading/gunicorn plumbing):")
    out += lines(inclusive, lambda f: "ivr/" not in f and not any(p in f for p in _PLUMBING))
    out.append("Self (leaf) time:")
    out += lines(own, lambda f: True)
    return "\n".join(out)


def _short(frame: str) -> str:
    """Return 'func (pkg/module.py)' without the line number and site-packages prefix."""
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    file = _LIBRARY_PREFIX.sub("", match["file"]).replace(f"{ROOT}/", "")
    return f"{match['func']} ({file})"
