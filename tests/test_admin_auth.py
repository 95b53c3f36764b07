"""Console sign-in: one-time codes for admins only, lockouts, rate limits, sessions and CSRF."""

from __future__ import annotations

import logging
import os
import re
import time
import xml.etree.ElementTree as ET
from functools import partial

import pytest
from sqlalchemy import select

from ivr import twiml
from ivr.store import CodeSend, NumberGuard, OneTimeCode, Participant, Room, SignInGuard
from tests.conftest import (
    ADMIN,
    ADMIN_NAME,
    ADMIN_VERIFY_SID,
    BLATHERS,
    LINE,
    MODERATOR,
    STRANGER,
    VERIFY_SID,
    call_params,
    csrf_token,
    enter_code,
    lock_out,
    post_form,
    said,
    seed_roster,
    signed_post,
    start_sign_in,
    twiml_of,
)

CONSOLE_PAGES = [
    "/admin/",
    "/admin/rooms",
    "/admin/rooms/new",
    "/admin/rooms/1",
    "/admin/rooms/1/edit",
    "/admin/rooms/1/delete",
    "/admin/participants/import",
    "/admin/participants/export.csv",
    "/admin/calls",
    "/admin/lockouts",
    "/admin/live",
]


def text_of(response) -> str:
    return response.get_data(as_text=True)


def flashes(client) -> list[str]:
    """Return the flash messages waiting in the session, and clear them."""
    with client.session_transaction() as session:
        return [message for _, message in session.pop("_flashes", [])]


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


def rows(app, model) -> list:
    store = app.extensions["ivr"].store
    with store.engine.connect() as connection:
        return list(connection.execute(select(model.__table__)))


def codes_sent(fake) -> list:
    return [r for r in fake.requests if r.kind in ("message", "call", "verify-send")]


# Where codes come from: the line's provider, and the console's.
SETUPS = {
    # Built-in codes for both.
    "builtin": {},
    # Verify for the line; built-in sign-in codes, texted from the line's number.
    "verify-line": {"VERIFY_SERVICE_SID": VERIFY_SID},
    # A Verify service each.
    "verify-both": {"VERIFY_SERVICE_SID": VERIFY_SID, "ADMIN_VERIFY_SERVICE_SID": ADMIN_VERIFY_SID},
}


@pytest.fixture(params=list(SETUPS))
def setup(request) -> str:
    return request.param


@pytest.fixture
def line_admin_app(make_app, setup):
    """The tutorial's callers, with the moderator and Blathers also admins; no padding."""
    app = make_app(ADMIN_SIGN_IN_FLOOR_SECONDS=0, **SETUPS[setup])
    seed_roster(app)
    app.extensions["ivr"].store.add_admin(MODERATOR, "Isabelle")
    app.extensions["ivr"].store.add_admin(BLATHERS, "Blathers")
    return app


def dial_in(app, caller: str) -> ET.Element:
    """Answer a call at /voice and let its code go out."""
    root = twiml_of(signed_post(app.test_client(), "/voice", call_params(caller)))
    app.extensions["ivr"].sender.wait_idle()
    return root


def enter_on_the_line(app, caller: str, digits: str) -> ET.Element:
    return twiml_of(signed_post(app.test_client(), "/gather", call_params(caller, Digits=digits)))


def assert_sign_in_code_went_out(fake, setup: str, phone: str) -> None:
    """Assert the last code for `phone` went out the console's way for `setup`."""
    if setup == "verify-both":
        method, path, form = fake.requests_of("verify-send")[-1]
        assert path == f"/verify/v2/Services/{ADMIN_VERIFY_SID}/Verifications"
        assert form["To"] == phone
    else:
        message = fake.sent("message", phone)[-1]
        assert message["From"] == LINE
        assert message["Body"].startswith("Your admin console sign-in code is ")


# -- signing in ------------------------------------------------------------------------------


