"""The callers: Twilio's side of many calls at once, over HTTP with signed webhooks.

asyncio + aiohttp rather than threads: one process holds C calls in flight with little CPU, so
the driver takes as little as it can of the two cores the servers also need.
"""

from __future__ import annotations

import asyncio
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
from twilio.request_validator import RequestValidator

# Twilio gives up on a webhook after 15 s; so does the driver, and counts it as a failure.
WEBHOOK_TIMEOUT = 15.0
CODE_POLL_INTERVAL = 0.01
# Below gunicorn's default --keep-alive of 2 s.
KEEPALIVE = 1.5


@dataclass
class CallResult:
    """How one call went: joined or why not, and the two waits the caller sat through."""

    phone: str
    server: int
    joined: bool = False
    voice_seconds: float | None = None
    gather_seconds: float | None = None
    code_wait_seconds: float | None = None
    error: str | None = None

    @property
    def setup_seconds(self) -> float | None:
        if self.voice_seconds is None or self.gather_seconds is None:
            return None
        return self.voice_seconds + self.gather_seconds


@dataclass
class Answer:
    """A webhook's answer: status, parsed TwiML (None if it is not XML) and how long it took."""

    status: int
    root: ET.Element | None
    seconds: float

    def says(self) -> str:
        """Return everything the caller hears, joined."""
        if self.root is None:
            return ""
        return " ".join(e.text or "" for e in self.root.iter("Say"))

    def gathers(self) -> bool:
        """Whether the answer asks for six digits and posts them to /gather."""
        if self.root is None:
            return False
        gather = self.root.find("Gather")
        return gather is not None and gather.get("action", "").split("?")[0] == "/gather"

    def joins(self) -> bool:
        """Whether the answer dials the caller into a conference."""
        return self.root is not None and self.root.find("Dial/Conference") is not None

    def describe(self) -> str:
        """Return a short account of the answer for a failure report."""
        return f"HTTP {self.status}: {self.says()[:80] or '(no speech)'}"


class Twilio:
    """Plays Twilio: signs and posts webhooks to the servers, reads codes from the fake."""

    def __init__(
        self,
        servers: Sequence[str],
        fake_url: str,
        account_sid: str,
        auth_token: str,
        line: str,
        concurrency: int,
        code_wait: float,
    ) -> None:
        self.servers = list(servers)
        self.fake_url = fake_url
        self.account_sid = account_sid
        self.validator = RequestValidator(auth_token)
        self.line = line
        self.code_wait = code_wait
        self.concurrency = concurrency
        self._sessions: tuple[aiohttp.ClientSession, aiohttp.ClientSession] | None = None

    async def __aenter__(self) -> Twilio:
        # Code look-ups get their own connections so they never wait behind webhook slots.
        # Idle connections are dropped before gunicorn's 2 s keep-alive ends, never reused
        # just as the server closes them.
        webhooks = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=self.concurrency + 4, limit_per_host=0, keepalive_timeout=KEEPALIVE
            ),
            timeout=aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT),
        )
        fake = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.concurrency + 4),
            timeout=aiohttp.ClientTimeout(total=5),
        )
        self._sessions = (webhooks, fake)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._sessions:
            for session in self._sessions:
                await session.close()

    def params(self, phone: str, call_sid: str, **extra: str) -> dict[str, str]:
        """Return the form Twilio posts for an inbound call (the fields a real webhook has)."""
        return {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "CallSid": call_sid,
            "CallStatus": "in-progress" if "Digits" in extra else "ringing",
            "Called": self.line,
            "CalledCountry": "US",
            "Caller": phone,
            "CallerCountry": "US",
            "Direction": "inbound",
            "From": phone,
            "FromCountry": "US",
            "To": self.line,
            "ToCountry": "US",
            **extra,
        }

    async def post(self, server: int, path: str, params: dict[str, str]) -> Answer:
        """POST a signed webhook to server number `server` and time the whole answer."""
        assert self._sessions is not None
        url = self.servers[server % len(self.servers)] + path
        headers = {
            "X-Twilio-Signature": self.validator.compute_signature(url, params),
            # Twilio sends one with every webhook request (the same one again with a retry).
            "I-Twilio-Idempotency-Token": uuid.uuid4().hex,
        }
        started = time.perf_counter()
        async with self._sessions[0].post(url, data=params, headers=headers) as response:
            body = await response.read()
        seconds = time.perf_counter() - started
        try:
            root = ET.fromstring(body)
        except ET.ParseError:
            root = None
        return Answer(response.status, root, seconds)

    async def code_for(self, phone: str) -> tuple[str | None, float]:
        """Poll the fake for the code sent to `phone`; return it (or None) and the wait."""
        assert self._sessions is not None
        started = time.perf_counter()
        deadline = started + self.code_wait
        while True:
            async with self._sessions[1].get(
                f"{self.fake_url}/_bench/code", params={"to": phone}
            ) as response:
                payload = await response.json()
            if response.status == 200:
                return payload["code"], time.perf_counter() - started
            if time.perf_counter() >= deadline:
                return None, time.perf_counter() - started
            await asyncio.sleep(CODE_POLL_INTERVAL)

    async def sent_to(self, phone: str) -> int:
        """Return how many codes the fake has sent to `phone`."""
        assert self._sessions is not None
        async with self._sessions[1].get(
            f"{self.fake_url}/_bench/sent", params={"to": phone}
        ) as response:
            return (await response.json())["sent"]

    async def call(self, phone: str, server: int) -> CallResult:
        """Dial in as `phone`: /voice, read the code from the fake, /gather; must join."""
        result = CallResult(phone, server % len(self.servers))
        call_sid = "CA" + uuid.uuid4().hex
        try:
            voice = await self.post(server, "/voice", self.params(phone, call_sid))
            if voice.status != 200 or not voice.gathers():
                result.error = f"/voice {voice.describe()}"
                return result
            result.voice_seconds = voice.seconds
            code, result.code_wait_seconds = await self.code_for(phone)
            if code is None:
                result.error = f"no code reached the caller within {self.code_wait:g} s"
                return result
            gather = await self.post(server, "/gather", self.params(phone, call_sid, Digits=code))
            if gather.status != 200 or not gather.joins():
                result.error = f"/gather {gather.describe()}"
                return result
            result.gather_seconds = gather.seconds
            result.joined = True
        except TimeoutError:
            result.error = f"no answer within {WEBHOOK_TIMEOUT:g} s"
        except aiohttp.ClientError as error:
            result.error = f"{type(error).__name__}: {error}"
        return result

    async def burst(
        self, phones: Sequence[str], concurrency: int
    ) -> tuple[list[CallResult], float]:
        """Dial every phone at once with at most `concurrency` calls in flight; time it all."""
        slots = asyncio.Semaphore(concurrency)

        async def one(index: int, phone: str) -> CallResult:
            async with slots:
                # Round-robin over the servers, as a load balancer in front of them would.
                return await self.call(phone, index)

        started = time.perf_counter()
        results = await asyncio.gather(*(one(i, p) for i, p in enumerate(phones)))
        return list(results), time.perf_counter() - started


