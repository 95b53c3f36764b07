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
import json
import signal
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fake_twilio import FakeTwilio  # noqa: E402

SEND_KINDS = ("verify-send", "message", "call")


class BurstServer(ThreadingHTTPServer):
    """A threading server whose listen backlog takes a burst of connections at once."""

    daemon_threads = True
    # The default backlog of 5 drops SYNs when dozens of app threads connect together.
    request_queue_size = 1024


class BenchFakeTwilio(FakeTwilio):
    """FakeTwilio with the /_bench routes, served by BurstServer."""

    def start(self, port: int = 0) -> BenchFakeTwilio:
        """Listen on 127.0.0.1:`port` (0: any free port) in a background thread."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body in one segment, sent at once: otherwise Nagle's algorithm holds
            # the body until the client's delayed ACK (~40 ms), which real Twilio never adds.
            wbufsize = -1
            disable_nagle_algorithm = True

            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                parts = urlsplit(self.path)
                to = parse_qs(parts.query).get("to", [""])[-1]
                if parts.path == "/_bench/code":
                    try:
                        self._reply(200, {"code": fake.code_for(to)})
                    except AssertionError:
                        self._reply(404, {"error": f"no code sent to {to}"})
                elif parts.path == "/_bench/sent":
                    self._reply(200, {"sent": sum(len(fake.sent(k, to)) for k in SEND_KINDS)})
                elif parts.path == "/_bench/stats":
                    with fake.lock:
                        counts = Counter(r.kind for r in fake.requests)
                    self._reply(200, {"requests": dict(counts)})
                else:
                    self._reply(404, {"error": "not found"})

            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode()
                if self.path == "/_bench/reset":
                    fake.reset_keeping_latency()
                    self._reply(200, {"reset": True})
                    return
                form = {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}
                status, payload = fake.answer(self.path, self.headers.get("Authorization"), form)
                self._reply(status, payload)

            def _reply(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the app gave up waiting (its client timeout); nothing to answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = BurstServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

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