def test_an_admin_signs_in_with_a_texted_code(make_app, fake_twilio, setup):
    app = make_app(ADMIN_SIGN_IN_FLOOR_SECONDS=0, **SETUPS[setup])
    app.extensions["ivr"].store.add_admin(ADMIN, ADMIN_NAME)
    client = app.test_client()

    sent = start_sign_in(client)
    assert sent.status_code == 302
    assert sent.location == "/admin/sign-in/code"
    assert flashes(client) == [
        "If +1 800-555-0111 belongs to an admin, a code is on its way by text message. "
        "At most 5 codes an hour go to a number."
    ]
    assert_sign_in_code_went_out(fake_twilio, setup, ADMIN)
    assert len(codes_sent(fake_twilio)) == 1
    if setup == "verify-both":
        assert fake_twilio.sent("verify-send", ADMIN)[0]["Channel"] == "sms"

    response = enter_code(client, fake_twilio.code_for(ADMIN))

    assert response.status_code == 302
    assert response.location == "/admin/"
    assert flashes(client) == [f"Welcome, {ADMIN_NAME}."]
    page = client.get("/admin/")
    assert page.status_code == 200
    assert ADMIN_NAME in text_of(page)


def test_the_session_cookie_is_secure_httponly_and_lax(admin_app, fake_twilio):
    client = admin_app.test_client()
    start_sign_in(client)
    response = enter_code(client, fake_twilio.code_for(ADMIN))

    cookie = response.headers["Set-Cookie"]
    assert "Secure" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    # A permanent session: it expires with ADMIN_SESSION_HOURS, not only with the browser.
    assert re.search(r"Expires=", cookie)


def test_local_mode_cookies_are_not_secure_so_plain_http_keeps_them(tmp_path):
    from ivr import create_app

    app = create_app(
        {
            "TESTING": True,
            "INSTANCE_PATH": str(tmp_path / "instance"),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'local.sqlite3'}",
        }
    )
    assert app.config["LOCAL_MODE"] is True
    assert app.config["SESSION_COOKIE_SECURE"] is False
    assert app.config["SESSION_COOKIE_HTTPONLY"] is True
    app.extensions["ivr"].store.dispose()


def test_a_voice_call_reads_the_code_digit_by_digit_twice(admin_app, fake_twilio):
    client = admin_app.test_client()
    response = start_sign_in(client, channel="call")

    assert response.status_code == 302
    [call] = fake_twilio.sent("call", ADMIN)
    code = fake_twilio.code_for(ADMIN)
    spoken = ", ".join(code)
    assert f"Your code is {spoken}." in call["Twiml"]
    assert f"Again, your code is {spoken}." in call["Twiml"]
    assert fake_twilio.sent("message") == []
    assert flashes(client)[0].startswith(
        "If +1 800-555-0111 belongs to an admin, a code is on its way by voice call."
    )


def test_a_bad_number_gets_a_clear_error_and_nothing_is_sent(admin_app, fake_twilio):
    client = admin_app.test_client()
    token = csrf_token(client)

    response = client.post("/admin/sign-in", data={"csrf_token": token, "phone": "12345"})

    assert response.status_code == 400
    assert "is not a valid phone number: use international format" in text_of(response)
    assert fake_twilio.requests == []


@pytest.mark.parametrize("phone", [STRANGER, BLATHERS], ids=["stranger", "participant"])
def test_a_number_that_is_not_an_admin_gets_the_same_answers_and_no_code(
    admin_app, fake_twilio, phone
):
    admin_client, other_client = admin_app.test_client(), admin_app.test_client()
    for_admin = start_sign_in(admin_client)
    for_other = start_sign_in(other_client, phone)

    assert for_other.status_code == for_admin.status_code == 302
    assert for_other.location == for_admin.location
    admin_text = flashes(admin_client)[0]
    assert flashes(other_client) == [admin_text.replace("+1 800-555-0111", _intl(phone))]
    # The code pages differ only in the number they show.
    admin_page = text_of(admin_client.get("/admin/sign-in/code"))
    other_page = text_of(other_client.get("/admin/sign-in/code"))
    assert _without_tokens(other_page) == _without_tokens(admin_page).replace(
        "+1 800-555-0111", _intl(phone)
    )
    assert [r.form["To"] for r in codes_sent(fake_twilio)] == [ADMIN]

    # Whatever they type, a non-admin is told the code is wrong, exactly as an admin would be.
    refused = enter_code(other_client, "123456")
    assert refused.status_code == 400
    assert "That code is wrong or has expired." in text_of(refused)
    assert other_client.get("/admin/").status_code == 302


