"""Property: whatever a signed request carries, every webhook answers 200 with valid TwiML, and
nobody reaches a conference without entering the code that was sent to their number (and an
announcement is at most a <Say>).

Hypothesis generates sequences of signed requests with hostile parameters: missing and repeated
keys, huge values, NUL bytes, non-ASCII digits, odd caller IDs, CallSids reused across callers.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import MultiDict

from ivr.phones import caller_phone
from ivr.store import Base
from tests.conftest import (
    ACCOUNT_SID,
    BLATHERS,
    LINE,
    MABEL,
    MODERATOR,
    STRANGER,
    seed_roster,
    sign,
)

PATHS = [
    "/voice",
    "/gather",
    "/gather?reprompt=2",
    "/gather?reprompt=x",
    "/conference/events",
    "/call-status",
    "/conference/announce?event=joined&call=CA" + "1" * 32,
    "/conference/announce?event=waiting&count=2&call=CA" + "2" * 32,
]
RIGHT = object()  # stands for the code last sent to the request's caller
CALLERS = [
    BLATHERS,
    MABEL,
    MODERATOR,
    STRANGER,
    "+1 (800) 555-9876",
    "anonymous",
    "+266696687",
    "client:alice",
    "sip:bob@example.com",
    "",
    "+",
    "+999999999999999999",
    "١٢٣",
]
WEIRD_TEXT = st.text(
    alphabet=st.sampled_from(["0", "1", "9", "\x00", "٣", "１", "#", "*", "é", "\n", " ", "+"]),
    max_size=12,
)
DIGITS = st.one_of(
    st.just(RIGHT),
    st.from_regex(r"[0-9]{6}", fullmatch=True),
    WEIRD_TEXT,
    st.text(max_size=4000),
)
VALUES = {
    "From": st.one_of(st.sampled_from(CALLERS), WEIRD_TEXT, st.text(max_size=300)),
    "To": st.one_of(st.just(LINE), WEIRD_TEXT),
    "CallSid": st.sampled_from(["CA" + "1" * 32, "CA" + "2" * 32, "", "CA\x00", "x" * 500]),
    "Digits": DIGITS,
    "StatusCallbackEvent": st.sampled_from(
        [
            "participant-join",
            "participant-leave",
            "conference-start",
            "conference-end",
            "participant-mute",
            "",
            "\x00",
        ]
    ),
    "ConferenceSid": st.sampled_from(["CF" + "3" * 32, "", "y" * 300]),
    "FriendlyName": st.one_of(st.just("main"), WEIRD_TEXT),
    "CallStatus": st.sampled_from(["completed", "in-progress", "busy", "", "\x00"]),
    "ParticipantLabel": st.one_of(st.just("Blathers"), st.text(max_size=200)),
    "Muted": st.sampled_from(["true", "false", "TRUE", ""]),
}
PAIRS = st.lists(
    st.one_of(
        st.sampled_from(sorted(VALUES)).flatmap(lambda key: st.tuples(st.just(key), VALUES[key])),
        st.tuples(st.text(min_size=1, max_size=20), st.text(max_size=50)),
    ),
    max_size=14,
)
ANY_REQUESTS = st.lists(st.tuples(st.sampled_from(PATHS), PAIRS), max_size=6)
# A participant's call - greeting, then the code they were sent - with hostile extras mixed in
# (a second Digits, a second From, ...), so that the rule about joining is put to the test.
CALL = st.builds(
    lambda caller, sid, greeting_extra, gather_extra: [
        ("/voice", [("From", caller), ("To", LINE), ("CallSid", sid), *greeting_extra]),
        (
            "/gather",
            [("From", caller), ("To", LINE), ("CallSid", sid), ("Digits", RIGHT), *gather_extra],
        ),
    ],
    st.sampled_from([BLATHERS, MABEL, MODERATOR, "+1 800 555 9876"]),
    VALUES["CallSid"],
    PAIRS,
    PAIRS,
)
REQUESTS = st.one_of(
    ANY_REQUESTS.filter(bool),
    st.tuples(ANY_REQUESTS, CALL, ANY_REQUESTS).map(lambda parts: [r for p in parts for r in p]),
)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(requests=REQUESTS)
def test_hostile_signed_requests_get_twiml_and_no_conference_without_the_code(
    builtin_app, fake_twilio, requests
):
    fresh_start(builtin_app, fake_twilio)
    client = builtin_app.test_client()
    for path, pairs in requests:
        pairs = [("AccountSid", ACCOUNT_SID), *pairs]
        caller = caller_phone(next((v for k, v in pairs if k == "From" and v is not RIGHT), None))
        sent = last_code(fake_twilio, caller)
        right_digits = [sent if v is RIGHT else v for k, v in pairs if k == "Digits"]
        form = MultiDict([(k, (sent or "000000") if v is RIGHT else v) for k, v in pairs])

        response = client.post(
            path, data=form, headers={"X-Twilio-Signature": sign(f"http://localhost{path}", form)}
        )

        assert response.status_code == 200, response.data[:300]
        assert response.mimetype == "text/xml"
        root = ET.fromstring(response.data)
        assert root.tag == "Response"
        if path.startswith("/conference/announce"):
            # Played into a meeting: a name at most, never a prompt, a hang-up or an error.
            assert {child.tag for child in root} <= {"Say"}
        if root.find("Dial/Conference") is not None:
            # Let in only with the code sent to this caller's number, as the request's one Digits.
            assert path.startswith("/gather")
            assert sent is not None and form.getlist("Digits")[:1] == [sent]
            assert right_digits[:1] == [sent]
        builtin_app.extensions["ivr"].sender.wait_idle()


def fresh_start(app, fake) -> None:
    """Empty the database and the fake between examples, so each starts from the same state."""
    store = app.extensions["ivr"].store
    with store.engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())
    fake.reset()
    seed_roster(app)


def last_code(fake, phone: str | None) -> str | None:
    if phone is None:
        return None
    try:
        return fake.code_for(phone)
    except AssertionError:
        return None
