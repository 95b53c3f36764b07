"""The app's long-lived parts, built once by create_app and kept in app.extensions."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from flask import current_app
from twilio.rest import Client

from ivr.announcements import Announcements, LocalAnnouncements, TwilioAnnouncer
from ivr.authenticator import AuthenticatorApps
from ivr.metrics import Metrics, build_metrics
from ivr.sending import CodeSender
from ivr.settings import ExampleRoom
from ivr.store import DEFAULT_ROOM_NAME, ParticipantRow, Role, Store, utcnow
from ivr.twilio_client import build_client
from ivr.verification import CodeProvider
from ivr.verification.app_codes import AppCodes
from ivr.verification.builtin import BuiltinCodes, ConsoleOutbox, Delivery, TwilioDelivery
from ivr.verification.twilio_verify import TwilioVerify


@dataclass
class Services:
    store: Store
    codes: CodeProvider  # the phone line's
    sign_in_codes: CodeProvider | None  # the admin console's; None: it has no way to send
    sender: CodeSender  # sends both in the background
    twilio: Client | None
    outbox: ConsoleOutbox | None
    metrics: Metrics
    apps: AuthenticatorApps  # authenticator app secrets, sealed under SECRET_KEY
    app_codes: AppCodes  # the line's check of authenticator app codes
    texts: Delivery | None  # our own text messages (app invitations); None: no number to send from
    announcements: Announcements  # names announced in conferences, played on the sender threads
    # The time the line goes by for opening hours (aware); tests set another instead of waiting.
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)


def build_services(settings: dict) -> Services:
    """Build the store, the Twilio client and the code providers the settings ask for."""
    store = Store(settings["DATABASE_URL"])
    metrics = build_metrics(settings, store)
    twilio = outbox = None
    if settings["LOCAL_MODE"]:
        outbox = ConsoleOutbox()
        delivery = outbox
        announcer = LocalAnnouncements()
    else:
        twilio = build_client(
            settings["TWILIO_ACCOUNT_SID"],
            settings["TWILIO_AUTH_TOKEN"],
            settings["TWILIO_TIMEOUT_SECONDS"],
            settings["TWILIO_API_URL"],
        )
        delivery = TwilioDelivery(twilio, settings["TWILIO_PHONE_NUMBER"], metrics)
        announcer = TwilioAnnouncer(twilio, metrics)
    # Built-in codes keep the line's and the console's apart by purpose.
    builtin = BuiltinCodes(store, settings["SECRET_KEY"], settings["OTP_TTL_SECONDS"], delivery)
    codes: CodeProvider = builtin
    if twilio is not None and settings["VERIFY_SERVICE_SID"]:
        codes = TwilioVerify(twilio, settings["VERIFY_SERVICE_SID"], metrics)
    apps = AuthenticatorApps(settings["SECRET_KEY"])
    sign_in_codes: CodeProvider | None = None
    if settings["SIGN_IN_SENDER"] == "builtin":
        sign_in_codes = builtin
    elif settings["SIGN_IN_SENDER"] == "verify" and twilio is not None:
        # Verify keeps one pending code per number in a service: sign-in needs its own service,
        # or an admin's sign-in would replace their code for a call in progress.
        sign_in_codes = TwilioVerify(twilio, settings["ADMIN_VERIFY_SERVICE_SID"], metrics)
    return Services(
        store=store,
        codes=codes,
        sign_in_codes=sign_in_codes,
        sender=CodeSender(store, codes, metrics),
        twilio=twilio,
        outbox=outbox,
        metrics=metrics,
        apps=apps,
        app_codes=AppCodes(store, apps),
        texts=delivery if settings["INVITE_TEXTS"] else None,
        announcements=Announcements(store, announcer),
    )


def services() -> Services:
    """Return the current app's services."""
    return current_app.extensions["ivr"]


def seed_participants(store: Store, settings: dict) -> int:
    """Load the configured (or, in local mode, example) participants into an empty database.

    Local mode's example authenticator app user is enrolled the way a participant enrolls
    (an invitation, then its confirmation), so the dev phones can show their codes; its example
    rooms beside "main" (settings.EXAMPLE_ROOMS) come with their lines, hours, languages and
    members.
    """
    rows = [
        ParticipantRow(phone, name, Role(role))
        for phone, name, role in settings["SEED_PARTICIPANTS"]
    ]
    loaded = store.seed(rows)
    if loaded:
        apps = AuthenticatorApps(settings["SECRET_KEY"])
        for phone in settings["SEED_APP_USERS"]:
            # No link is ever sent for it: a random stand-in for a token's hash.
            token = secrets.token_hex(32)
            sealed = apps.seal(apps.new_secret())
            if store.invite(phone, DEFAULT_ROOM_NAME, token, sealed, utcnow() + timedelta(hours=1)):
                store.finish_enrolment(token, 0, utcnow())
        for example in settings["SEED_ROOMS"]:
            loaded += _seed_room(store, example)
    return loaded


def _seed_room(store: Store, example: ExampleRoom) -> int:
    """Create an example room with its line, hours, language and members; return how many."""
    room = store.create_room(example.name, example.line_number, None)
    store.update_meeting(
        room.id,
        time_zone=example.time_zone,
        opening_hours=example.opening_hours,
        language=example.language,
    )
    return store.import_participants(
        ParticipantRow(phone, name, Role(role), example.name)
        for phone, name, role in example.members
    )
