"""The call path as Twilio drives it: signed webhooks in, TwiML out, Twilio faked over HTTP."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import select, text, update
from werkzeug.datastructures import MultiDict

from ivr import twiml
from ivr.store import CallLogEntry, CallNote, CodeSend, NumberGuard, ParticipantRow, Role
from ivr.voice import STUCK_MARGIN_SECONDS
from tests.conftest import (
    BLATHERS,
    MABEL,
    MODERATOR,
    STRANGER,
    VERIFY_SID,
    call_params,
    free_port,
    lock_out,
    said,
    seed_roster,
    sign,
    signed_post,
    twiml_of,
    verbs,
)


def codes_sent(fake, phone):
    return fake.sent("message", phone) + fake.sent("verify-send", phone)


def outcomes(app) -> list[str]:
    store = app.extensions["ivr"].store
    with store.engine.connect() as connection:
        return list(connection.scalars(select(CallLogEntry.outcome).order_by(CallLogEntry.id)))


def failures(app, phone) -> int | None:
    store = app.extensions["ivr"].store
    with store.engine.connect() as connection:
        return connection.scalar(select(NumberGuard.failures).where(NumberGuard.phone == phone))


def settle(app):
    """Let codes that /voice started sending finish, so what Twilio was asked is all there."""
    app.extensions["ivr"].sender.wait_idle()


def dial_in(client, caller, **params):
    """Answer a call at /voice, then let its code finish sending, as a caller reading it would."""
    root = twiml_of(signed_post(client, "/voice", call_params(caller, **params)))
    settle(client.application)
    return root


def enter(client, caller, digits, **params):
    return twiml_of(signed_post(client, "/gather", call_params(caller, Digits=digits, **params)))


def new_call(number: int) -> str:
    """Return the CallSid of another call."""
    return f"CA{number:032d}"


def wrong_code_for(fake, phone) -> str:
    return f"{(int(fake.code_for(phone)) + 1) % 10**6:06d}"


def assert_goodbye(root, message):
    assert verbs(root) == ["Say", "Hangup"]
    assert said(root) == [message]


# -- signatures ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/voice", "/gather", "/conference/events", "/call-status"])
@pytest.mark.parametrize("signature", [None, "", "bm90IGEgc2lnbmF0dXJl"])
def test_unsigned_or_badly_signed_requests_get_403_and_change_nothing(
    builtin_app, fake_twilio, path, signature
):
    client = builtin_app.test_client()
    headers = {} if signature is None else {"X-Twilio-Signature": signature}
    params = call_params(BLATHERS, Digits="123456", StatusCallbackEvent="participant-join")

    response = client.post(path, data=params, headers=headers)
    settle(builtin_app)

    assert response.status_code == 403
    assert fake_twilio.requests == []
    assert outcomes(builtin_app) == []


def test_signature_made_with_another_token_is_refused(builtin_app, fake_twilio):
    response = signed_post(
        builtin_app.test_client(), "/voice", call_params(BLATHERS), token="someone-else"
    )
    settle(builtin_app)
    assert response.status_code == 403
    assert fake_twilio.requests == []


def test_tampered_parameters_are_refused(builtin_app, fake_twilio):
    client = builtin_app.test_client()
    params = call_params(STRANGER)
    headers = {"X-Twilio-Signature": signed_headers_for(params)}
    params["From"] = BLATHERS  # an attacker swaps the caller after Twilio signed

    assert client.post("/voice", data=params, headers=headers).status_code == 403
    settle(builtin_app)
    assert fake_twilio.requests == []


@pytest.mark.parametrize("tampered", [False, True])
def test_every_value_of_a_repeated_field_is_signed(builtin_app, fake_twilio, tampered):
    """A field sent twice is signed over both values, as twilio's validator reads a MultiDict."""
    fields = MultiDict(call_params(BLATHERS))
    fields.setlist("StirPassport", ["first", "second"])
    headers = {"X-Twilio-Signature": sign("http://localhost/voice", fields)}
    if tampered:
        fields.setlist("StirPassport", ["first", "forged"])

    response = builtin_app.test_client().post("/voice", data=fields, headers=headers)
    settle(builtin_app)

    if tampered:
        assert response.status_code == 403
        assert fake_twilio.requests == []
    else:
        assert verbs(twiml_of(response)) == ["Gather", "Redirect"]
        assert len(fake_twilio.sent("message", BLATHERS)) == 1


def signed_headers_for(params):
    from tests.conftest import sign

    return sign("http://localhost/voice", params)


def test_signature_over_the_url_with_its_default_port_is_accepted(builtin_app, fake_twilio):
    root = twiml_of(
        signed_post(
            builtin_app.test_client(), "/voice", call_params(BLATHERS), base="http://localhost:80"
        )
    )
    assert verbs(root) == ["Gather", "Redirect"]


@pytest.mark.parametrize("signed_base", ["http://localhost:8080", "http://localhost"])
def test_a_request_to_a_port_is_accepted_signed_with_or_without_it(
    builtin_app, fake_twilio, signed_base
):
    """Twilio's library accepts either spelling; the line compares the one asked for first."""
    params = call_params(BLATHERS)
    headers = {"X-Twilio-Signature": sign(signed_base + "/voice", params)}
    client = builtin_app.test_client()

    response = client.post("/voice", data=params, headers=headers, base_url="http://localhost:8080")
    settle(builtin_app)

    assert verbs(twiml_of(response)) == ["Gather", "Redirect"]
    assert len(fake_twilio.sent("message", BLATHERS)) == 1


