"""The app's long-lived parts, built once by create_app and kept in app.extensions."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from twilio.rest import Client

from ivr.sending import CodeSender
from ivr.store import ParticipantRow, Role, Store
from ivr.twilio_client import build_client
from ivr.verification import CodeProvider
from ivr.verification.builtin import BuiltinCodes, ConsoleOutbox, TwilioDelivery
from ivr.verification.twilio_verify import TwilioVerify


@dataclass
class Services:
    store: Store
    codes: CodeProvider
    sender: CodeSender
    twilio: Client | None
    outbox: ConsoleOutbox | None


def build_services(settings: dict) -> Services:
    """Build the store, the Twilio client and the code provider the settings ask for."""
    store = Store(settings["DATABASE_URL"])
    twilio = outbox = None
    if settings["LOCAL_MODE"]:
        outbox = ConsoleOutbox()
        delivery = outbox
    else:
        twilio = build_client(
            settings["TWILIO_ACCOUNT_SID"],
            settings["TWILIO_AUTH_TOKEN"],
            settings["TWILIO_TIMEOUT_SECONDS"],
            settings["TWILIO_API_URL"],
        )
        delivery = TwilioDelivery(twilio, settings["TWILIO_PHONE_NUMBER"])
    if twilio is not None and settings["VERIFY_SERVICE_SID"]:
        codes: CodeProvider = TwilioVerify(twilio, settings["VERIFY_SERVICE_SID"])
    else:
        codes = BuiltinCodes(store, settings["SECRET_KEY"], settings["OTP_TTL_SECONDS"], delivery)
    return Services(
        store=store, codes=codes, sender=CodeSender(store, codes), twilio=twilio, outbox=outbox
    )


def services() -> Services:
    """Return the current app's services."""
    return current_app.extensions["ivr"]


def seed_participants(store: Store, settings: dict) -> int:
    """Load the configured (or, in local mode, example) participants into an empty database."""
    rows = [
        ParticipantRow(phone, name, Role(role))
        for phone, name, role in settings["SEED_PARTICIPANTS"]
    ]
    return store.seed(rows)