def test_a_participant_cannot_sign_in_with_a_code_from_the_phone_line(line_admin_app, fake_twilio):
    """Blathers is an admin too: his line code is still no good at the console."""
    app = line_admin_app
    dial_in(app, BLATHERS)
    line_code = fake_twilio.code_for(BLATHERS)
    client = app.test_client()
    token = csrf_token(client)
    client.post("/admin/sign-in", data={"csrf_token": token, "phone": BLATHERS})

    # No sign-in code was asked for: the line's code is not one.
    refused = enter_code(client, line_code)
    assert refused.status_code == 400
    assert "That code is wrong or has expired." in text_of(refused)
    # Nor once a sign-in code is pending.
    start_sign_in(client, BLATHERS)
    assert enter_code(client, line_code).status_code == 400
    assert client.get("/admin/").status_code == 302

    # Trying it at the console used nothing up: the line code still lets him into the call.
    root = enter_on_the_line(app, BLATHERS, line_code)
    assert root.find("Dial/Conference") is not None


def test_a_sign_in_code_neither_joins_the_line_nor_replaces_the_line_code(
    line_admin_app, fake_twilio, setup
):
    app = line_admin_app
    dial_in(app, BLATHERS)
    line_code = fake_twilio.code_for(BLATHERS)
    # In the middle of his call, Blathers asks the console for a code.
    client = app.test_client()
    start_sign_in(client, BLATHERS)
    assert_sign_in_code_went_out(fake_twilio, setup, BLATHERS)
    sign_in_code = fake_twilio.code_for(BLATHERS)

    wrong_number = enter_on_the_line(app, BLATHERS, sign_in_code)
    assert said(wrong_number) == [twiml.WRONG_CODE]
    joined = enter_on_the_line(app, BLATHERS, line_code)
    assert said(joined)[0] == twiml.CORRECT
    assert joined.find("Dial/Conference") is not None

    # And the line's check used up nothing of the console's.
    signed_in = enter_code(client, sign_in_code)
    assert signed_in.status_code == 302
    assert signed_in.location == "/admin/"


def test_sign_in_codes_do_not_use_up_an_admin_moderators_line_codes(
    line_admin_app, fake_twilio, setup
):
    app = line_admin_app
    client = app.test_client()
    token = csrf_token(client)
    client.post("/admin/sign-in", data={"csrf_token": token, "phone": MODERATOR})
    for _ in range(5):
        response = client.post("/admin/sign-in/send", data={"csrf_token": token, "channel": "sms"})
        assert response.status_code == 302
    app.extensions["ivr"].sender.wait_idle()
    assert len(codes_sent(fake_twilio)) == 5
    # The console's hourly cap is reached ...
    store = app.extensions["ivr"].store
    assert store.reserve_send(MODERATOR, 5, purpose="sign-in") is None
    assert {(row.phone, row.purpose) for row in rows(app, CodeSend)} == {(MODERATOR, "sign-in")}

    # ... and the moderator's call still gets its code and starts the conference.
    welcome = dial_in(app, MODERATOR)
    assert said(welcome) == ["Welcome Isabelle. Please enter the 6 digit code sent to your device."]
    assert len(codes_sent(fake_twilio)) == 6
    joined = enter_on_the_line(app, MODERATOR, fake_twilio.code_for(MODERATOR))
    conference = joined.find("Dial/Conference")
    assert conference is not None
    assert conference.get("startConferenceOnEnter") == "true"


def test_built_in_codes_are_kept_per_purpose(line_admin_app, fake_twilio):
    app = line_admin_app
    dial_in(app, MODERATOR)
    start_sign_in(app.test_client(), MODERATOR)

    pending = sorted((row.phone, row.purpose) for row in rows(app, OneTimeCode))
    if app.config["VERIFY_SERVICE_SID"] is None:
        assert pending == [(MODERATOR, "line"), (MODERATOR, "sign-in")]
    elif app.config["ADMIN_VERIFY_SERVICE_SID"] is None:
        assert pending == [(MODERATOR, "sign-in")]
    else:
        assert pending == []


