"""Admin sign-in with a one-time code, and the session every console page requires.

Step 1 takes a number, step 2 sends a code by text or voice call, step 3 checks it. Each step
answers exactly the same whether or not the number belongs to an admin, so the pages cannot be
used to find out who the admins are; only an admin's number is ever sent a code.

To keep the answers alike in time too, step 2 leaves the sending - and the question whether the
number is an admin's - to a background thread, and step 3 asks the code provider about every
number. Sign-in codes have a purpose of their own ("sign-in"): a code from the phone line does
not sign anyone in, a sign-in code does not replace a caller's, and they have a separate cap.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_limiter import Limiter
from werkzeug.wrappers import Response

from ivr import audit
from ivr.admin import pages
from ivr.admin.forms import ButtonForm, ChannelForm, CodeForm, PhoneForm
from ivr.metrics import Metrics
from ivr.phones import international
from ivr.services import services
from ivr.store import Admin, SignInGuard, Store, utcnow
from ivr.verification import (
    SIGN_IN,
    Channel,
    CheckResult,
    CodeProvider,
    ProviderError,
    SendRefused,
)

log = logging.getLogger(__name__)
bp = Blueprint("admin_auth", __name__, url_prefix="/admin")
pages.set_up(bp)

CHANNEL_NAMES = {"sms": "text message", "call": "voice call"}
# Sign-in codes sent to one number in any hour; the phone line's codes are counted apart.
SIGN_IN_SENDS_PER_HOUR = 5
# Steps 2 and 3 take at least this long, admin or not: a second line of defence, should the
# work they do ever differ in time between admins and others.
STEP_FLOOR_SECONDS = 0.35
# Flask-Limiter limits on the POSTs of each step: per client address, and per number.
ADDRESS_LIMITS = {
    "admin_auth.sign_in": "30 per hour",
    "admin_auth.choose_channel": "20 per hour",
    "admin_auth.enter_code": "40 per hour",
}
# The steps that need codes sent; sign-out works without.
SIGN_IN_STEPS = {"admin_auth.sign_in", "admin_auth.choose_channel", "admin_auth.enter_code"}
NUMBER_LIMITS = {
    "admin_auth.choose_channel": "5 per 15 minutes",
    "admin_auth.enter_code": "15 per 15 minutes",
}


def apply_rate_limits(limiter: Limiter, app) -> None:
    """Limit the sign-in POSTs of `app` with `limiter`; nothing else is limited."""
    # Decorated views are checked by their wrapper, so the app must call the wrapped view.
    for endpoint, limit in ADDRESS_LIMITS.items():
        view = app.view_functions[endpoint]
        app.view_functions[endpoint] = limiter.limit(limit, methods=["POST"])(view)
    for endpoint, limit in NUMBER_LIMITS.items():
        view = app.view_functions[endpoint]
        app.view_functions[endpoint] = limiter.limit(
            limit, key_func=_number_being_signed_in, methods=["POST"]
        )(view)


def _number_being_signed_in() -> str:
    return "number:" + (session.get("sign_in_phone") or "none")


@bp.before_request
def sign_in_needs_a_sender() -> Response | tuple[str, int] | None:
    """Without a way to send codes, show why sign-in is off instead of taking a number."""
    if services().sign_in_codes is not None or request.endpoint not in SIGN_IN_STEPS:
        return None
    if request.endpoint == "admin_auth.sign_in" and _signed_in_admin() is not None:
        return None  # a session from before the restart still works
    session.pop("sign_in_phone", None)
    if request.endpoint != "admin_auth.sign_in":
        return redirect(url_for("admin_auth.sign_in"))
    page = render_template("admin/sign_in_phone.html", form=PhoneForm(), sign_in_off=True)
    # A POST (a page opened before the restart, a script) did nothing: say so in the status too.
    return page, 200 if request.method == "GET" else 503


@bp.before_request
def sign_in_needs_its_rate_limits() -> tuple[str, int] | None:
    """With REDIS_URL, refuse sign-in steps while Redis is down: the limits shared by every
    instance are kept there, and per-instance limits would let a guesser try N times as often.
    """
    if request.method != "POST" or request.endpoint not in SIGN_IN_STEPS:
        return None
    if not current_app.config["REDIS_URL"]:
        return None
    if current_app.extensions["ivr_sign_in_limiter"].storage.check():
        return None
    log.error("sign-in refused: the rate-limit store at REDIS_URL does not answer")
    page = render_template(
        "admin/error.html",
        title="Try again shortly",
        message="Sign-in is unavailable for a moment. Please try again in a few minutes.",
    )
    return page, 503


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in():
    if _signed_in_admin() is not None:
        return redirect(url_for("admin.dashboard"))
    form = PhoneForm()
    if form.validate_on_submit():
        session["sign_in_phone"] = form.phone.data
        return redirect(url_for("admin_auth.choose_channel"))
    return render_template("admin/sign_in_phone.html", form=form), 200 if not form.errors else 400


@bp.route("/sign-in/send", methods=["GET", "POST"])
def choose_channel():
    phone = session.get("sign_in_phone")
    if phone is None:
        return redirect(url_for("admin_auth.sign_in"))
    form = ChannelForm()
    if form.validate_on_submit():
        channel = form.channel.data
        _start_sending_code(phone, channel)
        flash(
            f"If {international(phone)} belongs to an admin, a code is on its way by "
            f"{CHANNEL_NAMES[channel]}. At most {SIGN_IN_SENDS_PER_HOUR} codes an hour go to a "
            "number.",
            "info",
        )
        return redirect(url_for("admin_auth.enter_code"))
    return render_template(
        "admin/sign_in_channel.html", form=form, phone=international(phone)
    ), 200 if not form.errors else 400


@bp.route("/sign-in/code", methods=["GET", "POST"])
def enter_code():
    phone = session.get("sign_in_phone")
    if phone is None:
        return redirect(url_for("admin_auth.sign_in"))
    form = CodeForm()
    status = 200
    if form.validate_on_submit():
        admin = _check_code(phone, form.code.data.strip())
        if admin is not None:
            _start_session(admin)
            name = audit.admin_name(admin)
            audit.record("admin.sign_in", name, actor=name)
            flash(f"Welcome, {admin.name}.", "success")
            return redirect(url_for("admin.dashboard"))
        status = 400
    elif form.errors:
        status = 400
    return render_template("admin/sign_in_code.html", form=form, phone=international(phone)), status


@bp.post("/sign-out")
def sign_out():
    admin = _signed_in_admin()
    if ButtonForm().validate_on_submit() and admin is not None:
        # Ends this admin's sessions everywhere, so a copied cookie stops working too.
        services().store.end_admin_sessions(admin.id)
        name = audit.admin_name(admin)
        audit.record("admin.sign_out", name, actor=name)
    session.clear()
    flash("You are signed out.", "success")
    return redirect(url_for("admin_auth.sign_in"))


def _start_sending_code(phone: str, channel: Channel) -> None:
    """Hand `phone` to a sender thread, whoever it belongs to; return without waiting for it."""
    started = time.monotonic()
    ivr = services()
    ivr.sender.run(_send_code_if_admin, ivr.store, ivr.sign_in_codes, ivr.metrics, phone, channel)
    _wait_until(started + _step_floor())


def _send_code_if_admin(
    store: Store, codes: CodeProvider, metrics: Metrics, phone: str, channel: Channel
) -> None:
    """Send a sign-in code if `phone` is an admin's and may get one (on a sender thread)."""
    # Nothing here reaches the page: a refused or failed send only shows in the log, so the
    # answer cannot tell an admin's number, nor a provider outage, from anything else.
    try:
        if (
            store.admin_by_phone(phone) is not None
            and store.locked_until(phone, SignInGuard) is None
            and store.reserve_send(phone, SIGN_IN_SENDS_PER_HOUR, purpose=SIGN_IN) is not None
        ):
            codes.send(phone, channel, purpose=SIGN_IN)
            metrics.code_sent(channel, SIGN_IN)
    except SendRefused:
        log.info("code provider refused another admin sign-in code for now")
    except ProviderError as error:
        log.error("code provider failed to send an admin sign-in code: %s", error)


