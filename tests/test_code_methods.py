"""Callers whose code does not come by SMS: an authenticator app (TOTP), or WhatsApp via Verify.

Signed webhooks in, TwiML out, Twilio faked over HTTP. The app's clock is set, never waited for.
"""

from __future__ import annotations

import logging
import threading

import pyotp
import pytest
import requests
from sqlalchemy import func, select

from ivr import twiml
from ivr.authenticator import STEP_SECONDS
from ivr.store import CodeBy, CodeSend, Participant, ParticipantRow, Role
from tests.conftest import (
    AUTH_TOKEN,
    BLATHERS,
    MABEL,
    SECRET_KEY,
    VERIFY_SID,
    call_params,
    enrol_app,
    said,
    seed_roster,
    serving,
    sign,
    signed_post,
    twiml_of,
    verbs,
)
from tests.test_voice import failures, outcomes

# The middle of a 30-second step, so that "one step before" is unambiguous.
NOW = 1_800_000_015.0
ASKED = "Welcome Blathers. Please enter the 6 digit code from your authenticator app."


def code_at(secret: str, seconds: float) -> str:
    """The code an authenticator app shows at `seconds`: computed by pyotp, not by the line."""
    return pyotp.TOTP(secret).at(seconds)


def new_call(number: int) -> str:
    return f"CA{number:032d}"


FIRST_CALL = new_call(1)


def voice(client, caller, call_sid=FIRST_CALL):
    return twiml_of(signed_post(client, "/voice", call_params(caller, call_sid=call_sid)))


def gather(client, caller, digits, call_sid=FIRST_CALL):
    params = call_params(caller, call_sid=call_sid, Digits=digits)
    return twiml_of(signed_post(client, "/gather", params))


def provider_requests(fake) -> list[str]:
    """Every request the line made of Twilio's code and message APIs."""
    kinds = ("message", "call", "verify-send", "verify-check")
    return [kind for kind in kinds for _ in fake.requests_of(kind)]


def assert_asked_for_code(root, message):
    assert verbs(root) == ["Gather", "Redirect"]
    gather_verb = root.find("Gather")
    assert gather_verb.attrib == {
        "action": "/gather",
        "method": "POST",
        "numDigits": "6",
        "timeout": "10",
        "language": "en-US",
    }
    assert said(root) == [message]
    redirect = root.find("Redirect")
    assert redirect.attrib == {"method": "POST"}
    return redirect.text


def assert_joined(root, room="main"):
    assert verbs(root) == ["Say", "Dial"]
    assert said(root) == [twiml.CORRECT]
    assert root.find("Dial/Conference").text == room


@pytest.fixture
def app_caller(app):
    """The tutorial's callers; Blathers has enrolled an authenticator app. Time stands at NOW."""
    secret = enrol_app(app, BLATHERS)
    app.extensions["ivr"].app_codes.clock = lambda: NOW
    return app, secret


# -- authenticator app -------------------------------------------------------------------------


def test_an_app_caller_is_asked_for_the_app_code_and_nothing_is_sent(app_caller, fake_twilio):
    app, secret = app_caller
    client = app.test_client()

    root = voice(client, BLATHERS)
    app.extensions["ivr"].sender.wait_idle()

    no_input = assert_asked_for_code(root, ASKED)
    assert no_input == "/gather?reprompt=1&by=app"
    assert outcomes(app) == ["asked for app code"]
    assert provider_requests(fake_twilio) == []
    store = app.extensions["ivr"].store
    with store.engine.connect() as connection:
        # The send cap is not touched: no send was reserved.
        assert connection.scalar(select(func.count()).select_from(CodeSend)) == 0

    joined = gather(client, BLATHERS, code_at(secret, NOW))

    assert_joined(joined)
    assert outcomes(app) == ["asked for app code", "joined as participant"]
    assert provider_requests(fake_twilio) == []


def test_an_app_code_is_good_once(app_caller, fake_twilio):
    app, secret = app_caller
    client = app.test_client()
    code = code_at(secret, NOW)
    voice(client, BLATHERS)
    assert_joined(gather(client, BLATHERS, code))

    # The same code on a second call (the caller redials, or someone overheard it).
    voice(client, BLATHERS, new_call(2))
    again = gather(client, BLATHERS, code, new_call(2))

    no_input = assert_asked_for_code(again, twiml.USED_CODE)
    assert no_input == "/gather?reprompt=1&by=app"
    assert outcomes(app)[-1] == "used code"
    assert failures(app, BLATHERS) == 1  # a replay counts toward the lockout
    # The next step's code is new, and gets in.
    assert_joined(gather(client, BLATHERS, code_at(secret, NOW + STEP_SECONDS), new_call(2)))
    assert provider_requests(fake_twilio) == []


