"""Names announced: who joined or left, played into the conference by Twilio from our TwiML."""

from __future__ import annotations

import io
import logging
import re
import time
import xml.etree.ElementTree as ET
from urllib.parse import urlsplit

import pytest
from sqlalchemy import text

from ivr import create_app, twiml
from tests.conftest import (
    ACCOUNT_SID,
    ARTIFACTS,
    BLATHERS,
    MABEL,
    MODERATOR,
    call_params,
    seed_roster,
    serving,
    sign,
    signed_post,
    twiml_of,
    verbs,
)
from tests.test_devphone import KEYPAD, Phone, call_from, open_phone
from tests.test_metrics import TOKEN, provider_requests, scrape

CONFERENCE = "CF" + "0f" * 16
CALL_OF = {
    MODERATOR: "CA" + "01" * 16,
    BLATHERS: "CA" + "02" * 16,
    MABEL: "CA" + "03" * 16,
}
NAME_OF = {MODERATOR: "Isabelle", BLATHERS: "Blathers", MABEL: "Mabel"}
CONFERENCE_PATH = f"/api/2010-04-01/Accounts/{ACCOUNT_SID}/Conferences/{CONFERENCE}.json"
ANNOUNCE_BASE = "http://localhost/conference/announce"


@pytest.fixture(autouse=True)
def _put_logging_back():
    """Logging is process-wide: leave it as the other tests expect it."""
    root, line = logging.getLogger(), logging.getLogger("ivr")
    levels = root.level, line.level
    yield
    for handler in [h for h in root.handlers if getattr(h, "ivr_handler", False)]:
        root.removeHandler(handler)
    root.setLevel(levels[0])
    line.setLevel(levels[1])


@pytest.fixture
def log_stream() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def line(make_app, log_stream):
    """The tutorial's callers, built-in codes, metrics on, the log read from a stream."""
    app = make_app(METRICS_TOKEN=TOKEN, LOG_STREAM=log_stream)
    seed_roster(app)
    return app


def let_in(app, fake, phone: str) -> None:
    """Take `phone` through the real call flow up to the <Conference>, as /gather lets them in."""
    client, call_sid = app.test_client(), CALL_OF[phone]
    signed_post(client, "/voice", call_params(phone, call_sid=call_sid))
    app.extensions["ivr"].sender.wait_idle()
    code = fake.code_for(phone)
    answer = twiml_of(
        signed_post(client, "/gather", call_params(phone, call_sid=call_sid, Digits=code))
    )
    assert answer.find("Dial/Conference") is not None


def conference_event(app, event: str, phone: str, label: str | None = None):
    """Post Twilio's conference status callback for `phone`'s call; return the answer."""
    params = {
        "AccountSid": ACCOUNT_SID,
        "ConferenceSid": CONFERENCE,
        "FriendlyName": "main",
        "StatusCallbackEvent": event,
        "CallSid": CALL_OF[phone],
        "ParticipantLabel": label or NAME_OF[phone],
        "Muted": "false",
        "Hold": "false",
    }
    return signed_post(app.test_client(), "/conference/events", params)


def joins(app, *phones: str) -> None:
    for phone in phones:
        assert conference_event(app, "participant-join", phone).status_code == 200
    app.extensions["ivr"].sender.wait_idle()


def everyone_in(app, fake, *phones: str) -> None:
    """Let `phones` in and have them join, then forget the requests made so far."""
    store = app.extensions["ivr"].store
    store.update_meeting(store.room_named("main").id, announce_names=False)
    for phone in phones:
        let_in(app, fake, phone)
    joins(app, *phones)
    store.update_meeting(store.room_named("main").id, announce_names=True)
    fake.reset()


def fetch_announcement(app, url: str, call_sid: str | None = None) -> ET.Element:
    """Fetch an AnnounceUrl the way Twilio does: POST, signed over the whole URL."""
    parts = urlsplit(url)
    path = f"{parts.path}?{parts.query}"
    params = {"AccountSid": ACCOUNT_SID, "ConferenceSid": CONFERENCE}
    if call_sid:
        params["CallSid"] = call_sid
    base = f"{parts.scheme}://{parts.netloc}"
    return twiml_of(signed_post(app.test_client(), path, params, base=base))


