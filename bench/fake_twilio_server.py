"""The tests' fake Twilio REST API in a process of its own, plus what the benchmark reads.

    python bench/fake_twilio_server.py --port 0 --latency 0.1 --account-sid AC... --auth-token T

Prints `READY http://127.0.0.1:PORT` once it listens, then serves until SIGTERM/SIGINT (or
--max-seconds). Besides Twilio's routes (tests/fake_twilio.py) it answers:

    GET  /_bench/code?to=PHONE   {"code": "123456"} - the last code sent to PHONE, 404 if none
    GET  /_bench/sent?to=PHONE   {"sent": 3} - how many codes (SMS, call, Verify) went to PHONE
    GET  /_bench/stats           {"requests": {"message": 200, ...}}
    POST /_bench/reset           forget every request, verification and send count
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fake_twilio import FakeTwilio  # noqa: E402

SEND_KINDS = ("verify-send", "message", "call")


class BenchFakeTwilio(FakeTwilio):
    """FakeTwilio with the /_bench routes the driver reads codes and counts from."""

    def handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self
        base = super().handler()

        class Handler(base):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                parts = urlsplit(self.path)
                to = parse_qs(parts.query).get("to", [""])[-1]
                if parts.path == "/_bench/code":
                    try:
                        self.reply(200, {"code": fake.code_for(to)})
                    except AssertionError:
                        self.reply(404, {"error": f"no code sent to {to}"})
                elif parts.path == "/_bench/sent":
                    self.reply(200, {"sent": sum(len(fake.sent(k, to)) for k in SEND_KINDS)})
                elif parts.path == "/_bench/stats":
                    with fake.lock:
                        counts = Counter(r.kind for r in fake.requests)
                    self.reply(200, {"requests": dict(counts)})
                else:
                    self.reply(404, {"error": "not found"})

            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                if self.path == "/_bench/reset":
                    self.read_form()
                    fake.reset_keeping_latency()
                    self.reply(200, {"reset": True})
                    return
                self.answer("POST")

        return Handler

    def reset_keeping_latency(self) -> None:
        """Forget everything sent so far, but keep the configured latency."""
        latency = self.latency
        self.reset()
        self.latency = latency


def main(argv: list[str] | None = None) -> int:
    """Serve the fake until told to stop."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free)")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds per API request")
    parser.add_argument("--account-sid", required=True)
    parser.add_argument("--auth-token", required=True)
    parser.add_argument(
        "--max-seconds", type=float, default=3600, help="stop by itself after this long"
    )
    args = parser.parse_args(argv)

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    fake = BenchFakeTwilio(args.account_sid, args.auth_token, latency=args.latency)
    fake.start(args.port)
    print(f"READY {fake.url}", flush=True)
    stop.wait(args.max_seconds)
    fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