def test_wrong_codes_lock_sign_in_for_that_number_only(admin_app, fake_twilio):
    client = admin_app.test_client()
    start_sign_in(client)
    code = fake_twilio.code_for(ADMIN)

    for _ in range(2):
        response = enter_code(client, wrong(code))
        assert response.status_code == 400
        assert "That code is wrong or has expired." in text_of(response)
    locked = enter_code(client, wrong(code))
    assert "sign-in for this number is locked for 10 more minutes" in text_of(locked)

    # Even the right code is refused while locked, and the lockout is in the database.
    assert enter_code(client, code).status_code == 400
    assert client.get("/admin/").status_code == 302
    [guard] = rows(admin_app, SignInGuard)
    assert guard.phone == ADMIN and guard.locked_until is not None
    # Guessing at the console never locks anyone out of the phone line.
    assert rows(admin_app, NumberGuard) == [] or all(
        g.locked_until is None for g in rows(admin_app, NumberGuard)
    )

    # A locked number is sent no more codes.
    fake_twilio.reset()
    start_sign_in(admin_app.test_client())
    assert codes_sent(fake_twilio) == []


def test_a_lockout_earned_on_one_instance_holds_on_another(make_app, fake_twilio):
    first = make_app(ADMIN_SIGN_IN_FLOOR_SECONDS=0)
    second = make_app(ADMIN_SIGN_IN_FLOOR_SECONDS=0)
    first.extensions["ivr"].store.add_admin(ADMIN, ADMIN_NAME)
    one, two = first.test_client(), second.test_client()
    start_sign_in(one)
    start_sign_in(two)
    code = fake_twilio.code_for(ADMIN)

    enter_code(one, wrong(code))
    enter_code(two, wrong(code))
    enter_code(one, wrong(code))

    assert "locked" in text_of(enter_code(two, fake_twilio.code_for(ADMIN)))


@pytest.mark.parametrize("setup", ["builtin", "verify-both"])
def test_during_a_provider_outage_admins_and_strangers_see_the_same_pages(
    make_app, fake_twilio, caplog, setup
):
    app = make_app(ADMIN_SIGN_IN_FLOOR_SECONDS=0, **SETUPS[setup])
    app.extensions["ivr"].store.add_admin(ADMIN, ADMIN_NAME)
    fake_twilio.fail("verify-send" if setup == "verify-both" else "message", 500, 20500, times=9)
    admin_client, stranger_client = app.test_client(), app.test_client()

    with caplog.at_level(logging.ERROR, logger="ivr.admin.auth"):
        for_admin = start_sign_in(admin_client)
        for_stranger = start_sign_in(stranger_client, STRANGER)

    assert for_admin.status_code == for_stranger.status_code == 302
    assert for_admin.location == for_stranger.location == "/admin/sign-in/code"
    admin_flashes, stranger_flashes = flashes(admin_client), flashes(stranger_client)
    assert admin_flashes == [
        "If +1 800-555-0111 belongs to an admin, a code is on its way by text message. "
        "At most 5 codes an hour go to a number."
    ]
    assert stranger_flashes == [admin_flashes[0].replace("+1 800-555-0111", _intl(STRANGER))]
    admin_page = text_of(admin_client.get("/admin/sign-in/code"))
    stranger_page = text_of(stranger_client.get("/admin/sign-in/code"))
    assert _without_tokens(stranger_page) == _without_tokens(admin_page).replace(
        "+1 800-555-0111", _intl(STRANGER)
    )
    # The admin's code was tried, and the failure is in the log only.
    assert [r.form["To"] for r in codes_sent(fake_twilio)] == [ADMIN]
    assert [r.getMessage() for r in caplog.records] == [
        "code provider failed to send an admin sign-in code: "
        + ("Verify send" if setup == "verify-both" else "code text")
        + ": Twilio answered 500 (code 20500)"
    ]


def test_the_send_step_does_not_wait_for_twilio(make_app, fake_twilio):
    app = make_app(ADMIN_SIGN_IN_FLOOR_SECONDS=0)
    app.extensions["ivr"].store.add_admin(ADMIN, ADMIN_NAME)
    fake_twilio.latency = 0.6

    def send_step_seconds(phone: str) -> float:
        client = app.test_client()
        token = csrf_token(client)
        client.post("/admin/sign-in", data={"csrf_token": token, "phone": phone})
        started = time.monotonic()
        response = client.post("/admin/sign-in/send", data={"csrf_token": token, "channel": "sms"})
        seconds = time.monotonic() - started
        assert response.status_code == 302
        return seconds

    for_admin = send_step_seconds(ADMIN)
    for_stranger = send_step_seconds(STRANGER)

    assert for_admin < 0.6
    assert abs(for_admin - for_stranger) < 0.2
    app.extensions["ivr"].sender.wait_idle()
    assert [r.form["To"] for r in codes_sent(fake_twilio)] == [ADMIN]


