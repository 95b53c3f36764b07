"""Code providers: start a code for a number, then check what the caller typed.

Two providers share this interface: Twilio Verify (`twilio_verify.py`) and the built-in one
(`builtin.py`). Failures are split by whose they are: a CheckResult says the caller was wrong or
late; SendRefused says the provider will not send more codes to this number for now;
ProviderError says the provider is down, slow or refusing, and nothing the caller did matters.

Every code has a purpose: the phone line ("line") or the admin console ("sign-in"). A code is
good only for its own purpose, so a code from one can never be used at, or replaced by, the other.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal, Protocol

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException

from ivr.metrics import ERROR, NO_METRICS, OK, REFUSED, TIMEOUT, Metrics
from ivr.store import StoredCode

# How a code reaches the caller; "whatsapp" only through Verify, which holds the approved
# message template that a business-initiated WhatsApp message needs.
Channel = Literal["sms", "call", "whatsapp"]
# What a code is for; the same names as the store's lockout kinds.
LINE = "line"
SIGN_IN = "sign-in"


class CheckResult(StrEnum):
    APPROVED = "approved"
    WRONG = "wrong"
    EXPIRED = "expired"  # also: used, never sent, or checked too often
    USED = "used"  # an authenticator app's code (time step) that was accepted once already


class ProviderError(Exception):
    """The provider could not do its part: an HTTP error, a timeout or a refused connection."""


class SendRefused(Exception):
    """The provider refuses to send more codes to this number for now."""


@dataclass(frozen=True)
class NewCode:
    """A code made before it is sent, whose keyed hash is stored with the send's reservation
    (the built-in provider's; Verify makes its codes itself)."""

    code: str = field(repr=False)  # never in a log line
    stored: StoredCode


class CodeProvider(Protocol):
    def new_code(self, phone: str, *, purpose: str = LINE) -> NewCode | None:
        """Make the code `send` will deliver, for the line to store with the send's
        reservation (one transaction instead of two); None if the provider keeps its codes."""

    def send(
        self,
        phone: str,
        channel: Channel = "sms",
        *,
        purpose: str = LINE,
        language: str | None = None,
        code: NewCode | None = None,
    ) -> None:
        """Deliver `code`, or start a code for `phone` and deliver it; raise SendRefused or
        ProviderError.

        `language` is the room's (ivr.languages); None leaves the message in the provider's
        default.
        """

    def check(self, phone: str, code: str, *, purpose: str = LINE) -> CheckResult:
        """Check six digits for `phone`; raise ProviderError if the provider cannot answer."""


@contextmanager
def twilio_faults(action: str, operation: str, metrics: Metrics = NO_METRICS) -> Iterator[None]:
    """Turn anything the twilio library or the network raises into ProviderError.

    Every Twilio REST request goes through here, so here it is counted and timed as
    `operation`: ok (answers the caller code handles, such as Verify's 404, included), refused
    (SendRefused: no more codes for this number now), timeout, or error.
    """
    started = time.perf_counter()
    result = ERROR
    try:
        yield
        result = OK
    except SendRefused:
        result = REFUSED
        raise
    except TwilioRestException as error:
        raise ProviderError(
            f"{action}: Twilio answered {error.status} (code {error.code})"
        ) from None
    except requests.Timeout as error:
        result = TIMEOUT
        raise ProviderError(f"{action}: {type(error).__name__}") from None
    except (TwilioException, requests.RequestException) as error:
        raise ProviderError(f"{action}: {type(error).__name__}") from None
    finally:
        metrics.provider_request(operation, result, time.perf_counter() - started)