def _check_code(phone: str, code: str) -> Admin | None:
    """Return the admin if `code` signs them in; otherwise flash why not and count a failure."""
    store = services().store
    config = current_app.config
    started = time.monotonic()
    try:
        until = store.locked_until(phone, SignInGuard)
        if until is not None:
            _flash_locked(until)
            return None
        # Claimed before the check, so that a burst of guesses cannot all be checked at once.
        attempt = store.claim_attempt(phone, config["MAX_ATTEMPTS"], SignInGuard)
        if attempt is None:
            _flash_locked(
                store.locked_until(phone, SignInGuard)
                or utcnow() + timedelta(seconds=config["LOCKOUT_SECONDS"])
            )
            return None
        admin = store.admin_by_phone(phone)
        # Asked for every number, so that admins and others take the same path: only an admin's
        # number is ever sent a sign-in code, so for anyone else the answer is wrong or expired.
        try:
            result = services().sign_in_codes.check(phone, code, purpose=SIGN_IN)
        except ProviderError:
            store.give_back_attempt(phone, SignInGuard)
            raise
        if result == CheckResult.APPROVED and admin is not None:
            store.succeed_attempt(phone, SignInGuard)
            return admin
        until = store.fail_attempt(
            phone, attempt, config["MAX_ATTEMPTS"], config["LOCKOUT_SECONDS"], SignInGuard
        )
        if until is not None:
            # Only the attempt that locks gets a time back: one count per lockout.
            services().metrics.lockout(SIGN_IN)
            _flash_locked(until)
        else:
            flash("That code is wrong or has expired. Check it, or send a new one.", "error")
        return None
    except ProviderError as error:
        log.error("code provider failed checking an admin sign-in: %s", error)
        flash("We could not check codes just now. Please try again in a few minutes.", "error")
        return None
    finally:
        _wait_until(started + _step_floor())


