"""A small local stand-in for Twilio's REST API, reached through TWILIO_API_URL.

It speaks just enough of Verify (verifications and checks, with the documented 404, 60202 and
60203 answers; pending verifications are kept per service and number, as Verify keeps them),
Messaging, Calls and Conferences (mute, remove, end) for the real twilio library
to build every request and parse every answer. Tests read what was sent and can make the next
answers fail or slow.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

VERIFY_MAX_CHECKS = 5
VERIFY_MAX_SENDS = 5

ROUTES = [
    ("verify-send", re.compile(r"^/verify/v2/Services/(VA\w+)/Verifications$")),
    ("verify-check", re.compile(r"^/verify/v2/Services/(VA\w+)/VerificationCheck$")),
    ("message", re.compile(r"^/api/2010-04-01/Accounts/(AC\w+)/Messages\.json$")),
    ("call", re.compile(r"^/api/2010-04-01/Accounts/(AC\w+)/Calls\.json$")),
    (
        "conference-participant",
        re.compile(
            r"^/api/2010-04-01/Accounts/(AC\w+)/Conferences/(CF\w+)/Participants/(CA\w+)\.json$"
        ),
    ),
    ("conference", re.compile(r"^/api/2010-04-01/Accounts/(AC\w+)/Conferences/(CF\w+)\.json$")),
]
# RFC 2822, as Twilio's 2010-04-01 API writes dates.
FAKE_DATE = "Thu, 01 Jan 2026 00:00:00 +0000"


class FakeServer(ThreadingHTTPServer):
    """A threading server whose listen backlog takes a burst of connections at once."""

    daemon_threads = True
    # The default backlog of 5 drops connections when dozens of app threads connect together.
    request_queue_size = 1024


@dataclass
class Recorded:
    kind: str
    path: str
    form: dict[str, str]
    method: str = "POST"
    code: str | None = None  # the code a Verify send started


@dataclass
class Verification:
    sid: str
    to: str
    channel: str
    code: str
    checks: int = 0


@dataclass
class Fault:
    status: int
    code: int
    message: str
    times: int = 1


@dataclass
class FakeTwilio:
    account_sid: str
    auth_token: str
    latency: float = 0.0
    requests: list[Recorded] = field(default_factory=list)
    # Keyed by (Verify service SID, number).
    verifications: dict[tuple[str, str], Verification] = field(default_factory=dict)
    sends_per_number: dict[tuple[str, str], int] = field(default_factory=dict)
    faults: dict[str, Fault] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    generation: int = 0

    def start(self, port: int = 0) -> FakeTwilio:
        """Listen on 127.0.0.1:`port` (0: any free port) in a background thread."""
        self.server = FakeServer(("127.0.0.1", port), self.handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def handler(self) -> type[BaseHTTPRequestHandler]:
        """Return the request handler class that serves this fake's API."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body in one segment, sent at once: otherwise Nagle's algorithm holds
            # the body until the client's delayed ACK (~40 ms), which real Twilio never adds.
            wbufsize = -1
            disable_nagle_algorithm = True

            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                self.answer("POST")

            def do_DELETE(self) -> None:  # noqa: N802 - the http.server API
                self.answer("DELETE")

            def answer(self, method: str) -> None:
                status, payload = fake.answer(
                    self.path, self.headers.get("Authorization"), self.read_form(), method
                )
                self.reply(status, payload)

            def read_form(self) -> dict[str, str]:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode()
                return {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}

            def reply(self, status: int, payload) -> None:
                # 204 No Content, as Twilio answers a successful DELETE.
                data = b"" if payload is None else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting, as a timeout test means it to

            def log_message(self, *args) -> None:
                pass

        return Handler

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reset(self) -> None:
        with self.lock:
            self.generation += 1
            self.requests.clear()
            self.verifications.clear()
            self.sends_per_number.clear()
            self.faults.clear()
            self.latency = 0.0

    # -- what tests ask --------------------------------------------------------------------

    def fail(self, kind: str, status: int, code: int, message: str = "", times: int = 1) -> None:
        """Answer the next `times` requests of `kind` with a Twilio error."""
        self.faults[kind] = Fault(status, code, message or f"fake error {code}", times)

    def sent(self, kind: str, to: str | None = None) -> list[dict[str, str]]:
        with self.lock:
            return [
                r.form
                for r in self.requests
                if r.kind == kind and (to is None or r.form["To"] == to)
            ]

    def code_for(self, phone: str, wait: float = 0.0) -> str:
        """Return the last code sent to `phone`, by text, call or Verify, waiting up to `wait` s."""
        deadline = time.monotonic() + wait
        while True:
            try:
                return self._last_code(phone)
            except AssertionError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.02)

    def _last_code(self, phone: str) -> str:
        with self.lock:
            for recorded in reversed(self.requests):
                if recorded.form.get("To") != phone:
                    continue
                if recorded.code is not None:
                    return recorded.code
                text = recorded.form.get("Body") or recorded.form.get("Twiml") or ""
                # Six digits in a row, or read out one by one ("4, 0, 1, ..."), in any language.
                spoken = re.search(r"[0-9](?:,? ?[0-9]){5}", text)
                digits = re.sub(r"[^0-9]", "", spoken.group(0) if spoken else "")
                if recorded.kind in ("message", "call") and len(digits) == 6:
                    return digits
        raise AssertionError(f"no code was sent to {phone}")

    # -- the API ---------------------------------------------------------------------------

    def requests_of(self, kind: str) -> list[tuple[str, str, dict[str, str]]]:
        """Return (method, path, form) of every request of `kind`, oldest first."""
        with self.lock:
            return [(r.method, r.path, r.form) for r in self.requests if r.kind == kind]

    def answer(
        self, path: str, authorization: str | None, form: dict[str, str], method: str = "POST"
    ):
        generation = self.generation
        if self.latency:
            time.sleep(self.latency)
        if generation != self.generation:
            # Reset while this request slept: it belongs to a test that has ended.
            return 503, _error(503, 20503, "fake Twilio was reset")
        kind = next((k for k, pattern in ROUTES if pattern.match(path)), None)
        if kind is None or (method == "DELETE" and kind != "conference-participant"):
            return 404, _error(404, 20404, "The requested resource was not found")
        if authorization != _basic(self.account_sid, self.auth_token):
            return 401, _error(401, 20003, "Authentication Error - invalid username")
        with self.lock:
            recorded = Recorded(kind, path, form, method)
            self.requests.append(recorded)
            fault = self.faults.get(kind)
            if fault is not None:
                fault.times -= 1
                if fault.times <= 0:
                    del self.faults[kind]
                return fault.status, _error(fault.status, fault.code, fault.message)
            if method == "DELETE":
                return 204, None
            if kind == "verify-send":
                return self._verify_send(path, form, recorded)
            return getattr(self, "_" + kind.replace("-", "_"))(path, form)

    def _verify_send(self, path: str, form: dict[str, str], recorded: Recorded):
        key = (_service_of(path), form["To"])
        sent = self.sends_per_number.get(key, 0)
        if sent >= VERIFY_MAX_SENDS:
            return 429, _error(429, 60203, "Max send attempts reached")
        self.sends_per_number[key] = sent + 1
        verification = Verification(
            sid=_sid("VE"),
            to=form["To"],
            channel=form.get("Channel", "sms"),
            code=f"{secrets.randbelow(10**6):06d}",
        )
        self.verifications[key] = verification
        recorded.code = verification.code
        return 201, _verification_json(path, verification, "pending")

    def _verify_check(self, path: str, form: dict[str, str]):
        key = (_service_of(path), form.get("To", ""))
        verification = self.verifications.get(key)
        if verification is None:
            return 404, _error(404, 20404, f"The requested resource {path} was not found")
        if verification.checks >= VERIFY_MAX_CHECKS:
            return 429, _error(429, 60202, "Max check attempts reached")
        verification.checks += 1
        if form.get("Code") == verification.code:
            # Verify forgets an approved verification: a second check is a 404.
            del self.verifications[key]
            return 200, _verification_json(path, verification, "approved")
        return 200, _verification_json(path, verification, "pending")

    def _message(self, path: str, form: dict[str, str]):
        return 201, {
            "sid": _sid("SM"),
            "account_sid": self.account_sid,
            "to": form.get("To"),
            "from": form.get("From"),
            "body": form.get("Body"),
            "status": "queued",
            "num_segments": "1",
            "direction": "outbound-api",
            "uri": path,
        }

    def _call(self, path: str, form: dict[str, str]):
        return 201, {
            "sid": _sid("CA"),
            "account_sid": self.account_sid,
            "to": form.get("To"),
            "from": form.get("From"),
            "status": "queued",
            "direction": "outbound-api",
            "uri": path,
        }

    def _conference_participant(self, path: str, form: dict[str, str]):
        parts = path.split("/")
        conference_sid, call_sid = parts[5], parts[7].removesuffix(".json")
        return 200, {
            "account_sid": self.account_sid,
            "call_sid": call_sid,
            "conference_sid": conference_sid,
            "label": None,
            "call_sid_to_coach": None,
            "coaching": False,
            "date_created": FAKE_DATE,
            "date_updated": FAKE_DATE,
            "end_conference_on_exit": False,
            "start_conference_on_enter": True,
            "muted": form.get("Muted", "false") == "true",
            "hold": form.get("Hold", "false") == "true",
            "queue_time": None,
            "status": "connected",
            "uri": path,
        }

    def _conference(self, path: str, form: dict[str, str]):
        sid = path.split("/")[5].removesuffix(".json")
        ended = form.get("Status") == "completed"
        return 200, {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "call_sid_ending_conference": None,
            "date_created": FAKE_DATE,
            "date_updated": FAKE_DATE,
            "friendly_name": "main",
            "reason_conference_ended": "conference-ended-via-api" if ended else None,
            "region": "us1",
            "sid": sid,
            "status": "completed" if ended else "in-progress",
            "subresource_uris": {
                "participants": path.removesuffix(".json") + "/Participants.json",
                "recordings": path.removesuffix(".json") + "/Recordings.json",
            },
            "uri": path,
        }


def _service_of(path: str) -> str:
    """Return the Verify service SID in a Verify request's path."""
    return path.split("/")[4]


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _error(status: int, code: int, message: str) -> dict:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def _verification_json(path: str, verification: Verification, status: str) -> dict:
    return {
        "sid": verification.sid,
        "service_sid": path.split("/")[4],
        "to": verification.to,
        "channel": verification.channel,
        "status": status,
        "valid": status == "approved",
        "date_created": "2026-01-01T00:00:00Z",
        "date_updated": "2026-01-01T00:00:00Z",
        "url": f"https://verify.twilio.com{path}",
    }