def spoken(root: ET.Element) -> list[tuple[str, str | None]]:
    return [(say.text, say.get("language")) for say in root.iter("Say")]


def never_the_number(*texts: str) -> None:
    for shown in texts:
        for phone in (MODERATOR, BLATHERS, MABEL):
            digits = phone.lstrip("+")
            assert digits not in shown and digits[-4:] not in shown, shown


# -- joins and leaves --------------------------------------------------------------------------


def test_a_join_is_announced_to_the_others_in_the_callers_name(line, fake_twilio):
    everyone_in(line, fake_twilio, BLATHERS)
    let_in(line, fake_twilio, MABEL)
    fake_twilio.reset()

    joins(line, MABEL)

    assert fake_twilio.requests_of("conference-participant") == []
    [(method, path, form)] = fake_twilio.requests_of("conference")
    assert (method, path) == ("POST", CONFERENCE_PATH)
    assert form == {
        "AnnounceUrl": f"{ANNOUNCE_BASE}?event=joined&call={CALL_OF[MABEL]}",
        "AnnounceMethod": "POST",
    }
    root = fetch_announcement(line, form["AnnounceUrl"])
    assert verbs(root) == ["Say"]
    assert spoken(root) == [("Mabel has joined.", "en-US")]
    never_the_number(form["AnnounceUrl"], ET.tostring(root, encoding="unicode"))


def test_a_leave_is_announced_to_those_still_there_and_the_last_leave_to_nobody(line, fake_twilio):
    everyone_in(line, fake_twilio, BLATHERS, MABEL)

    assert conference_event(line, "participant-leave", BLATHERS).status_code == 200
    line.extensions["ivr"].sender.wait_idle()
    [(_, path, form)] = fake_twilio.requests_of("conference")
    assert path == CONFERENCE_PATH
    assert form["AnnounceUrl"] == f"{ANNOUNCE_BASE}?event=left&call={CALL_OF[BLATHERS]}"
    assert spoken(fetch_announcement(line, form["AnnounceUrl"])) == [
        ("Blathers has left.", "en-US")
    ]

    fake_twilio.reset()
    conference_event(line, "participant-leave", MABEL)
    line.extensions["ivr"].sender.wait_idle()
    assert fake_twilio.requests == []


def test_the_name_comes_from_the_list_not_the_label_with_digits_of_the_number(line, fake_twilio):
    everyone_in(line, fake_twilio, MABEL)
    let_in(line, fake_twilio, BLATHERS)
    fake_twilio.reset()

    # A second Blathers in the room gets a label ending in digits of the number.
    conference_event(line, "participant-join", BLATHERS, label="Blathers (9876)")
    line.extensions["ivr"].sender.wait_idle()

    [(_, _, form)] = fake_twilio.requests_of("conference")
    root = fetch_announcement(line, form["AnnounceUrl"])
    assert spoken(root) == [("Blathers has joined.", "en-US")]
    never_the_number(form["AnnounceUrl"], ET.tostring(root, encoding="unicode"))


def test_with_announce_names_off_twilio_is_asked_nothing(line, fake_twilio):
    store = line.extensions["ivr"].store
    for phone in (BLATHERS, MABEL, MODERATOR):
        let_in(line, fake_twilio, phone)
    store.update_meeting(store.room_named("main").id, announce_names=False)
    fake_twilio.reset()

    joins(line, BLATHERS, MABEL, MODERATOR)
    conference_event(line, "participant-leave", MABEL)
    line.extensions["ivr"].sender.wait_idle()

    assert fake_twilio.requests == []


