"""Twilio sends a webhook again (same I-Twilio-Idempotency-Token) when our answer was late: the
retry gets the same answer and changes nothing further, on this instance or another."""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET

from ivr import twiml
from tests.conftest import BLATHERS, call_params, seed_roster, sign, twiml_of
from tests.test_voice import codes_sent, failures, outcomes, settle, wrong_code_for

TOKEN = "idem-" + "5" * 32


def twilio_sends(client, path: str, params: dict, token: str | None = TOKEN):
    """POST a signed webhook as Twilio does, with its idempotency token."""
    headers = {"X-Twilio-Signature": sign("http://localhost" + path, params)}
    if token is not None:
        headers["I-Twilio-Idempotency-Token"] = token
    return client.post(path, data=params, headers=headers)


def test_a_retried_voice_sends_no_second_code(app, client, fake_twilio):
    params = call_params(BLATHERS)

    first = twilio_sends(client, "/voice", params)
    again = twilio_sends(client, "/voice", params)

    settle(app)
    assert again.data == first.data
    assert twiml_of(again).find("Gather") is not None
    assert len(codes_sent(fake_twilio, BLATHERS)) == 1
    assert outcomes(app) == ["code sent"]


def test_a_retried_wrong_code_counts_once(app, client, fake_twilio):
    twilio_sends(client, "/voice", call_params(BLATHERS), token="voice-token")
    settle(app)
    params = call_params(BLATHERS, Digits=wrong_code_for(fake_twilio, BLATHERS))

    first = twilio_sends(client, "/gather", params)
    again = twilio_sends(client, "/gather", params)

    assert again.data == first.data
    assert [s.text for s in twiml_of(again).iter("Say")][0] == twiml.WRONG_CODE
    assert failures(app, BLATHERS) == 1
    assert outcomes(app) == ["code sent", "wrong code"]
    # The same digits under a new token are a new entry, and count.
    twilio_sends(client, "/gather", params, token="another-token")
    assert failures(app, BLATHERS) == 2


def test_a_retried_right_code_joins_once(app, client, fake_twilio, provider):
    twilio_sends(client, "/voice", call_params(BLATHERS), token="voice-token")
    settle(app)
    params = call_params(BLATHERS, Digits=fake_twilio.code_for(BLATHERS))

    first = twilio_sends(client, "/gather", params)
    again = twilio_sends(client, "/gather", params)

    assert again.data == first.data
    assert twiml_of(again).find("Dial/Conference").text == "main"
    assert outcomes(app) == ["code sent", "joined as participant"]
    if provider == "verify":
        assert len(fake_twilio.requests_of("verify-check")) == 1


def test_a_retried_conference_event_is_logged_once(app, client):
    params = {
        "AccountSid": call_params(BLATHERS)["AccountSid"],
        "ConferenceSid": "CF" + "1" * 32,
        "FriendlyName": "main",
        "CallSid": "CA" + "c3" * 16,
        "StatusCallbackEvent": "participant-join",
        "ParticipantLabel": "Blathers",
        "Muted": "false",
    }

    first = twilio_sends(client, "/conference/events", params)
    again = twilio_sends(client, "/conference/events", params)

    assert (first.status_code, again.status_code) == (200, 200)
    assert again.data == first.data
    assert outcomes(app) == ["entered conference"]
    live = app.extensions["ivr"].store.live_members()
    assert [member.call_sid for member in live] == [params["CallSid"]]


