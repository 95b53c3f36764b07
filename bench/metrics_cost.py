"""CPU the metrics take per call, measured directly: what one joined call records, many times.

    python bench/metrics_cost.py

One call that joins records two webhook timings, two call outcomes ("code sent", "joined"), one
provider request and one code sent. This times those updates in Prometheus' multiprocess mode
(as under the Procfile's gunicorn) and in a single process, with no server around them, so the
figure does not drown in the noise of a whole burst on a shared machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CALLS = 20_000


def measure() -> float:
    """Return CPU seconds per call's metric updates in this process."""
    from ivr.metrics import PrometheusMetrics
    from ivr.store import Outcome

    metrics = PrometheusMetrics(store=None)  # the store is read only by a scrape

    def one_call() -> None:
        metrics.webhook("/voice", 0.01)
        metrics.call(Outcome.CODE_SENT, "main")
        metrics.provider_request("message_send", "ok", 0.1)
        metrics.code_sent("sms", "line")
        metrics.webhook("/gather", 0.01)
        metrics.call(Outcome.JOINED_PARTICIPANT, "main")

    for _ in range(1000):
        one_call()
    started = time.process_time()
    for _ in range(CALLS):
        one_call()
    return (time.process_time() - started) / CALLS


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(f"{measure() * 1e6:.1f}")
        return
    for label, multiprocess in (("multiprocess (gunicorn)", True), ("single process", False)):
        env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        env["PYTHONPATH"] = str(ROOT)
        with tempfile.TemporaryDirectory() as folder:
            if multiprocess:
                # Set before prometheus_client is imported, as gunicorn_config.py does.
                env["PROMETHEUS_MULTIPROC_DIR"] = folder
            micros = subprocess.run(
                [sys.executable, __file__, "--child"],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
        print(f"{label}: {micros} us of CPU per joined call's metric updates")


if __name__ == "__main__":
    main()
