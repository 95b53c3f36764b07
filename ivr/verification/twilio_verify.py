"""Codes by Twilio Verify: Verify makes, sends, expires and checks them.

Verify keeps one pending verification per number in a service, so one service serves one
purpose: the console's sign-in codes need a service of their own (ADMIN_VERIFY_SERVICE_SID).
"""

from __future__ import annotations

from twilio.base import values
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from ivr.languages import verify_locale
from ivr.metrics import NO_METRICS, Metrics
from ivr.verification import (
    LINE,
    Channel,
    CheckResult,
    NewCode,
    SendRefused,
    twilio_faults,
)

# Verify error codes that are about the caller's number, not an outage.
MAX_CHECK_ATTEMPTS = 60202
MAX_SEND_ATTEMPTS = 60203


class TwilioVerify:
    """One Verify service; `purpose` is not sent, since the service itself stands for it."""

    def __init__(self, client: Client, service_sid: str, metrics: Metrics = NO_METRICS) -> None:
        self._service = client.verify.v2.services(service_sid)
        self._metrics = metrics

    def new_code(self, phone: str, *, purpose: str = LINE) -> None:
        return None  # Verify makes the code when asked to send it

    def send(
        self,
        phone: str,
        channel: Channel = "sms",
        *,
        purpose: str = LINE,
        language: str | None = None,
        code: NewCode | None = None,
    ) -> None:
        # Without a locale Verify picks the language by the number's country code.
        locale = verify_locale(language) if language else values.unset
        with twilio_faults("Verify send", "verify_send", self._metrics):
            try:
                self._service.verifications.create(to=phone, channel=channel, locale=locale)
            except TwilioRestException as error:
                if error.code == MAX_SEND_ATTEMPTS:
                    raise SendRefused from None
                raise

    def check(self, phone: str, code: str, *, purpose: str = LINE) -> CheckResult:
        with twilio_faults("Verify check", "verify_check", self._metrics):
            try:
                check = self._service.verification_checks.create(to=phone, code=code)
            except TwilioRestException as error:
                # 404: expired, already approved, or never started; 60202: too many checks.
                # Either way this code can no longer work - the caller's problem, not an outage.
                if error.status == 404 or error.code == MAX_CHECK_ATTEMPTS:
                    return CheckResult.EXPIRED
                raise
        if check.status == "approved":
            return CheckResult.APPROVED
        if check.status in ("expired", "canceled", "deleted", "max_attempts_reached"):
            return CheckResult.EXPIRED
        return CheckResult.WRONG