@pytest.mark.parametrize("signed_url", ["http://localhost:8081/voice", "http://localhost/gather"])
def test_a_request_to_a_port_signed_for_another_url_is_refused(
    builtin_app, fake_twilio, signed_url
):
    params = call_params(BLATHERS)
    headers = {"X-Twilio-Signature": sign(signed_url, params)}
    client = builtin_app.test_client()

    response = client.post("/voice", data=params, headers=headers, base_url="http://localhost:8080")
    settle(builtin_app)

    assert response.status_code == 403
    assert fake_twilio.requests == []
    assert outcomes(builtin_app) == []


def test_behind_a_proxy_signatures_are_checked_against_public_base_url(make_app, fake_twilio):
    app = make_app(PUBLIC_BASE_URL="https://line.example.com/")
    seed_roster(app)
    client = app.test_client()

    direct = signed_post(client, "/voice", call_params(BLATHERS))
    settle(app)
    assert direct.status_code == 403
    assert fake_twilio.requests == []

    root = twiml_of(
        signed_post(client, "/voice", call_params(BLATHERS), base="https://line.example.com")
    )
    settle(app)
    assert verbs(root) == ["Gather", "Redirect"]
    assert len(fake_twilio.sent("message", BLATHERS)) == 1

    # The query string is part of what Twilio signs.
    response = signed_post(
        client, "/gather?reprompt=2", call_params(BLATHERS), base="https://line.example.com"
    )
    assert twiml_of(response).find("Gather") is not None


# -- who may call ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("caller_id", "message", "outcome"),
    [
        ("+266696687", twiml.WITHHELD, "withheld number"),
        ("Anonymous", twiml.WITHHELD, "withheld number"),
        ("Restricted", twiml.WITHHELD, "withheld number"),
        ("", twiml.WITHHELD, "withheld number"),
        ("client:alice", twiml.INVALID_NUMBER, "invalid number"),
        ("sip:alice@example.com", twiml.INVALID_NUMBER, "invalid number"),
        ("+1555", twiml.INVALID_NUMBER, "invalid number"),
        ("8005559876", twiml.INVALID_NUMBER, "invalid number"),
        # Spelled as E.164, looked up as such, then found to be no number at all.
        ("+15550100000", twiml.INVALID_NUMBER, "invalid number"),
        ("+99912345678", twiml.INVALID_NUMBER, "invalid number"),
    ],
)
def test_withheld_and_invalid_caller_ids_are_refused_without_a_code(
    app, client, fake_twilio, caller_id, message, outcome
):
    root = dial_in(client, caller_id)

    assert_goodbye(root, message)
    assert fake_twilio.requests == []
    assert outcomes(app) == [outcome]


@pytest.mark.parametrize("path", ["/gather", "/gather?reprompt=3"])
@pytest.mark.parametrize("caller_id", ["+15550100000", "+99912345678"])
def test_a_gather_without_digits_from_no_number_is_refused(app, client, path, caller_id):
    """Spelled as E.164 but no number: refused, with or without a look-up before."""
    root = twiml_of(signed_post(client, path, call_params(caller_id)))

    assert_goodbye(root, twiml.INVALID_NUMBER)
    assert outcomes(app) == ["invalid number"]


# A UK number as a carrier may pass it: E.164's spelling, with the national trunk 0 kept.
UK_PARTICIPANT = "+442079460000"
UK_WITH_TRUNK_ZERO = "+4402079460000"


@pytest.mark.parametrize("with_token", [False, True])
def test_a_caller_id_spelled_otherwise_still_finds_the_participant(
    app, client, fake_twilio, with_token
):
    """The line looks a caller up as Twilio spells the number, and parses it only if no one
    has it: a participant is found either way, and their code check is claimed and settled."""
    app.extensions["ivr"].store.import_participants(
        [ParticipantRow(UK_PARTICIPANT, "Gulliver", Role.PARTICIPANT)]
    )
    root = dial_in(client, UK_WITH_TRUNK_ZERO)
    assert verbs(root) == ["Gather", "Redirect"]
    code = fake_twilio.code_for(UK_PARTICIPANT)

    if with_token:
        root = enter_as_twilio(client, UK_WITH_TRUNK_ZERO, code, "uk-token")
    else:
        root = enter(client, UK_WITH_TRUNK_ZERO, code)

    assert root.find("Dial/Conference") is not None
    assert outcomes(app) == ["code sent", "joined as participant"]
    with app.extensions["ivr"].store.engine.connect() as connection:
        logged = set(connection.scalars(select(CallLogEntry.phone)))
    assert logged == {UK_PARTICIPANT}
    assert (failures(app, UK_PARTICIPANT) or 0, checking(app, UK_PARTICIPANT) or 0) == (0, 0)
    assert checking(app, UK_WITH_TRUNK_ZERO) is None


def test_a_stranger_hears_they_are_not_recognized_and_nothing_is_sent(app, client, fake_twilio):
    root = dial_in(client, STRANGER)

    assert_goodbye(root, "Sorry, I don't recognize the number you're calling from.")
    assert fake_twilio.requests == []
    assert outcomes(app) == ["unknown number"]


def test_a_participant_is_welcomed_and_sent_one_code(app, client, fake_twilio, provider):
    root = dial_in(client, BLATHERS)

    assert verbs(root) == ["Gather", "Redirect"]
    gather = root.find("Gather")
    assert gather.attrib == {
        "numDigits": "6",
        "action": "/gather",
        "method": "POST",
        "timeout": "10",
        "language": "en-US",
    }
    assert said(gather) == ["Welcome Blathers. Please enter the 6 digit code sent to your device."]
    assert root.find("Redirect").text == "/gather?reprompt=1"
    assert root.find("Redirect").attrib == {"method": "POST"}

    if provider == "verify":
        [send] = fake_twilio.sent("verify-send")
        assert send == {"To": BLATHERS, "Channel": "sms", "Locale": "en"}
        assert fake_twilio.sent("message") == []
    else:
        [message] = fake_twilio.sent("message")
        assert message["To"] == BLATHERS
        assert message["From"] == "+18005550100"
        assert message["Body"] == f"Your code is {fake_twilio.code_for(BLATHERS)}"
    assert outcomes(app) == ["code sent"]