def test_a_join_whose_caller_has_left_already_is_not_announced(line, fake_twilio):
    everyone_in(line, fake_twilio, BLATHERS)
    let_in(line, fake_twilio, MABEL)
    fake_twilio.reset()

    # Twilio's callbacks can arrive out of order: Mabel's leave overtook her join.
    conference_event(line, "participant-leave", MABEL)
    line.extensions["ivr"].sender.wait_idle()
    fake_twilio.reset()
    joins(line, MABEL)

    assert fake_twilio.requests == []


# -- the moderator -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("waiting", "heard"),
    [
        ((), "Nobody else is here yet."),
        ((BLATHERS,), "1 person is waiting."),
        ((BLATHERS, MABEL), "2 people are waiting."),
    ],
)
def test_a_moderator_joining_hears_how_many_are_waiting(line, fake_twilio, waiting, heard):
    everyone_in(line, fake_twilio, *waiting)
    let_in(line, fake_twilio, MODERATOR)
    fake_twilio.reset()

    joins(line, MODERATOR)

    [(method, path, form)] = fake_twilio.requests_of("conference-participant")
    assert method == "POST"
    assert path == CONFERENCE_PATH.replace(".json", f"/Participants/{CALL_OF[MODERATOR]}.json")
    count = len(waiting)
    assert form == {
        "AnnounceUrl": f"{ANNOUNCE_BASE}?event=waiting&call={CALL_OF[MODERATOR]}&count={count}",
        "AnnounceMethod": "POST",
    }
    root = fetch_announcement(line, form["AnnounceUrl"], CALL_OF[MODERATOR])
    assert spoken(root) == [(heard, "en-US")]

    # The others hear the moderator come in; with nobody else there, nobody is told.
    told = fake_twilio.requests_of("conference")
    if waiting:
        [(_, _, to_all)] = told
        assert spoken(fetch_announcement(line, to_all["AnnounceUrl"])) == [
            ("Isabelle has joined.", "en-US")
        ]
    else:
        assert told == []


def test_a_failed_announcement_to_all_does_not_keep_the_moderator_s_count(line, fake_twilio):
    everyone_in(line, fake_twilio, BLATHERS)
    let_in(line, fake_twilio, MODERATOR)
    fake_twilio.reset()
    fake_twilio.fail("conference", 503, 20503)

    joins(line, MODERATOR)

    [(_, _, form)] = fake_twilio.requests_of("conference-participant")
    assert form["AnnounceUrl"] == (
        f"{ANNOUNCE_BASE}?event=waiting&call={CALL_OF[MODERATOR]}&count=1"
    )


def test_the_moderator_leaving_ends_the_conference_so_nobody_is_told(line, fake_twilio):
    everyone_in(line, fake_twilio, BLATHERS, MABEL, MODERATOR)

    # Twilio ends the conference: the moderator's leave, then everyone else's.
    for phone in (MODERATOR, BLATHERS, MABEL):
        assert conference_event(line, "participant-leave", phone).status_code == 200
    line.extensions["ivr"].sender.wait_idle()

    assert fake_twilio.requests == []


# -- failures ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "result", "logged"),
    [
        ("503", "error", "conference announcement: Twilio answered 503 (code 20503)"),
        ("404", "error", "conference announcement: Twilio answered 404 (code 20404)"),
        ("timeout", "timeout", "conference announcement: ReadTimeout"),
    ],
)
def test_a_failed_announcement_is_logged_and_counted_and_the_callback_does_not_wait(
    make_app, fake_twilio, log_stream, fault, result, logged
):
    app = make_app(METRICS_TOKEN=TOKEN, LOG_STREAM=log_stream, TWILIO_TIMEOUT_SECONDS=0.5)
    seed_roster(app)
    everyone_in(app, fake_twilio, BLATHERS)
    let_in(app, fake_twilio, MABEL)
    fake_twilio.reset()
    if fault == "timeout":
        fake_twilio.latency = 1.0
    else:
        # 404: the conference ended before Twilio got our request.
        fake_twilio.fail("conference", int(fault), 20000 + int(fault))

    started = time.perf_counter()
    response = conference_event(app, "participant-join", MABEL)
    answered_in = time.perf_counter() - started
    app.extensions["ivr"].sender.wait_idle()

    assert response.status_code == 200
    assert verbs(twiml_of(response)) == []
    # Twilio took a second, or failed: the callback never waited for it.
    assert answered_in < 0.5
    warnings = [
        entry for entry in log_stream.getvalue().splitlines() if "announcement not played" in entry
    ]
    assert len(warnings) == 1
    assert " WARNING ivr.announcements " in warnings[0]
    assert warnings[0].endswith(logged)
    assert CALL_OF[MABEL] in warnings[0]
    counted = provider_requests(scrape(app.test_client()))
    assert counted[("conference_announce", result)] == 1
    assert ("conference_announce", "ok") not in counted


