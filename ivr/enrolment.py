"""Authenticator app self-enrolment: the invitation a participant gets by SMS.

The participant opens the link, scans the QR code into their app and confirms one code; only
then does the line ask them for app codes. No admin ever sees the secret: it is made here,
sealed into the database, and shown only on the page behind the link.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from datetime import timedelta

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    has_request_context,
    render_template,
    request,
)
from flask_limiter import Limiter
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from ivr import authenticator
from ivr.admin.forms import AppCodeForm
from ivr.admin.pages import CONTENT_SECURITY_POLICY
from ivr.services import services
from ivr.store import PendingEnrolment, utcnow

INVITE_HOURS = 24
LOCAL_BASE_URL = "http://127.0.0.1:5000"  # `flask --app ivr run`'s address, for local mode
# What secrets.token_urlsafe(32) makes; anything else is not a link we sent.
TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")
# Per client address. The token has 256 random bits, so these only keep scanners and scripts
# from using the page as a free oracle or loading the server.
PAGE_LIMIT = "30 per minute"
CONFIRM_LIMIT = "10 per minute"
WRONG_CODE = (
    "That code is not right. Check that your phone's clock is set automatically, then enter "
    "the code your app shows now."
)
DEAD_LINK = (
    "This link does not work. It may have been used already, or it is more than "
    f"{INVITE_HOURS} hours old. Ask whoever runs your conference line for a new invitation."
)

log = logging.getLogger(__name__)
bp = Blueprint("enrolment", __name__)


class InviteError(Exception):
    """An invitation cannot be sent; the message says why, for a form or the command line."""


def token_hash(token: str) -> str:
    """Return what the database keeps of a link's token: its SHA-256.

    The token has 256 random bits, so a plain hash is as good as a keyed one, and a copy of
    the database gives no working link.
    """
    return hashlib.sha256(token.encode()).hexdigest()


def invite(phone: str, room: str, *, in_background: bool = True) -> str:
    """Text `phone` in `room` a single-use link to set up an authenticator app; return the name.

    The console's text goes out on a sender thread, as codes do, so the page does not wait for
    Twilio; the command line waits, to say whether it went (ProviderError if not). Raise
    InviteError if the participant is not in the room or there is no way to send the text or
    to build the link.
    """
    found = services()
    if found.texts is None:
        raise InviteError(
            "invitations are text messages from the line's number: set TWILIO_PHONE_NUMBER"
        )
    link_base = _link_base()
    token = secrets.token_urlsafe(32)
    sealed = found.apps.seal(found.apps.new_secret())
    expires_at = utcnow() + timedelta(hours=INVITE_HOURS)
    name = found.store.invite(phone, room, token_hash(token), sealed, expires_at)
    if name is None:
        raise InviteError(f"{phone} is not a participant in room {room}")
    link = f"{link_base}/enrol/{token}"
    body = (
        f"{name}, set up an authenticator app for your conference line codes: {link} "
        f"(works once, for {INVITE_HOURS} hours)"
    )
    if in_background:
        found.sender.run(found.texts.text, phone, body)
    else:
        found.texts.text(phone, body)
    log.info("sent an authenticator app invitation (room %s)", room)
    return name


def _link_base() -> str:
    """Return the public address the link starts with."""
    base = current_app.config["PUBLIC_BASE_URL"]
    if base:
        return base
    if has_request_context():
        return request.host_url.rstrip("/")
    if current_app.config["LOCAL_MODE"]:
        return LOCAL_BASE_URL
    raise InviteError("set PUBLIC_BASE_URL: the invitation links to a page on this server")


def init_app(app: Flask, limiter: Limiter) -> None:
    """Register the enrolment page, rate-limited per client address by the console's limiter."""
    app.register_blueprint(bp)
    view = app.view_functions["enrolment.enrol"]
    view = limiter.limit(CONFIRM_LIMIT, methods=["POST"])(view)
    app.view_functions["enrolment.enrol"] = limiter.limit(PAGE_LIMIT, methods=["GET"])(view)


@bp.after_request
def _private_page(response: Response) -> Response:
    # The address holds the token: no cache keeps the page, no other site learns the address.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.errorhandler(HTTPException)
def _error_page(error: HTTPException):
    if error.code == 404:
        title, message = "This link does not work", DEAD_LINK
    elif error.code == 429:
        title, message = (
            "Too many attempts",
            "Too many attempts from here. Wait a minute and try again.",
        )
    elif isinstance(error, CSRFError):
        title = "That did not work"
        message = "The form had expired or was not sent from this page. Nothing changed."
    else:
        title, message = error.name, error.description
    return render_template("enrol_message.html", title=title, message=message), error.code


@bp.route("/enrol/<token>", methods=["GET", "POST"])
def enrol(token: str):
    """Show the QR code and secret for an invitation; a correct code from the app confirms it."""
    hashed = token_hash(token)
    pending = (
        services().store.pending_enrolment(hashed, utcnow()) if TOKEN.fullmatch(token) else None
    )
    secret = _secret_of(pending)
    if pending is None or secret is None:
        abort(404)
    form = AppCodeForm()
    if form.validate_on_submit():
        now = services().app_codes.clock()
        step = authenticator.matching_step(secret, form.code.data.strip(), now)
        if step is None:
            form.code.errors.append(WRONG_CODE)
        elif not services().store.finish_enrolment(hashed, step, utcnow()):
            abort(404)  # confirmed by a request racing this one, or expired meanwhile
        else:
            log.info("a participant enrolled an authenticator app (room %s)", pending.room)
            return render_template("enrol_done.html", pending=pending)
    account = f"{pending.room}: {pending.name}"
    uri = authenticator.setup_uri(secret, account)
    page = render_template(
        "enrol.html",
        pending=pending,
        form=form,
        qr_svg=authenticator.qr_svg(uri),
        secret_groups=" ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
        account=account,
    )
    return page, 400 if form.errors else 200


def _secret_of(pending: PendingEnrolment | None) -> str | None:
    if pending is None:
        return None
    try:
        return services().apps.open(pending.app_secret)
    except authenticator.SecretUnreadable as error:
        log.error("an invitation cannot be shown: %s", error)
        return None