def test_no_input_reprompts_three_times_without_sending_again(app, client, fake_twilio):
    dial_in(client, BLATHERS)

    for reprompt in (1, 2, 3):
        response = signed_post(client, f"/gather?reprompt={reprompt}", call_params(BLATHERS))
        root = twiml_of(response)
        assert verbs(root) == ["Gather", "Redirect"]
        assert said(root) == [
            "I didn't receive any digits. Please enter the 6 digit code sent to your device."
        ]
        assert root.find("Gather").get("action") == "/gather"
        assert root.find("Redirect").text == f"/gather?reprompt={reprompt + 1}"

    root = twiml_of(signed_post(client, "/gather?reprompt=4", call_params(BLATHERS)))
    assert_goodbye(root, "I didn't receive a code. Goodbye.")
    assert len(codes_sent(fake_twilio, BLATHERS)) == 1
    assert outcomes(app) == ["code sent", "no input"]
    [last] = app.extensions["ivr"].store.call_log(limit=1)
    assert (last.phone, last.name, last.room) == (BLATHERS, "Blathers", "main")


# -- codes -----------------------------------------------------------------------------------


def test_the_right_code_joins_a_participant_to_the_moderated_conference(app, client, fake_twilio):
    dial_in(client, BLATHERS)

    root = enter(client, BLATHERS, fake_twilio.code_for(BLATHERS))

    assert verbs(root) == ["Say", "Dial"]
    assert said(root) == ["That was correct. Joining conference."]
    conference = root.find("Dial/Conference")
    assert conference.text == "main"
    assert conference.attrib == {
        "startConferenceOnEnter": "false",
        "endConferenceOnExit": "false",
        "participantLabel": "Blathers",
        "statusCallback": "http://localhost/conference/events",
        "statusCallbackEvent": "start end join leave mute hold",
        "statusCallbackMethod": "POST",
    }
    assert outcomes(app) == ["code sent", "joined as participant"]


def test_the_moderator_starts_and_ends_the_conference(app, client, fake_twilio):
    dial_in(client, MODERATOR)

    root = enter(client, MODERATOR, fake_twilio.code_for(MODERATOR))

    conference = root.find("Dial/Conference")
    assert conference.get("startConferenceOnEnter") == "true"
    assert conference.get("endConferenceOnExit") == "true"
    assert conference.get("participantLabel") == "Isabelle"
    assert outcomes(app) == ["code sent", "joined as moderator"]


def test_a_wrong_code_counts_and_asks_again_without_a_new_code(app, client, fake_twilio):
    dial_in(client, BLATHERS)

    root = enter(client, BLATHERS, wrong_code_for(fake_twilio, BLATHERS))

    assert verbs(root) == ["Gather", "Redirect"]
    assert said(root) == ["That code was incorrect. Please try again."]
    assert root.find("Gather").get("numDigits") == "6"
    assert root.find("Redirect").text == "/gather?reprompt=1"
    assert failures(app, BLATHERS) == 1
    assert len(codes_sent(fake_twilio, BLATHERS)) == 1
    assert outcomes(app) == ["code sent", "wrong code"]


@pytest.mark.parametrize("digits", ["", "12345", "1234567", "12345a", "12 345", "١٢٣٤٥٦"])
def test_malformed_entries_count_as_failures_without_asking_the_provider(
    app, client, fake_twilio, digits
):
    dial_in(client, BLATHERS)

    root = enter(client, BLATHERS, digits)

    assert said(root) == ["That code was incorrect. Please try again."]
    assert failures(app, BLATHERS) == 1
    assert fake_twilio.sent("verify-check") == []


def test_three_failures_lock_the_number_across_new_codes(app, client, fake_twilio):
    dial_in(client, BLATHERS)
    enter(client, BLATHERS, wrong_code_for(fake_twilio, BLATHERS))
    enter(client, BLATHERS, "000")
    # A new call and a new code do not reset the count.
    dial_in(client, BLATHERS, call_sid=new_call(2))
    root = enter(client, BLATHERS, wrong_code_for(fake_twilio, BLATHERS), call_sid=new_call(2))

    assert_goodbye(
        root,
        "Too many incorrect codes. This number is locked for 10 minutes. "
        "Please try again later. Goodbye.",
    )
    # Locked: the right code no longer helps, and no further code is sent.
    root = enter(client, BLATHERS, fake_twilio.code_for(BLATHERS))
    assert said(root)[0].startswith("Too many incorrect codes.")
    before = len(codes_sent(fake_twilio, BLATHERS))
    root = dial_in(client, BLATHERS)
    assert_goodbye(
        root,
        "Too many incorrect codes. This number is locked for 10 minutes. "
        "Please try again later. Goodbye.",
    )
    assert len(codes_sent(fake_twilio, BLATHERS)) == before
    assert outcomes(app)[-3:] == ["locked out", "locked out", "locked out"]
    # Other callers are not affected.
    assert verbs(dial_in(client, MABEL)) == ["Gather", "Redirect"]


