"""Codes made here: six digits from `secrets`, stored as a keyed hash, good once until expiry.

Delivery is separate: Twilio Messaging or a voice call from the line's number, or the console
outbox in local mode.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sys
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from twilio.rest import Client

from ivr import twiml
from ivr.i18n import N_, gettext
from ivr.languages import DEFAULT_LANGUAGE
from ivr.metrics import NO_METRICS, Metrics
from ivr.store import Store, StoredCode, utcnow
from ivr.verification import LINE, SIGN_IN, Channel, CheckResult, NewCode, twilio_faults

CODE_DIGITS = 6


class Delivery(Protocol):
    def deliver(
        self,
        phone: str,
        code: str,
        channel: Channel,
        purpose: str = LINE,
        language: str = DEFAULT_LANGUAGE,
    ) -> None:
        """Get `code` to `phone`, in `language`; raise ProviderError if that failed."""

    def text(self, phone: str, body: str) -> None:
        """Send `body` to `phone` as a text message; raise ProviderError if that failed."""


class BuiltinCodes:
    def __init__(self, store: Store, secret_key: str, ttl_seconds: int, delivery: Delivery):
        self._store = store
        self._ttl = timedelta(seconds=ttl_seconds)
        self._delivery = delivery
        # A key of its own, so a code hash says nothing about other uses of SECRET_KEY.
        self._key = hmac.new(secret_key.encode(), b"ivr one-time codes", hashlib.sha256).digest()

    def new_code(self, phone: str, *, purpose: str = LINE) -> NewCode:
        """Make a code; stored (as its hash) with the send's reservation, it replaces the
        number's earlier code for `purpose`, and is good until the TTL from now."""
        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        return NewCode(code, StoredCode(self._hash(phone, code, purpose), utcnow() + self._ttl))

    def send(
        self,
        phone: str,
        channel: Channel = "sms",
        *,
        purpose: str = LINE,
        language: str | None = None,
        code: NewCode | None = None,
    ) -> None:
        """Deliver `code` (stored already), or make, store and deliver a new one."""
        if code is None:
            code = self.new_code(phone, purpose=purpose)
            self._store.put_code(phone, code.stored.code_hash, code.stored.expires_at, purpose)
        self._delivery.deliver(phone, code.code, channel, purpose, language or DEFAULT_LANGUAGE)

    def check(self, phone: str, code: str, *, purpose: str = LINE) -> CheckResult:
        code_hash = self._hash(phone, code, purpose)
        # A right, unexpired code is used up by the statement that finds it: one caller wins,
        # and a right code costs one trip to the database. (The database compares keyed
        # hashes: how long that takes says nothing about the code.) Only a code that was not
        # used up is looked at again, to tell a wrong code from an expired one.
        if self._store.consume_code(phone, code_hash, purpose):
            return CheckResult.APPROVED
        pending = self._store.pending_code(phone, purpose)
        if pending is None:
            return CheckResult.EXPIRED  # none sent, or used up (by a check racing this one)
        stored_hash, _expires_at = pending
        if hmac.compare_digest(code_hash, stored_hash):
            return CheckResult.EXPIRED
        return CheckResult.WRONG

    def _hash(self, phone: str, code: str, purpose: str) -> str:
        # The purpose is hashed in too: a stored hash matches a code only for its own purpose.
        message = f"{purpose}:{phone}:{code}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()


# The line's code text; the console's sign-in text is for admins, and stays English.
LINE_CODE_TEXT = N_("Your code is %(code)s")


def code_text(code: str, purpose: str = LINE, language: str = DEFAULT_LANGUAGE) -> str:
    """Return the text message that carries a code, saying what it is for."""
    if purpose == SIGN_IN:
        return f"Your admin console sign-in code is {code}"
    return gettext(language, LINE_CODE_TEXT) % {"code": code}


class TwilioDelivery:
    """Send codes from the line's number: a text message, or a call that reads them out."""

    def __init__(self, client: Client, from_number: str, metrics: Metrics = NO_METRICS) -> None:
        self._client = client
        self._from = from_number
        self._metrics = metrics

    def deliver(
        self,
        phone: str,
        code: str,
        channel: Channel,
        purpose: str = LINE,
        language: str = DEFAULT_LANGUAGE,
    ) -> None:
        if channel == "call":
            spoken = twiml.to_xml(twiml.read_code_aloud(code, language))
            with twilio_faults("code call", "call_send", self._metrics):
                self._client.calls.create(to=phone, from_=self._from, twiml=spoken)
        else:
            self._text(phone, code_text(code, purpose, language), "code text")

    def text(self, phone: str, body: str) -> None:
        self._text(phone, body, "text message")

    def _text(self, phone: str, body: str, action: str) -> None:
        with twilio_faults(action, "message_send", self._metrics):
            self._client.messages.create(to=phone, from_=self._from, body=body)


@dataclass(frozen=True)
class OutboxMessage:
    to: str
    channel: Channel
    text: str
    at: datetime = field(default_factory=utcnow)

    def console_line(self) -> str:
        label = "Call" if self.channel == "call" else "SMS"
        return f"[{label} to {self.to}] {self.text}"


class ConsoleOutbox:
    """Local mode's delivery: print what the caller's phone would get, and keep the last few."""

    def __init__(self, keep: int = 200, stream=None) -> None:
        self._messages: deque[OutboxMessage] = deque(maxlen=keep)
        self._lock = threading.Lock()
        self._stream = stream
        # The terminal dev phone shows the caller's messages itself, in order with the call.
        self.echo = True

    def deliver(
        self,
        phone: str,
        code: str,
        channel: Channel,
        purpose: str = LINE,
        language: str = DEFAULT_LANGUAGE,
    ) -> None:
        self._keep(OutboxMessage(phone, channel, code_text(code, purpose, language)))

    def text(self, phone: str, body: str) -> None:
        self._keep(OutboxMessage(phone, "sms", body))

    def _keep(self, message: OutboxMessage) -> None:
        with self._lock:
            self._messages.append(message)
        if self.echo:
            stream = self._stream or sys.stderr
            stream.write(message.console_line() + "\n")
            stream.flush()

    def messages(self, to: str | None = None) -> list[OutboxMessage]:
        with self._lock:
            return [m for m in self._messages if to is None or m.to == to]