def test_the_code_step_asks_the_provider_about_every_number(make_app, fake_twilio):
    app = make_app(ADMIN_SIGN_IN_FLOOR_SECONDS=0, **SETUPS["verify-both"])
    app.extensions["ivr"].store.add_admin(ADMIN, ADMIN_NAME)
    admin_client, stranger_client = app.test_client(), app.test_client()
    start_sign_in(admin_client)
    start_sign_in(stranger_client, STRANGER)

    for_admin = enter_code(admin_client, wrong(fake_twilio.code_for(ADMIN)))
    for_stranger = enter_code(stranger_client, "123456")

    assert for_admin.status_code == for_stranger.status_code == 400
    checks = fake_twilio.requests_of("verify-check")
    assert [(path, form["To"]) for _, path, form in checks] == [
        (f"/verify/v2/Services/{ADMIN_VERIFY_SID}/VerificationCheck", ADMIN),
        (f"/verify/v2/Services/{ADMIN_VERIFY_SID}/VerificationCheck", STRANGER),
    ]


def test_sign_in_steps_are_padded_to_the_same_length(make_app, fake_twilio):
    app = make_app(ADMIN_SIGN_IN_FLOOR_SECONDS=0.3)
    app.extensions["ivr"].store.add_admin(ADMIN, ADMIN_NAME)
    client = app.test_client()
    token = csrf_token(client)
    client.post("/admin/sign-in", data={"csrf_token": token, "phone": STRANGER})

    started = time.monotonic()
    client.post("/admin/sign-in/send", data={"csrf_token": token, "channel": "sms"})

    assert time.monotonic() - started >= 0.3
    app.extensions["ivr"].sender.wait_idle()
    assert fake_twilio.requests == []


# -- rate limits -------------------------------------------------------------------------------


def test_codes_for_one_number_are_rate_limited(admin_app, fake_twilio):
    client = admin_app.test_client()
    token = csrf_token(client)
    client.post("/admin/sign-in", data={"csrf_token": token, "phone": ADMIN})

    answers = [
        client.post("/admin/sign-in/send", data={"csrf_token": token, "channel": "sms"})
        for _ in range(6)
    ]

    assert [a.status_code for a in answers] == [302] * 5 + [429]
    assert "Too many sign-in attempts" in text_of(answers[-1])
    admin_app.extensions["ivr"].sender.wait_idle()
    assert len(fake_twilio.sent("message", ADMIN)) == 5
    # Another client address is held back too: the limit is on the number.
    other = admin_app.test_client()
    other_token = csrf_token(other)
    other.post(
        "/admin/sign-in",
        data={"csrf_token": other_token, "phone": ADMIN},
        environ_base={"REMOTE_ADDR": "192.0.2.7"},
    )
    blocked = other.post(
        "/admin/sign-in/send",
        data={"csrf_token": other_token, "channel": "sms"},
        environ_base={"REMOTE_ADDR": "192.0.2.7"},
    )
    assert blocked.status_code == 429
    admin_app.extensions["ivr"].sender.wait_idle()
    assert len(fake_twilio.sent("message", ADMIN)) == 5


def test_one_client_address_is_rate_limited_across_numbers(admin_app, fake_twilio):
    client = admin_app.test_client()
    token = csrf_token(client)

    answers = [
        client.post("/admin/sign-in", data={"csrf_token": token, "phone": f"+1800555{n:04d}"})
        for n in range(31)
    ]

    assert [a.status_code for a in answers] == [302] * 30 + [429]
    elsewhere = client.post(
        "/admin/sign-in",
        data={"csrf_token": token, "phone": ADMIN},
        environ_base={"REMOTE_ADDR": "192.0.2.8"},
    )
    assert elsewhere.status_code == 302