def test_a_success_clears_the_failure_count(app, client, fake_twilio):
    dial_in(client, BLATHERS)
    enter(client, BLATHERS, wrong_code_for(fake_twilio, BLATHERS))
    enter(client, BLATHERS, wrong_code_for(fake_twilio, BLATHERS))
    enter(client, BLATHERS, fake_twilio.code_for(BLATHERS))
    assert failures(app, BLATHERS) == 0

    dial_in(client, BLATHERS, call_sid=new_call(2))
    enter(client, BLATHERS, wrong_code_for(fake_twilio, BLATHERS), call_sid=new_call(2))
    root = enter(client, BLATHERS, wrong_code_for(fake_twilio, BLATHERS), call_sid=new_call(2))
    assert said(root) == ["That code was incorrect. Please try again."]


def test_a_code_is_good_only_once(app, client, fake_twilio):
    dial_in(client, BLATHERS)
    code = fake_twilio.code_for(BLATHERS)
    assert enter(client, BLATHERS, code).find("Dial") is not None

    root = enter(client, BLATHERS, code)

    assert_goodbye(root, twiml.EXPIRED_CODE)
    assert failures(app, BLATHERS) == 1


def test_a_builtin_code_expires(make_app, fake_twilio):
    app = make_app(OTP_TTL_SECONDS=1)
    seed_roster(app)
    client = app.test_client()
    dial_in(client, BLATHERS)
    time.sleep(1.2)

    root = enter(client, BLATHERS, fake_twilio.code_for(BLATHERS))

    assert_goodbye(root, twiml.EXPIRED_CODE)
    assert outcomes(app) == ["code sent", "expired code"]


def test_a_builtin_code_is_stored_only_as_a_hash(builtin_app, fake_twilio):
    dial_in(builtin_app.test_client(), BLATHERS)
    code = fake_twilio.code_for(BLATHERS)
    store = builtin_app.extensions["ivr"].store
    with store.engine.connect() as connection:
        rows = [
            tuple(map(str, row)) for row in connection.execute(text("SELECT * FROM one_time_codes"))
        ]
    assert len(rows) == 1
    assert all(code not in cell for cell in rows[0])


def test_a_code_for_one_number_does_not_work_for_another(app, client, fake_twilio):
    dial_in(client, BLATHERS)
    dial_in(client, MABEL)

    root = enter(client, MABEL, fake_twilio.code_for(BLATHERS))

    assert root.find("Dial") is None
    assert failures(app, MABEL) == 1


def test_at_most_five_codes_an_hour_per_number(app, client, fake_twilio):
    for number in range(5):
        assert verbs(dial_in(client, BLATHERS, call_sid=new_call(number))) == ["Gather", "Redirect"]

    root = dial_in(client, BLATHERS, call_sid=new_call(5))

    assert_goodbye(root, twiml.SEND_LIMIT)
    assert len(codes_sent(fake_twilio, BLATHERS)) == 5
    assert outcomes(app)[-1] == "send limit reached"
    assert verbs(dial_in(client, MABEL)) == ["Gather", "Redirect"]


def test_a_participant_removed_mid_call_cannot_enter_their_code(app, client, fake_twilio):
    dial_in(client, BLATHERS)
    app.extensions["ivr"].store.remove_participant(BLATHERS)

    root = enter(client, BLATHERS, fake_twilio.code_for(BLATHERS))

    assert_goodbye(root, "Sorry, I don't recognize the number you're calling from.")


# -- provider faults -------------------------------------------------------------------------


def assert_heard_at_the_next_webhook(app, message, *, counted=0):
    """After a failed send: the code prompt and the no-input re-prompt both say what went wrong.

    Whether the digits come with Twilio's idempotency token (the check is then claimed with the
    caller's look-up, and given back) or without: no check is counted or left in flight."""
    client = app.test_client()
    assert_goodbye(enter(client, BLATHERS, "123456"), message)
    assert_goodbye(enter_as_twilio(client, BLATHERS, "123456", "unsent-token"), message)
    reprompt = signed_post(client, "/gather?reprompt=1", call_params(BLATHERS))
    assert_goodbye(twiml_of(reprompt), message)
    assert (failures(app, BLATHERS) or 0) == counted
    assert (checking(app, BLATHERS) or 0) == 0


def enter_as_twilio(client, caller, digits, token):
    """POST digits to /gather with I-Twilio-Idempotency-Token, as Twilio's requests have."""
    params = call_params(caller, Digits=digits)
    headers = {"X-Twilio-Signature": sign("http://localhost/gather", params)}
    headers["I-Twilio-Idempotency-Token"] = token
    return twiml_of(client.post("/gather", data=params, headers=headers))


def checking(app, phone) -> int | None:
    """How many of the number's claimed code checks are still in flight."""
    store = app.extensions["ivr"].store
    with store.engine.connect() as connection:
        return connection.scalar(select(NumberGuard.checking).where(NumberGuard.phone == phone))


def test_a_locked_number_entering_digits_with_a_token_claims_nothing(app, client, fake_twilio):
    dial_in(client, BLATHERS)
    lock_out(app.extensions["ivr"].store, BLATHERS)

    root = enter_as_twilio(client, BLATHERS, fake_twilio.code_for(BLATHERS), "locked-token")

    assert "Too many incorrect codes." in " ".join(say.text for say in root.iter("Say"))
    assert (failures(app, BLATHERS), checking(app, BLATHERS)) == (0, 0)
    assert fake_twilio.sent("verify-check") == []


@pytest.mark.parametrize(("status", "code"), [(500, 20500), (400, 21610), (429, 20429)])
def test_a_failed_text_is_heard_at_the_next_webhook(builtin_app, fake_twilio, status, code):
    fake_twilio.fail("message", status, code)

    root = dial_in(builtin_app.test_client(), BLATHERS)

    assert verbs(root) == ["Gather", "Redirect"]
    assert_heard_at_the_next_webhook(builtin_app, twiml.PROVIDER_FAULT)
    assert outcomes(builtin_app) == ["provider error"]