def test_retries_released_together_on_two_instances_act_once(make_app, fake_twilio):
    first_app, second_app = make_app(), make_app()
    seed_roster(first_app)
    twilio_sends(first_app.test_client(), "/voice", call_params(BLATHERS), token="voice-token")
    settle(first_app)
    params = call_params(BLATHERS, Digits=wrong_code_for(fake_twilio, BLATHERS))
    clients = [app.test_client() for app in [first_app, second_app] * 5]
    start = threading.Barrier(len(clients))
    answers: list[bytes] = [b""] * len(clients)

    def retry(index: int) -> None:
        start.wait()
        answers[index] = twilio_sends(clients[index], "/gather", params).data

    threads = [threading.Thread(target=retry, args=(i,)) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert len(set(answers)) == 1
    assert [s.text for s in ET.fromstring(answers[0]).iter("Say")][0] == twiml.WRONG_CODE
    assert failures(first_app, BLATHERS) == 1
    assert outcomes(first_app) == ["code sent", "wrong code"]


def test_a_right_code_whose_answer_fails_is_settled_and_its_apology_replayed(
    app, client, fake_twilio
):
    """Between the check and the join the line builds the join's answer. If that fails, the
    caller hears the apology - and the code check they won is settled as a success (no count
    left towards a lockout), and a retry of the request replays the apology."""
    from sqlalchemy import select

    from ivr.store import NumberGuard

    store = app.extensions["ivr"].store
    twilio_sends(client, "/voice", call_params(BLATHERS), token="voice-token")
    settle(app)
    wrong = call_params(BLATHERS, Digits=wrong_code_for(fake_twilio, BLATHERS))
    twilio_sends(client, "/gather", wrong, token="wrong-token")
    assert failures(app, BLATHERS) == 1
    params = call_params(BLATHERS, Digits=fake_twilio.code_for(BLATHERS))

    def broken(*args, **kwargs):
        raise ValueError("a room setting the join cannot use")

    working = twiml.join_conference_xml
    twiml.join_conference_xml = broken
    try:
        first = twilio_sends(client, "/gather", params, token="right-token")
    finally:
        twiml.join_conference_xml = working
    again = twilio_sends(client, "/gather", params, token="right-token")

    assert [s.text for s in twiml_of(first).iter("Say")] == [twiml.APPLICATION_FAULT]
    assert again.data == first.data
    with store.engine.connect() as connection:
        guard = connection.execute(
            select(NumberGuard.failures, NumberGuard.checking).where(NumberGuard.phone == BLATHERS)
        ).one()
    assert tuple(guard) == (0, 0)


def test_a_right_code_whose_live_labels_cannot_be_read_is_settled(app, client, fake_twilio):
    """Without an idempotency token the view reads the conference's live labels itself, after
    the check; if that read fails, the caller hears the apology and the check they won is
    settled as a success all the same."""
    from sqlalchemy import select

    from ivr.store import NumberGuard

    store = app.extensions["ivr"].store
    twilio_sends(client, "/voice", call_params(BLATHERS), token=None)
    settle(app)
    params = call_params(BLATHERS, Digits=fake_twilio.code_for(BLATHERS))

    def down(room):
        raise ConnectionError("the database went away")

    store.live_labels, working = down, store.live_labels
    try:
        answer = twilio_sends(client, "/gather", params, token=None)
    finally:
        store.live_labels = working

    assert answer.status_code == 200
    assert [s.text for s in twiml_of(answer).iter("Say")] == [twiml.APPLICATION_FAULT]
    with store.engine.connect() as connection:
        guard = connection.execute(
            select(NumberGuard.failures, NumberGuard.checking).where(NumberGuard.phone == BLATHERS)
        ).one()
    assert tuple(guard) == (0, 0)


def test_every_voice_answer_leaves_its_claim_committed_and_no_writer_waiting(
    app, client, fake_twilio
):
    """On SQLite /voice's claim waits open for the view's first write: whatever that is - the
    reservation, the kept answer of a repeated /voice, a call log row - it commits the claim,
    and the process's other writers go on at once."""
    store = app.extensions["ivr"].store
    answers = [
        twilio_sends(client, "/voice", call_params(BLATHERS), token="reserves"),
        twilio_sends(client, "/voice", call_params(BLATHERS), token="asks-again"),
        twilio_sends(client, "/voice", call_params("+18005550199"), token="stranger"),
    ]
    settle(app)

    assert [response.status_code for response in answers] == [200, 200, 200]
    for response, token in zip(answers, ["reserves", "asks-again", "stranger"], strict=True):
        assert store.answer_of(token) == response.get_data(as_text=True)
    writer = threading.Thread(target=store.claim_webhook, args=("another-write", "/voice"))
    writer.start()
    writer.join(5)
    assert not writer.is_alive()
    assert outcomes(app) == ["code sent", "unknown number"]