def test_a_successful_announcement_is_counted_ok(line, fake_twilio):
    everyone_in(line, fake_twilio, BLATHERS, MABEL)
    let_in(line, fake_twilio, MODERATOR)
    joins(line, MODERATOR)
    counted = provider_requests(scrape(line.test_client()))
    assert counted[("conference_announce", "ok")] == 2


# -- the announcement endpoint -----------------------------------------------------------------


def test_the_announcement_endpoint_refuses_a_bad_signature(line, fake_twilio):
    everyone_in(line, fake_twilio, BLATHERS)
    path = f"/conference/announce?event=joined&call={CALL_OF[BLATHERS]}"
    params = {"AccountSid": ACCOUNT_SID, "ConferenceSid": CONFERENCE}
    client = line.test_client()

    assert client.post(path, data=params).status_code == 403
    forged = signed_post(client, path, params, token="not-the-auth-token")
    assert forged.status_code == 403
    # Signed for another URL: the query (what to say, about whom) is covered too.
    other = f"/conference/announce?event=left&call={CALL_OF[BLATHERS]}"
    headers = {"X-Twilio-Signature": sign("http://localhost" + other, params)}
    assert client.post(path, data=params, headers=headers).status_code == 403
    assert signed_post(client, path, params).status_code == 200


@pytest.mark.parametrize(
    "query",
    [
        "event=joined&call=CA" + "99" * 16,  # nobody was let in on this call
        "event=shouted&call=" + "CA" + "02" * 16,
        "event=joined&call=%2B18005559876",
        "event=waiting&call=" + "CA" + "02" * 16,  # no count
        "event=waiting&count=-1&call=" + "CA" + "02" * 16,
        "",
    ],
)
def test_an_announcement_for_nothing_we_announce_plays_nothing(line, fake_twilio, query):
    everyone_in(line, fake_twilio, BLATHERS)
    params = {"AccountSid": ACCOUNT_SID, "ConferenceSid": CONFERENCE}
    path = "/conference/announce" + (f"?{query}" if query else "")
    root = twiml_of(signed_post(line.test_client(), path, params))
    assert verbs(root) == []


def test_a_database_fault_plays_nothing_into_the_meeting(line, fake_twilio, log_stream):
    everyone_in(line, fake_twilio, BLATHERS)
    store = line.extensions["ivr"].store
    with store.engine.begin() as connection:
        connection.execute(text("DROP TABLE call_log"))
    path = f"/conference/announce?event=joined&call={CALL_OF[BLATHERS]}"
    params = {"AccountSid": ACCOUNT_SID, "ConferenceSid": CONFERENCE}

    root = twiml_of(signed_post(line.test_client(), path, params))

    # No apology and no hang-up: everyone in the conference would hear it.
    assert verbs(root) == []
    assert "ERROR ivr.voice" in log_stream.getvalue()


@pytest.mark.parametrize(
    ("root", "heard"),
    [
        (twiml.announce_joined("Blathers"), "Blathers has joined."),
        (twiml.announce_left("Blathers"), "Blathers has left."),
        (twiml.announce_waiting(0), "Nobody else is here yet."),
        (twiml.announce_waiting(1), "1 person is waiting."),
        (twiml.announce_waiting(2), "2 people are waiting."),
    ],
)
def test_the_builders_say_only_the_announcement(root, heard):
    document = ET.fromstring(root.to_xml())
    assert verbs(document) == ["Say"]
    assert spoken(document) == [(heard, "en-US")]