@pytest.fixture
def verify_app(make_app):
    app = make_app(VERIFY_SERVICE_SID=VERIFY_SID)
    seed_roster(app)
    return app


@pytest.mark.parametrize(("status", "code"), [(500, 20500), (503, 20503), (429, 20429)])
def test_a_failed_verify_send_is_heard_at_the_next_webhook(verify_app, fake_twilio, status, code):
    fake_twilio.fail("verify-send", status, code)

    dial_in(verify_app.test_client(), BLATHERS)

    assert_heard_at_the_next_webhook(verify_app, twiml.PROVIDER_FAULT)
    assert fake_twilio.sent("verify-check") == []
    assert outcomes(verify_app) == ["provider error"]


def test_verify_too_many_sends_is_a_send_limit_not_a_fault(verify_app, fake_twilio):
    fake_twilio.fail("verify-send", 429, 60203, "Max send attempts reached")

    dial_in(verify_app.test_client(), BLATHERS)

    assert_heard_at_the_next_webhook(verify_app, twiml.SEND_LIMIT)
    assert outcomes(verify_app) == ["send limit reached"]


def test_a_failed_send_on_another_call_does_not_matter(verify_app, fake_twilio):
    client = verify_app.test_client()
    fake_twilio.fail("verify-send", 500, 20500)
    dial_in(client, BLATHERS, call_sid="CA" + "01" * 16)

    dial_in(client, BLATHERS, call_sid="CA" + "02" * 16)
    params = call_params(BLATHERS, call_sid="CA" + "02" * 16, Digits=fake_twilio.code_for(BLATHERS))
    root = twiml_of(signed_post(client, "/gather", params))

    assert root.find("Dial/Conference") is not None


def test_verify_404_on_check_means_expired(verify_app, fake_twilio):
    client = verify_app.test_client()
    dial_in(client, BLATHERS)
    fake_twilio.verifications.clear()  # Verify forgot it: expired after ten minutes

    root = enter(client, BLATHERS, "123456")

    assert_goodbye(root, twiml.EXPIRED_CODE)
    assert failures(verify_app, BLATHERS) == 1


def test_verify_too_many_checks_means_expired(verify_app, fake_twilio):
    client = verify_app.test_client()
    dial_in(client, BLATHERS)
    fake_twilio.fail("verify-check", 429, 60202, "Max check attempts reached")

    root = enter(client, BLATHERS, fake_twilio.code_for(BLATHERS))

    assert_goodbye(root, twiml.EXPIRED_CODE)


def test_verify_check_fault_is_spoken_and_not_counted(verify_app, fake_twilio):
    client = verify_app.test_client()
    dial_in(client, BLATHERS)
    fake_twilio.fail("verify-check", 500, 20500)

    root = enter(client, BLATHERS, fake_twilio.code_for(BLATHERS))

    assert_goodbye(root, twiml.PROVIDER_FAULT)
    assert failures(verify_app, BLATHERS) == 0


def slow_app(make_app, provider):
    overrides = {"VERIFY_SERVICE_SID": VERIFY_SID} if provider == "verify" else {}
    app = make_app(TWILIO_TIMEOUT_SECONDS=0.5, **overrides)
    seed_roster(app)
    return app


def test_a_slow_send_does_not_hold_the_greeting(make_app, fake_twilio, provider):
    app = slow_app(make_app, provider)
    fake_twilio.latency = 3
    client = app.test_client()

    started = time.monotonic()
    root = twiml_of(signed_post(client, "/voice", call_params(BLATHERS)))
    answered = time.monotonic() - started
    app.extensions["ivr"].sender.wait_idle()
    cut_off = time.monotonic() - started

    assert verbs(root) == ["Gather", "Redirect"]
    assert answered < 1.5  # the provider takes 3 s: the greeting did not wait for it
    assert cut_off < 3
    assert_heard_at_the_next_webhook(app, twiml.PROVIDER_FAULT)


def test_a_slow_verify_check_is_cut_off_well_inside_twilios_limit(make_app, fake_twilio):
    app = slow_app(make_app, "verify")
    client = app.test_client()
    dial_in(client, BLATHERS)
    fake_twilio.latency = 3

    started = time.monotonic()
    root = enter(client, BLATHERS, fake_twilio.code_for(BLATHERS))

    assert time.monotonic() - started < 3
    assert_goodbye(root, twiml.PROVIDER_FAULT)


def test_an_unreachable_provider_is_spoken(make_app, provider):
    overrides = {"VERIFY_SERVICE_SID": VERIFY_SID} if provider == "verify" else {}
    app = make_app(TWILIO_API_URL=f"http://127.0.0.1:{free_port()}", **overrides)
    seed_roster(app)

    dial_in(app.test_client(), BLATHERS)

    assert_heard_at_the_next_webhook(app, twiml.PROVIDER_FAULT)
    assert outcomes(app) == ["provider error"]


def test_an_unexpected_fault_is_spoken_never_a_500(builtin_app, fake_twilio):
    store = builtin_app.extensions["ivr"].store
    with store.engine.begin() as connection:
        # Enrolments point at participants; PostgreSQL refuses to drop a table others reference.
        connection.execute(text("DROP TABLE enrolments"))
        connection.execute(text("DROP TABLE participants"))

    root = dial_in(builtin_app.test_client(), BLATHERS)

    assert_goodbye(root, twiml.APPLICATION_FAULT)
    assert fake_twilio.requests == []