@dataclass
class Check:
    """A cross-instance guard check and its outcome."""

    name: str
    passed: bool
    detail: str


async def lockout_check(twilio: Twilio, phone: str, max_attempts: int = 3) -> Check:
    """Wrong codes alternating over the servers lock the number on every server."""
    name = f"lockout after {max_attempts} wrong codes spread over the servers holds on all"
    call_sid = "CA" + uuid.uuid4().hex
    voice = await twilio.post(0, "/voice", twilio.params(phone, call_sid))
    if not voice.gathers():
        return Check(name, False, f"first /voice did not ask for a code: {voice.describe()}")
    code, _ = await twilio.code_for(phone)
    if code is None:
        return Check(name, False, "no code was sent for the first call")
    wrong = "000000" if code != "000000" else "111111"
    answers = []
    for attempt in range(max_attempts):
        answer = await twilio.post(attempt, "/gather", twilio.params(phone, call_sid, Digits=wrong))
        answers.append(answer.says())
    if "locked" not in answers[-1] or any("locked" in said for said in answers[:-1]):
        return Check(name, False, f"answers to wrong codes: {answers}")
    right = await twilio.post(1, "/gather", twilio.params(phone, call_sid, Digits=code))
    if right.joins():
        return Check(name, False, "the right code still joined on another server while locked")
    for server in range(max(2, len(twilio.servers))):
        again = await twilio.post(server, "/voice", twilio.params(phone, "CA" + uuid.uuid4().hex))
        if "locked" not in again.says() or again.gathers():
            label = server % len(twilio.servers)
            return Check(name, False, f"server {label} let the locked number dial in again")
    return Check(name, True, f"locked on attempt {max_attempts}; refused on every server")


async def send_cap_check(twilio: Twilio, phone: str, cap: int = 5) -> Check:
    """Dialing `cap` + 1 times, alternating servers, sends `cap` codes and refuses the last."""
    name = f"send cap: dial {cap + 1} times alternating servers, the last is refused"
    for attempt in range(cap + 1):
        answer = await twilio.post(attempt, "/voice", twilio.params(phone, "CA" + uuid.uuid4().hex))
        last = attempt == cap
        if last and (answer.gathers() or "Too many codes" not in answer.says()):
            return Check(name, False, f"dial {attempt + 1} was not refused: {answer.describe()}")
        if not last and not answer.gathers():
            return Check(name, False, f"dial {attempt + 1} was refused: {answer.describe()}")
    # Sends may leave the request path: give them a moment to arrive, then count.
    deadline = time.monotonic() + 5
    sent = await twilio.sent_to(phone)
    while sent < cap and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        sent = await twilio.sent_to(phone)
    await asyncio.sleep(0.5)
    sent = await twilio.sent_to(phone)
    if sent != cap:
        return Check(name, False, f"the provider was asked for {sent} codes, not {cap}")
    return Check(name, True, f"{cap} codes sent, dial {cap + 1} heard the send-limit message")