def test_the_step_that_confirmed_the_enrolment_cannot_be_used_on_a_call(app):
    secret = enrol_app(app, BLATHERS, step=int(NOW // STEP_SECONDS))
    app.extensions["ivr"].app_codes.clock = lambda: NOW
    client = app.test_client()

    voice(client, BLATHERS)
    root = gather(client, BLATHERS, code_at(secret, NOW))

    assert said(root) == [twiml.USED_CODE]


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [
        (-2 * STEP_SECONDS, False),
        (-STEP_SECONDS, True),
        (STEP_SECONDS, True),
        (2 * STEP_SECONDS, False),
    ],
)
def test_one_step_of_clock_skew_either_way_and_no_more(app_caller, offset, accepted):
    app, secret = app_caller
    client = app.test_client()
    voice(client, BLATHERS)

    root = gather(client, BLATHERS, code_at(secret, NOW + offset))

    if accepted:
        assert_joined(root)
    else:
        assert said(root) == [twiml.WRONG_CODE]
        assert root.find("Redirect").text == "/gather?reprompt=1&by=app"
        assert outcomes(app)[-1] == "wrong code"
        assert failures(app, BLATHERS) == 1


def test_wrong_app_codes_lock_the_number_as_wrong_sms_codes_do(app_caller, fake_twilio):
    app, secret = app_caller
    client = app.test_client()
    right = code_at(secret, NOW)
    wrong = f"{(int(right) + 1) % 10**6:06d}"
    voice(client, BLATHERS)

    first, second = gather(client, BLATHERS, wrong), gather(client, BLATHERS, wrong)
    third = gather(client, BLATHERS, wrong)
    after = gather(client, BLATHERS, right)

    assert said(first) == said(second) == [twiml.WRONG_CODE]
    assert verbs(third) == verbs(after) == ["Say", "Hangup"]
    assert (
        said(third)
        == said(after)
        == [
            "Too many incorrect codes. This number is locked for 10 minutes. "
            "Please try again later. Goodbye."
        ]
    )
    assert outcomes(app)[-2:] == ["locked out", "locked out"]
    # The right code was never checked while locked: its step is still unused.
    store = app.extensions["ivr"].store
    with store.engine.connect() as connection:
        assert (
            connection.scalar(
                select(Participant.app_last_step).where(Participant.phone == BLATHERS)
            )
            == 0
        )
    assert provider_requests(fake_twilio) == []


def test_the_no_input_reprompt_asks_for_the_app_code_again(app_caller):
    app, _secret = app_caller
    client = app.test_client()

    root = twiml_of(
        signed_post(
            client, "/gather?reprompt=1&by=app", call_params(BLATHERS, call_sid=new_call(1))
        )
    )

    message = f"{twiml.NO_DIGITS} {twiml.ASK_FOR_APP_CODE}"
    assert message == (
        "I didn't receive any digits. Please enter the 6 digit code from your authenticator app."
    )
    assert assert_asked_for_code(root, message) == "/gather?reprompt=2&by=app"


def test_an_unreadable_secret_gets_the_apology_not_a_500(make_app, fake_twilio, caplog):
    enrolled_under = make_app()
    seed_roster(enrolled_under)
    secret = enrol_app(enrolled_under, BLATHERS)
    # The same database, served after SECRET_KEY was changed.
    app = make_app(tables=False, SECRET_KEY=SECRET_KEY + "-rotated")
    client = app.test_client()

    with caplog.at_level(logging.ERROR, logger="ivr.voice"):
        at_voice = voice(client, BLATHERS)
        at_gather = gather(client, BLATHERS, code_at(secret, NOW))

    for root in (at_voice, at_gather):
        assert verbs(root) == ["Say", "Hangup"]
        assert said(root) == [twiml.PROVIDER_FAULT]
    assert outcomes(app) == ["provider error", "provider error"]
    assert failures(app, BLATHERS) == 0  # the attempt went back: no code was checked
    assert any("SECRET_KEY" in record.getMessage() for record in caplog.records)
    assert secret not in caplog.text
    assert provider_requests(fake_twilio) == []


def test_one_app_code_sent_by_many_calls_at_once_lets_one_in(make_app):
    """An overheard code replayed from several lines at the same moment: one call gets in."""
    app = make_app(MAX_ATTEMPTS=100)
    seed_roster(app)
    secret = enrol_app(app, BLATHERS)
    app.extensions["ivr"].app_codes.clock = lambda: NOW
    code = code_at(secret, NOW)
    callers = 8
    barrier = threading.Barrier(callers)
    answers: list[str] = [""] * callers

    with serving(app) as base:

        def call(index: int) -> None:
            params = call_params(BLATHERS, call_sid=new_call(100 + index), Digits=code)
            headers = {"X-Twilio-Signature": sign(base + "/gather", params, AUTH_TOKEN)}
            barrier.wait()
            answers[index] = requests.post(base + "/gather", data=params, headers=headers).text

        threads = [threading.Thread(target=call, args=(i,)) for i in range(callers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)

    assert sum("<Dial>" in answer for answer in answers) == 1
    assert sum(twiml.USED_CODE in answer for answer in answers) == callers - 1
    assert sorted(outcomes(app)) == ["joined as participant"] + ["used code"] * (callers - 1)


# -- WhatsApp ----------------------------------------------------------------------------------


@pytest.fixture
def whatsapp_app(make_app):
    app = make_app(VERIFY_SERVICE_SID=VERIFY_SID)
    seed_roster(app)
    app.extensions["ivr"].store.add_participant(
        ParticipantRow(BLATHERS, "Blathers", Role.PARTICIPANT, code_by=CodeBy.WHATSAPP)
    )
    return app


def test_a_whatsapp_caller_gets_the_code_through_verify_on_whatsapp(whatsapp_app, fake_twilio):
    client = whatsapp_app.test_client()

    root = voice(client, BLATHERS)
    whatsapp_app.extensions["ivr"].sender.wait_idle()

    no_input = assert_asked_for_code(
        root, "Welcome Blathers. Please enter the 6 digit code we sent you on WhatsApp."
    )
    assert no_input == "/gather?reprompt=1&by=whatsapp"
    sends = fake_twilio.sent("verify-send", BLATHERS)
    assert [(send["To"], send["Channel"]) for send in sends] == [(BLATHERS, "whatsapp")]
    assert fake_twilio.sent("message") == []
    assert_joined(gather(client, BLATHERS, fake_twilio.code_for(BLATHERS)))
    assert outcomes(whatsapp_app) == ["code sent", "joined as participant"]
    # Others on the list still get their codes by SMS.
    voice(client, MABEL, new_call(2))
    whatsapp_app.extensions["ivr"].sender.wait_idle()
    assert [send["Channel"] for send in fake_twilio.sent("verify-send", MABEL)] == ["sms"]


def test_a_failed_whatsapp_send_gets_the_same_apology_as_a_failed_text(whatsapp_app, fake_twilio):
    client = whatsapp_app.test_client()
    fake_twilio.fail("verify-send", 500, 20500)

    voice(client, BLATHERS)
    whatsapp_app.extensions["ivr"].sender.wait_idle()
    root = gather(client, BLATHERS, "123456")

    assert verbs(root) == ["Say", "Hangup"]
    assert said(root) == [twiml.PROVIDER_FAULT]
    assert outcomes(whatsapp_app) == ["provider error"]


def test_whatsapp_callers_get_sms_when_verify_is_off(make_app, fake_twilio, caplog):
    """Set to WhatsApp while Verify was on; the line now runs on built-in codes."""
    app = make_app()
    seed_roster(app)
    with app.extensions["ivr"].store.engine.begin() as connection:
        connection.execute(
            Participant.__table__.update()
            .where(Participant.phone == BLATHERS)
            .values(code_by=CodeBy.WHATSAPP)
        )
    client = app.test_client()

    with caplog.at_level(logging.WARNING, logger="ivr.voice"):
        root = voice(client, BLATHERS)
        app.extensions["ivr"].sender.wait_idle()

    assert_asked_for_code(root, f"Welcome Blathers. {twiml.ASK_FOR_CODE}")
    assert root.find("Redirect").text == "/gather?reprompt=1"
    assert len(fake_twilio.sent("message", BLATHERS)) == 1
    assert "WhatsApp codes need VERIFY_SERVICE_SID" in caplog.text
    assert_joined(gather(client, BLATHERS, fake_twilio.code_for(BLATHERS)))