def test_codes_never_reach_the_logs_or_the_call_log(app, client, fake_twilio, caplog):
    caplog.set_level(logging.DEBUG)
    dial_in(client, BLATHERS)
    code = fake_twilio.code_for(BLATHERS)
    enter(client, BLATHERS, wrong_code_for(fake_twilio, BLATHERS))
    enter(client, BLATHERS, code)

    assert caplog.records, "the twilio library logs its requests at DEBUG/INFO"
    assert all(code not in record.getMessage() for record in caplog.records)
    store = app.extensions["ivr"].store
    with store.engine.connect() as connection:
        rows = connection.execute(text("SELECT * FROM call_log")).all()
    assert all(code not in str(cell) for row in rows for cell in row)


# -- conference events and health ------------------------------------------------------------


def test_conference_events_are_recorded(builtin_app):
    client = builtin_app.test_client()
    base = {"ConferenceSid": "CF" + "d4" * 16, "FriendlyName": "main", "AccountSid": "AC"}
    for event in (
        "conference-start",
        "participant-join",
        "participant-mute",
        "participant-leave",
        "conference-end",
    ):
        params = {
            **base,
            "StatusCallbackEvent": event,
            "CallSid": "CA1",
            "ParticipantLabel": "Blathers",
        }
        root = twiml_of(signed_post(client, "/conference/events", params))
        assert list(root) == []

    assert outcomes(builtin_app) == [
        "conference started",
        "entered conference",
        "left conference",
        "conference ended",
    ]


def test_healthz(builtin_app):
    response = builtin_app.test_client().get("/healthz")
    assert response.status_code == 200
    assert response.data == b"ok\n"


# -- more than one instance ------------------------------------------------------------------


def test_a_lockout_earned_on_one_instance_holds_on_another(make_app, fake_twilio):
    first, second = make_app(), make_app()
    seed_roster(first)
    one, two = first.test_client(), second.test_client()

    dial_in(one, BLATHERS)
    enter(one, BLATHERS, wrong_code_for(fake_twilio, BLATHERS))
    enter(two, BLATHERS, wrong_code_for(fake_twilio, BLATHERS))
    root = enter(one, BLATHERS, wrong_code_for(fake_twilio, BLATHERS))
    assert said(root)[0].startswith("Too many incorrect codes.")

    root = dial_in(two, BLATHERS)
    assert said(root)[0].startswith("Too many incorrect codes.")
    root = enter(two, BLATHERS, fake_twilio.code_for(BLATHERS))
    assert said(root)[0].startswith("Too many incorrect codes.")


def test_the_send_cap_holds_across_instances(make_app, fake_twilio):
    first, second = make_app(), make_app()
    seed_roster(first)
    clients = [first.test_client(), second.test_client()]

    for number in range(5):
        root = dial_in(clients[number % 2], BLATHERS, call_sid=new_call(number))
        assert verbs(root) == ["Gather", "Redirect"]
    assert_goodbye(dial_in(clients[1], BLATHERS, call_sid=new_call(5)), twiml.SEND_LIMIT)
    assert_goodbye(dial_in(clients[0], BLATHERS, call_sid=new_call(6)), twiml.SEND_LIMIT)
    assert len(fake_twilio.sent("message", BLATHERS)) == 5


# -- call status -----------------------------------------------------------------------------


def hang_up(client, caller, status="completed"):
    return twiml_of(signed_post(client, "/call-status", call_params(caller, CallStatus=status)))


def test_hanging_up_at_the_code_prompt_is_logged(app, client, fake_twilio):
    dial_in(client, BLATHERS)
    enter(client, BLATHERS, wrong_code_for(fake_twilio, BLATHERS))

    assert list(hang_up(client, BLATHERS)) == []

    assert outcomes(app) == ["code sent", "wrong code", "hung up"]
    store = app.extensions["ivr"].store
    [last] = store.call_log(limit=1)
    assert (last.phone, last.name, last.room) == (BLATHERS, "Blathers", "main")


@pytest.mark.parametrize("caller", [STRANGER, "Anonymous"])
def test_a_refused_call_ending_is_not_a_hang_up(app, client, caller):
    dial_in(client, caller)
    hang_up(client, caller)
    assert "hung up" not in outcomes(app)


def test_a_call_that_joined_is_not_a_hang_up(app, client, fake_twilio):
    dial_in(client, BLATHERS)
    enter(client, BLATHERS, fake_twilio.code_for(BLATHERS))
    hang_up(client, BLATHERS)
    assert outcomes(app) == ["code sent", "joined as participant"]


def test_an_unfinished_call_status_is_not_a_hang_up(app, client):
    dial_in(client, BLATHERS)
    hang_up(client, BLATHERS, status="in-progress")
    assert outcomes(app) == ["code sent"]


def test_behind_a_trusted_proxy_the_forwarded_url_is_the_signed_one(make_app):
    app = make_app(PROXY_HOPS=1)
    seed_roster(app)
    client = app.test_client()
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "line.example.com"}
    params = call_params(BLATHERS)

    from tests.conftest import sign

    good = sign("https://line.example.com/voice", params)
    response = client.post("/voice", data=params, headers={**forwarded, "X-Twilio-Signature": good})
    assert verbs(twiml_of(response)) == ["Gather", "Redirect"]

    # Without PROXY_HOPS the same headers are not believed.
    plain = make_app().test_client()
    refused = plain.post("/voice", data=params, headers={**forwarded, "X-Twilio-Signature": good})
    assert refused.status_code == 403