def test_webhooks_are_not_rate_limited(admin_app):
    from tests.conftest import call_params, signed_post

    client = admin_app.test_client()
    for _ in range(60):
        response = signed_post(client, "/gather", call_params(BLATHERS))
        assert response.status_code == 200


def test_the_limiters_request_hooks_run_only_where_it_limits(admin_app):
    """Flask-Limiter's hooks cost every request they run for; only sign-in and enrolment
    have limits, so Twilio's webhooks and the console's pages run none of them."""
    limiter = admin_app.extensions["ivr_sign_in_limiter"]

    def bound_to_limiter(hook) -> bool:
        owner = hook.args[0] if isinstance(hook, partial) and hook.args else None
        return limiter in (owner, getattr(hook, "__self__", None))

    def limiter_hooks(blueprint: str) -> list[int]:
        hooks = (
            admin_app.before_request_funcs,
            admin_app.after_request_funcs,
            admin_app.teardown_request_funcs,
        )
        return [
            sum(bound_to_limiter(hook) for hook in kind.get(name, []))
            for kind in hooks
            for name in (None, blueprint)
        ]

    assert limiter_hooks("voice") == [0, 0, 0, 0, 0, 0]
    assert limiter_hooks("admin") == [0, 0, 0, 0, 0, 0]
    assert limiter_hooks("admin_auth") == [0, 1, 0, 1, 0, 1]
    assert limiter_hooks("enrolment") == [0, 1, 0, 1, 0, 1]


@pytest.mark.skipif(not os.environ.get("TEST_REDIS_URL"), reason="TEST_REDIS_URL is not set")
def test_with_redis_the_limit_holds_across_instances(make_app, fake_twilio):
    import redis

    url = os.environ["TEST_REDIS_URL"]
    redis.Redis.from_url(url).flushdb()
    first = make_app(ADMIN_SIGN_IN_FLOOR_SECONDS=0, REDIS_URL=url)
    second = make_app(ADMIN_SIGN_IN_FLOOR_SECONDS=0, REDIS_URL=url)
    first.extensions["ivr"].store.add_admin(ADMIN, ADMIN_NAME)
    clients = [first.test_client(), second.test_client()]
    tokens = [csrf_token(c) for c in clients]
    for client, token in zip(clients, tokens, strict=True):
        client.post("/admin/sign-in", data={"csrf_token": token, "phone": ADMIN})

    answers = [
        clients[n % 2].post(
            "/admin/sign-in/send", data={"csrf_token": tokens[n % 2], "channel": "sms"}
        )
        for n in range(6)
    ]

    assert [a.status_code for a in answers] == [302] * 5 + [429]
    redis.Redis.from_url(url).flushdb()


def test_with_redis_down_the_line_answers_and_sign_in_says_try_again(make_app, fake_twilio):
    # Nothing listens on port 9: every Redis connection is refused.
    app = make_app(ADMIN_SIGN_IN_FLOOR_SECONDS=0, REDIS_URL="redis://127.0.0.1:9/0")
    seed_roster(app)
    app.extensions["ivr"].store.add_admin(ADMIN, ADMIN_NAME)
    line = app.test_client()

    greeting = twiml_of(signed_post(line, "/voice", call_params(BLATHERS)))
    app.extensions["ivr"].sender.wait_idle()
    joined = signed_post(
        line, "/gather", call_params(BLATHERS, Digits=fake_twilio.code_for(BLATHERS))
    )
    assert greeting.find("Gather") is not None
    assert twiml_of(joined).find("Dial/Conference").text == "main"

    console = app.test_client()
    assert console.get("/admin/sign-in").status_code == 200
    token = csrf_token(console)
    refused = console.post("/admin/sign-in", data={"csrf_token": token, "phone": ADMIN})
    assert refused.status_code == 503
    page = refused.get_data(as_text=True)
    assert "<h1>Try again shortly</h1>" in page
    assert "Sign-in is unavailable for a moment. Please try again in a few minutes." in page
    for step, data in [("send", {"channel": "sms"}), ("code", {"code": "123456"})]:
        answer = console.post(f"/admin/sign-in/{step}", data={"csrf_token": token, **data})
        assert answer.status_code in (302, 503)
    app.extensions["ivr"].sender.wait_idle()
    assert fake_twilio.sent("message", ADMIN) == []