def _flash_locked(until: datetime) -> None:
    minutes = max(1, -(-int((until - utcnow()).total_seconds()) // 60))
    flash(
        f"Too many wrong codes: sign-in for this number is locked for {minutes} more "
        f"minute{'s' if minutes != 1 else ''}.",
        "error",
    )


def _start_session(admin: Admin) -> None:
    session.clear()
    session.permanent = True
    session["admin_id"] = admin.id
    session["signed_in_at"] = time.time()


def _signed_in_admin() -> Admin | None:
    """Return the admin of this session if it is current; clear an expired or ended one."""
    admin_id, signed_in_at = session.get("admin_id"), session.get("signed_in_at")
    if admin_id is None or signed_in_at is None:
        return None
    lifetime = current_app.permanent_session_lifetime.total_seconds()
    admin = services().store.admin(admin_id)
    if (
        time.time() - signed_in_at > lifetime
        or admin is None
        or (admin.signed_out_at is not None and _timestamp(admin.signed_out_at) >= signed_in_at)
    ):
        session.clear()
        return None
    return admin


def require_admin() -> Response | None:
    """Before every console page: the signed-in admin in g.admin, or off to sign in."""
    if request.endpoint == "admin.static":
        return None
    had_session = "admin_id" in session
    g.admin = _signed_in_admin()
    if g.admin is None:
        if had_session:
            flash("Your session has ended. Please sign in again.", "info")
        return redirect(url_for("admin_auth.sign_in"))
    return None


def _timestamp(naive_utc: datetime) -> float:
    return naive_utc.replace(tzinfo=UTC).timestamp()


def _step_floor() -> float:
    return current_app.config.get("ADMIN_SIGN_IN_FLOOR_SECONDS", STEP_FLOOR_SECONDS)


def _wait_until(deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)