@pytest.mark.parametrize("token", [None, "gather-token"])
@pytest.mark.parametrize(
    ("namesake_room", "label"), [("main", "Blathers (9876)"), ("board", "Blathers")]
)
def test_a_second_caller_with_the_same_name_gets_a_label_twilio_accepts(
    app, client, fake_twilio, token, namesake_room, label
):
    """With Twilio's idempotency token the live labels are read with the caller, as the
    webhook is claimed; without one, by the view. Either way the label is unique in the
    caller's conference, and a namesake in another room's changes nothing."""
    store = app.extensions["ivr"].store
    store.member_joined("CF" + "d4" * 16, namesake_room, "CA" + "99" * 16, "Blathers", False)
    store.member_joined("CF" + "e5" * 16, "main", "CA" + "98" * 16, "Mabel", False)
    dial_in(client, BLATHERS)
    params = call_params(BLATHERS, Digits=fake_twilio.code_for(BLATHERS))
    headers = {"X-Twilio-Signature": sign("http://localhost/gather", params)}
    if token:
        headers["I-Twilio-Idempotency-Token"] = token

    root = twiml_of(client.post("/gather", data=params, headers=headers))

    assert root.find("Dial/Conference").get("participantLabel") == label


def test_under_a_path_prefix_the_gather_urls_keep_it(make_app, fake_twilio):
    app = make_app(PUBLIC_BASE_URL="https://example.com/line")
    seed_roster(app)
    client = app.test_client()
    params = call_params(BLATHERS)
    from tests.conftest import sign

    response = client.post(
        "/voice",
        data=params,
        headers={"X-Twilio-Signature": sign("https://example.com/line/voice", params)},
    )

    root = twiml_of(response)
    assert root.find("Gather").get("action") == "/line/gather"
    assert root.find("Redirect").text == "/line/gather?reprompt=1"


def test_an_unexpected_fault_is_logged_as_an_application_error(builtin_app):
    client = builtin_app.test_client()
    dial_in(client, BLATHERS)
    store = builtin_app.extensions["ivr"].store
    with store.engine.begin() as connection:
        connection.execute(text("DROP TABLE one_time_codes"))

    root = enter(client, BLATHERS, "123456")

    assert_goodbye(root, twiml.APPLICATION_FAULT)
    assert outcomes(builtin_app)[-1] == "application error"


def test_voice_asked_again_for_the_same_call_sends_no_second_code(app, client, fake_twilio):
    dial_in(client, BLATHERS)

    root = dial_in(client, BLATHERS)

    assert verbs(root) == ["Gather", "Redirect"]
    assert len(codes_sent(fake_twilio, BLATHERS)) == 1
    assert outcomes(app) == ["code sent"]
    # A new call from the same number is a new call: it gets its own code.
    dial_in(client, BLATHERS, call_sid="CA" + "07" * 16)
    assert len(codes_sent(fake_twilio, BLATHERS)) == 2


# -- a code stuck in "sending" -----------------------------------------------------------------


def age_sends(app, seconds: float) -> None:
    """Move every code send `seconds` into the past, as if the call had waited that long."""
    store = app.extensions["ivr"].store
    with store.engine.begin() as connection:
        connection.execute(
            update(CodeSend).values(sent_at=CodeSend.sent_at - timedelta(seconds=seconds))
        )


def stuck_age(app) -> float:
    return app.config["TWILIO_TIMEOUT_SECONDS"] + STUCK_MARGIN_SECONDS + 1


@pytest.mark.parametrize("step", ["digits", "no input"])
def test_a_send_whose_sender_died_gets_the_apology_not_a_wait(app, client, fake_twilio, step):
    store = app.extensions["ivr"].store
    note = CallNote(call_params(BLATHERS)["CallSid"], BLATHERS, "Blathers", "main")
    # What /voice records before it hands the send to a sender thread - which then died.
    assert store.reserve_send(BLATHERS, 5, note) is not None
    # Not stuck yet: still within the provider's timeout, the caller is asked again.
    assert verbs(twiml_of(signed_post(client, "/gather", call_params(BLATHERS)))) == [
        "Gather",
        "Redirect",
    ]

    age_sends(app, stuck_age(app))
    extra = {"Digits": "123456"} if step == "digits" else {}
    root = twiml_of(signed_post(client, "/gather", call_params(BLATHERS, **extra)))

    assert_goodbye(root, twiml.PROVIDER_FAULT)
    assert outcomes(app) == ["provider error"]
    assert failures(app, BLATHERS) == 0  # nothing was guessed
    assert fake_twilio.requests == []
    with store.engine.connect() as connection:
        assert connection.scalars(select(CodeSend.status)).all() == ["failed"]
    # The call's next step hears the same, and the log keeps one row.
    assert_goodbye(dial_in(client, BLATHERS), twiml.PROVIDER_FAULT)
    assert outcomes(app) == ["provider error"]


def start_sends(ivr, count: int) -> None:
    """Reserve a code send for each of `count` numbers, then hand them all to the sender."""
    from ivr.sending import PendingSend

    pending = []
    for n in range(count):
        phone = f"+1202555{100 + n:04d}"
        note = CallNote(f"CA{n:032d}", phone, None, "main")
        pending.append(PendingSend(ivr.store.reserve_send(phone, 5, note), phone, note))
    for send in pending:
        ivr.sender.send(send)


def test_codes_that_go_out_together_are_all_marked_sent(app, fake_twilio):
    """A burst of sends finishing at once is marked in shared writes; none may be left out."""
    from ivr.sending import SENDER_THREADS

    SENDS = 2 * SENDER_THREADS  # noqa: N806 - two waves of sends, each finishing together
    ivr = app.extensions["ivr"]
    fake_twilio.latency = 0.05  # the sends overlap, and finish while others are being marked
    start_sends(ivr, SENDS)
    ivr.sender.wait_idle()

    assert len(fake_twilio.requests) == SENDS
    with ivr.store.engine.connect() as connection:
        assert connection.scalars(select(CodeSend.status)).all() == ["sent"] * SENDS