# -- sessions ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", CONSOLE_PAGES)
def test_console_pages_need_a_signed_in_admin(admin_app, path):
    response = admin_app.test_client().get(path)
    assert response.status_code == 302
    assert response.location == "/admin/sign-in"


def test_a_session_expires_after_admin_session_hours(admin_client, admin_app):
    assert admin_app.permanent_session_lifetime.total_seconds() == 8 * 3600
    with admin_client.session_transaction() as session:
        session["signed_in_at"] -= 8 * 3600 + 1

    response = admin_client.get("/admin/rooms")

    assert response.status_code == 302
    assert response.location == "/admin/sign-in"
    assert flashes(admin_client) == ["Your session has ended. Please sign in again."]
    with admin_client.session_transaction() as session:
        assert "admin_id" not in session


def test_signing_out_ends_the_session_even_for_a_copied_cookie(admin_client, admin_app):
    with admin_client.session_transaction() as session:
        copied = dict(session)

    response = post_form(admin_client, "/admin/sign-out")

    assert response.status_code == 302
    assert response.location == "/admin/sign-in"
    assert admin_client.get("/admin/").status_code == 302
    thief = admin_app.test_client()
    with thief.session_transaction() as session:
        session.update(copied)
    assert thief.get("/admin/").status_code == 302


def test_a_removed_admin_is_signed_out_at_once(admin_client, admin_app):
    admin_app.extensions["ivr"].store.remove_admin(ADMIN)
    assert admin_client.get("/admin/").status_code == 302


# -- CSRF --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/admin/rooms/new", {"name": "board"}),
        ("/admin/rooms/1", {"phone": "+18005556789", "name": "Tommy", "role": "participant"}),
        ("/admin/rooms/1/delete", {}),
        (f"/admin/rooms/1/participants/{BLATHERS}/remove", {}),
        (f"/admin/rooms/1/participants/{BLATHERS}/edit", {"phone": BLATHERS, "name": "X"}),
        ("/admin/participants/import/apply", {"csv_text": "+18005556789,Tommy,participant"}),
        ("/admin/lockouts/unlock", {"phone": BLATHERS, "kind": "line"}),
        ("/admin/live/CA" + "e5" * 16 + "/mute", {}),
        ("/admin/sign-out", {}),
    ],
)
@pytest.mark.parametrize("token", [None, "", "forged"])
def test_a_post_without_a_valid_csrf_token_changes_nothing(
    admin_client, admin_app, fake_twilio, path, data, token
):
    store = admin_app.extensions["ivr"].store
    lock_out(store, BLATHERS)
    before = (rows(admin_app, Room), rows(admin_app, Participant), rows(admin_app, NumberGuard))
    form = dict(data) if token is None else {**data, "csrf_token": token}

    response = admin_client.post(path, data=form)

    assert response.status_code == 400
    assert "Nothing changed." in text_of(response)
    after = (rows(admin_app, Room), rows(admin_app, Participant), rows(admin_app, NumberGuard))
    assert after == before
    assert fake_twilio.requests == []
    assert admin_client.get("/admin/").status_code == 200  # still signed in


def test_sign_in_without_a_csrf_token_sends_nothing(admin_app, fake_twilio):
    client = admin_app.test_client()
    token = csrf_token(client)
    client.post("/admin/sign-in", data={"csrf_token": token, "phone": ADMIN})

    response = client.post("/admin/sign-in/send", data={"channel": "sms"})

    assert response.status_code == 400
    assert fake_twilio.requests == []


def test_console_responses_carry_security_headers(admin_client):
    response = admin_client.get("/admin/")
    assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"


def test_assets_are_served_locally(admin_app):
    client = admin_app.test_client()
    page = text_of(client.get("/admin/sign-in"))
    assets = re.findall(r'(?:href|src)="([^"]+\.(?:css|js|svg))"', page)
    assert sorted(assets) == [
        "/admin/static/admin.css",
        "/admin/static/admin.js",
        "/admin/static/favicon.svg",
    ]
    for asset in assets:
        assert client.get(asset).status_code == 200
    assert "http://" not in page and "https://" not in page


def _intl(phone: str) -> str:
    from ivr.phones import international

    return international(phone)


def _without_tokens(page: str) -> str:
    return re.sub(r'value="[^"]*"', 'value=""', page)