# -- the dev phones ----------------------------------------------------------------------------


def test_terminal_phone_moderator_alone_hears_nobody_else_is_here(tmp_path):
    phone = Phone(tmp_path, tmp_path / "instance", "+18005551234")
    phone.read_until(KEYPAD)
    phone.type(phone.code())
    phone.read_until("Press Enter to hang up.")
    phone.type("")
    lines = phone.finish().splitlines()
    joined = lines.index("*** Joined conference main as moderator.")
    assert lines[joined + 1] == "Announcement: Nobody else is here yet."


@pytest.fixture
def local_app(tmp_path):
    app = create_app({"INSTANCE_PATH": str(tmp_path / "instance")})
    yield app
    app.extensions["ivr"].store.dispose()


def dev_call(client, phone: str) -> str:
    """Dial from the browser phone's API and enter the code from the outbox; return the call."""
    call = client.post("/dev/phone/calls", json={"from": phone}).get_json()
    inbox = client.get(f"/dev/phone/status?phone={phone.replace('+', '%2B')}").get_json()["inbox"]
    code = re.search(r"(\d{6})", inbox[-1]["text"]).group(1)
    answer = client.post(f"/dev/phone/calls/{call['id']}/keys", json={"digits": code}).get_json()
    assert answer["conference"] == "main", answer["transcript"]
    return call["id"]


def test_browser_phone_transcripts_and_panel_show_the_announcements(local_app):
    client = local_app.test_client()
    blathers = dev_call(client, BLATHERS)
    mabel = dev_call(client, MABEL)
    moderator = dev_call(client, MODERATOR)
    client.post(f"/dev/phone/calls/{mabel}/hangup", json={})

    def transcript(call_id: str) -> list[str]:
        said = client.get(f"/dev/phone/calls/{call_id}").get_json()["transcript"]
        return [entry for entry in said if entry.startswith("Announcement: ")]

    assert transcript(blathers) == [
        "Announcement: Mabel has joined.",
        "Announcement: Moderator has joined.",
        "Announcement: Mabel has left.",
    ]
    # The joiner hears their own name too: Twilio plays a conference announcement to everyone.
    assert transcript(moderator) == [
        "Announcement: Moderator has joined.",
        "Announcement: 2 people are waiting.",
        "Announcement: Mabel has left.",
    ]
    [room] = client.get("/dev/phone/status?phone=%2B18005559876").get_json()["conferences"]
    assert room["announced"] == [
        "Mabel has joined.",
        "Moderator has joined.",
        "2 people are waiting. (to Moderator)",
        "Mabel has left.",
    ]


@pytest.fixture
def local_server(local_app):
    with serving(local_app) as base:
        yield base


def test_browser_phone_shows_the_announcements_in_chromium(browser, local_server):
    errors: list[str] = []
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    blathers = open_phone(context, local_server, errors)
    moderator = open_phone(context, local_server, errors)

    call_from(blathers, BLATHERS)
    call_from(moderator, MODERATOR)

    blathers.bring_to_front()
    blathers.wait_for_selector("#transcript li.announcement >> text=Moderator has joined.")
    moderator.bring_to_front()
    moderator.wait_for_selector("#transcript li.announcement >> text=1 person is waiting.")
    heard = moderator.locator("#conferences .conference .announced")
    heard.filter(has_text="Announced: 1 person is waiting. (to Moderator)").wait_for()
    assert heard.inner_text().splitlines() == [
        "Announced: Moderator has joined.",
        "Announced: 1 person is waiting. (to Moderator)",
    ]
    moderator.screenshot(path=str(ARTIFACTS / "devphone-announcements.png"), full_page=True)
    assert errors == []