def test_a_group_of_sends_that_cannot_be_marked_together_is_marked_one_by_one(app, fake_twilio):
    """A write of several sends that fails (a database restart) must not leave the others
    unmarked: they would read as stuck, and their callers hear an apology instead of joining."""
    from ivr.sending import SENDER_THREADS

    ivr = app.extensions["ivr"]
    store = ivr.store

    def restart_during_groups(send_ids, writes):
        if len(writes) == 1:
            time.sleep(0.1)  # the first write is slow: the other sends finish meanwhile
        if len(send_ids) > 1:
            raise ConnectionError("the database restarted")

    writes = watch_marks(store, restart_during_groups)
    fake_twilio.latency = 0.05
    start_sends(ivr, SENDER_THREADS)
    ivr.sender.wait_idle()

    assert any(len(write) > 1 for write in writes)  # a group was tried, and failed
    with store.engine.connect() as connection:
        assert connection.scalars(select(CodeSend.status)).all() == ["sent"] * SENDER_THREADS


def watch_marks(store, step=None) -> list[list[int]]:
    """Route the store's `sends_done` through `step(send_ids, writes)`, which may sleep or
    raise before the real write; return the list of every write tried, kept as they come."""
    writes: list[list[int]] = []
    mark = store.sends_done

    def watched(send_ids):
        writes.append(list(send_ids))
        if step is not None:
            step(send_ids, writes)
        mark(send_ids)

    store.sends_done = watched
    return writes


def statuses_within(store, seconds: float, expected: list[str]) -> list[str]:
    """The sends' statuses once they are `expected`, or as they are after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        with store.engine.connect() as connection:
            found = connection.scalars(select(CodeSend.status).order_by(CodeSend.id)).all()
        if found == expected or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_marker_that_dies_leaves_its_sends_to_the_next(app, fake_twilio):
    ivr = app.extensions["ivr"]
    store = ivr.store

    def dies_once(_send_ids, writes):
        if len(writes) == 1:
            raise SystemExit("the marking thread is stopped")

    calls = watch_marks(store, dies_once)
    start_sends(ivr, 2)

    # Nobody waits for them: the timers write the marks, the second what the first dropped.
    assert statuses_within(store, 5, ["sent", "sent"]) == ["sent", "sent"]
    assert len(calls) >= 2


def test_sends_that_finish_together_are_marked_in_one_write_unasked(app, fake_twilio):
    """Sends the provider took within MARK_DONE_AFTER_SECONDS of each other share one write,
    made by a timer: the last sends of a burst are marked though no later send comes."""
    from ivr.sending import MARK_DONE_AFTER_SECONDS, SENDER_THREADS

    ivr = app.extensions["ivr"]
    store = ivr.store
    writes = watch_marks(store)
    start_sends(ivr, SENDER_THREADS)

    sent = ["sent"] * SENDER_THREADS
    assert statuses_within(store, 10 * MARK_DONE_AFTER_SECONDS + 5, sent) == sent
    assert sorted(sum(writes, [])) == sorted(range(1, SENDER_THREADS + 1))
    assert len(writes) <= 2  # a write for all of them (or two, if the first timer fired early)


def test_a_timer_that_cannot_start_leaves_the_marks_to_the_sender_itself(
    app, fake_twilio, monkeypatch
):
    """No thread for the timer (at interpreter shutdown, or none left): the sender thread
    writes the mark itself. A code that went out is never recorded as failed."""
    ivr = app.extensions["ivr"]
    refused = []

    def no_thread(timer):
        refused.append(timer)
        raise RuntimeError("can't create new thread at interpreter shutdown")

    monkeypatch.setattr(threading.Timer, "start", no_thread)
    start_sends(ivr, 2)

    assert statuses_within(ivr.store, 5, ["sent", "sent"]) == ["sent", "sent"]
    assert refused  # the timer was tried, and could not start
    assert outcomes(app) == ["code sent", "code sent"]


def test_wait_idle_waits_for_a_timers_write_in_progress(app, fake_twilio):
    """The dev phone and shutdown rely on it: once wait_idle returns, every send is marked."""
    from ivr.sending import MARK_DONE_AFTER_SECONDS

    ivr = app.extensions["ivr"]
    store = ivr.store
    writing = threading.Event()

    def slow(_send_ids, _writes):
        writing.set()
        time.sleep(0.3)  # a write queued behind others

    watch_marks(store, slow)
    start_sends(ivr, 1)
    assert writing.wait(MARK_DONE_AFTER_SECONDS + 5)  # the timer's write has begun

    ivr.sender.wait_idle()

    assert statuses_within(store, 0, ["sent"]) == ["sent"]


def test_calls_answered_inside_one_app_context_keep_apart(app, client, fake_twilio):
    """The dev phone and `flask call` post webhooks from inside an app context of their own,
    so the requests share its `g`: each must still answer its own caller."""
    with app.app_context():
        dial_in(client, BLATHERS, call_sid=new_call(1))
        dial_in(client, MABEL, call_sid=new_call(2))

    store = app.extensions["ivr"].store
    with store.engine.connect() as connection:
        rows = connection.execute(
            select(CallLogEntry.call_sid, CallLogEntry.phone).order_by(CallLogEntry.id)
        ).all()
    assert [tuple(row) for row in rows] == [(new_call(1), BLATHERS), (new_call(2), MABEL)]
    assert codes_sent(fake_twilio, MABEL)


def test_a_code_that_went_out_is_never_taken_for_stuck(app, client, fake_twilio):
    dial_in(client, BLATHERS)
    age_sends(app, stuck_age(app))

    root = enter(client, BLATHERS, fake_twilio.code_for(BLATHERS))

    assert root.find("Dial/Conference").text == "main"
    assert outcomes(app) == ["code sent", "joined as participant"]
