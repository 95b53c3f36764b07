"""Console pages: rooms, participants, CSV import/export, call log, lockouts, live control, CLI."""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select, text

from ivr.roster import FORMULA_STARTS
from ivr.store import (
    CallNote,
    NumberGuard,
    Outcome,
    Participant,
    ParticipantRow,
    Role,
    Room,
    SignInGuard,
)
from tests.conftest import (
    ACCOUNT_SID,
    ADMIN,
    BLATHERS,
    MABEL,
    MODERATOR,
    VERIFY_SID,
    call_params,
    csrf_token,
    enrol_app,
    enter_code,
    lock_out,
    post_form,
    seed_roster,
    sign_in,
    signed_post,
    start_sign_in,
)

CONFERENCE = "CF" + "d4" * 16
CALL_BLATHERS = "CA" + "b1" * 16
CALL_MABEL = "CA" + "a1" * 16
TOMMY = "+18005556789"
CONFERENCE_API = f"/api/2010-04-01/Accounts/{ACCOUNT_SID}/Conferences/{CONFERENCE}"


def text_of(response) -> str:
    return response.get_data(as_text=True)


def flashes(client) -> list[str]:
    with client.session_transaction() as session:
        return [message for _, message in session.pop("_flashes", [])]


def store_of(app):
    return app.extensions["ivr"].store


def main_room(app) -> Room:
    return next(r for r in store_of(app).rooms() if r.name == "main")


def roster(app, room: str = "main") -> list[tuple[str, str, str]]:
    return [(p.phone, p.name, p.role.value) for p in store_of(app).participants(room)]


def table(app, model) -> list:
    with store_of(app).engine.connect() as connection:
        return list(connection.execute(select(model.__table__)))


# -- rooms -------------------------------------------------------------------------------------


def test_rooms_are_listed_created_edited_and_deleted(admin_client, admin_app):
    response = post_form(
        admin_client,
        "/admin/rooms/new",
        {
            "name": " Board  meeting ",
            "line_number": "+1 800 555 0123",
            "hold_music_url": "https://example.com/hold.mp3",
        },
    )
    board = next(r for r in store_of(admin_app).rooms() if r.name == "Board meeting")
    assert response.status_code == 302
    assert response.location == f"/admin/rooms/{board.id}"
    assert (board.line_number, board.hold_music_url) == (
        "+18005550123",
        "https://example.com/hold.mp3",
    )
    assert flashes(admin_client) == ["Room Board meeting created."]

    page = text_of(admin_client.get("/admin/rooms"))
    assert "Board meeting" in page and "+1 800-555-0123" in page

    response = post_form(
        admin_client,
        f"/admin/rooms/{board.id}/edit",
        {"name": "Board", "line_number": "", "hold_music_url": ""},
    )
    assert response.status_code == 302
    edited = store_of(admin_app).room(board.id)
    assert (edited.name, edited.line_number, edited.hold_music_url) == ("Board", None, None)
    assert flashes(admin_client) == ["Room Board saved."]

    confirm = admin_client.get(f"/admin/rooms/{board.id}/delete")
    assert confirm.status_code == 200
    assert "Delete room Board?" in text_of(confirm)
    assert store_of(admin_app).room(board.id) is not None  # asking is not deleting

    response = post_form(admin_client, f"/admin/rooms/{board.id}/delete")
    assert response.status_code == 302
    assert store_of(admin_app).room(board.id) is None
    assert flashes(admin_client) == ["Room Board and its participants were deleted."]


def test_deleting_a_room_deletes_its_participants(admin_client, admin_app):
    room = main_room(admin_app)
    post_form(admin_client, f"/admin/rooms/{room.id}/delete")
    assert table(admin_app, Participant) == []


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"name": ""}, "Give the room a name."),
        ({"name": "x", "line_number": "555"}, "is not a valid phone number"),
        ({"name": "x", "hold_music_url": "ftp://x"}, "Enter a full http:// or https:// address"),
        ({"name": "main"}, "Not saved: a room named &#39;main&#39; already exists."),
    ],
)
def test_a_bad_room_is_refused_with_a_clear_message(admin_client, admin_app, form, message):
    before = table(admin_app, Room)
    response = post_form(admin_client, "/admin/rooms/new", form)
    assert response.status_code == 400
    assert message in text_of(response)
    assert table(admin_app, Room) == before


def test_two_rooms_cannot_share_a_line_number(admin_client, admin_app):
    store_of(admin_app).create_room("east", "+18005550123", None)
    response = post_form(
        admin_client, "/admin/rooms/new", {"name": "west", "line_number": "+18005550123"}
    )
    assert response.status_code == 400
    assert "+18005550123 is already the line of another room" in text_of(response)


def test_an_unknown_room_is_404(admin_client):
    assert admin_client.get("/admin/rooms/999").status_code == 404
    assert admin_client.get("/admin/rooms/999/edit").status_code == 404


# -- participants ------------------------------------------------------------------------------


def test_a_room_lists_its_participants_in_international_format(admin_client, admin_app):
    page = text_of(admin_client.get(f"/admin/rooms/{main_room(admin_app).id}"))
    for name, shown in [("Isabelle", "+1 800-555-1234"), ("Blathers", "+1 800-555-9876")]:
        assert name in page and shown in page
    assert "moderator" in page


@pytest.mark.parametrize(
    ("query", "names"),
    [("bla", ["Blathers"]), ("MAB", ["Mabel"]), ("555 4321", ["Mabel"]), ("zzz", [])],
)
def test_participants_can_be_searched_by_name_or_number(admin_client, admin_app, query, names):
    page = text_of(admin_client.get(f"/admin/rooms/{main_room(admin_app).id}?q={query}"))
    shown = [
        n for n in ("Isabelle", "Blathers", "Mabel") if f'<td data-label="Name">{n}</td>' in page
    ]
    assert shown == names


def test_adding_a_participant_uses_the_same_rules_as_the_command_line(admin_client, admin_app):
    room = main_room(admin_app)
    response = post_form(
        admin_client,
        f"/admin/rooms/{room.id}",
        {"phone": "+1 (800) 555-6789", "name": " Tommy ", "role": "moderator"},
    )
    assert response.status_code == 302
    assert flashes(admin_client) == ["Tommy (+1 800-555-6789) added as moderator."]
    assert (TOMMY, "Tommy", "moderator") in roster(admin_app)


@pytest.mark.parametrize("phone", ["8005556789", "+1800555", "not a number", ""])
def test_a_bad_number_is_refused_with_a_clear_error(admin_client, admin_app, phone):
    room = main_room(admin_app)
    response = post_form(admin_client, f"/admin/rooms/{room.id}", {"phone": phone, "name": "Tommy"})
    assert response.status_code == 400
    assert "is not a valid phone number: use international format, e.g. +18005559876" in (
        text_of(response)
    )
    assert len(roster(admin_app)) == 3


def test_a_participant_is_edited_and_removed(admin_client, admin_app):
    room = main_room(admin_app)
    path = f"/admin/rooms/{room.id}/participants/{BLATHERS}"
    form = text_of(admin_client.get(path + "/edit"))
    assert 'value="+18005559876"' in form and 'value="Blathers"' in form

    response = post_form(
        admin_client, path + "/edit", {"phone": TOMMY, "name": "Tom", "role": "moderator"}
    )
    assert response.status_code == 302
    assert (TOMMY, "Tom", "moderator") in roster(admin_app)
    assert BLATHERS not in [p for p, _, _ in roster(admin_app)]

    # Taking a number already in the room is refused.
    response = post_form(
        admin_client,
        f"/admin/rooms/{room.id}/participants/{TOMMY}/edit",
        {"phone": MABEL, "name": "Tom", "role": "participant"},
    )
    assert response.status_code == 400
    assert "+18005554321 is already in room main." in text_of(response)

    flashes(admin_client)
    response = post_form(admin_client, f"/admin/rooms/{room.id}/participants/{TOMMY}/remove")
    assert response.status_code == 302
    assert flashes(admin_client) == ["+1 800-555-6789 removed from main."]
    assert [p for p, _, _ in roster(admin_app)] == [MODERATOR, MABEL]


def test_csv_import_previews_then_applies_all_rows(admin_client, admin_app):
    csv_text = (
        "phone,name,role,room\n"
        "+18005556789,Tommy,participant,main\n"
        "+18005559876,Blathers the Owl,moderator,main\n"
        "+18005550123,Timmy,,board\n"
    )
    token = csrf_token(admin_client, "/admin/participants/import")
    preview = admin_client.post(
        "/admin/participants/import",
        data={"csrf_token": token, "file": (io.BytesIO(csv_text.encode()), "people.csv")},
        content_type="multipart/form-data",
    )
    assert preview.status_code == 200
    page = text_of(preview)
    assert "Preview: 3 participants" in page
    assert page.count(">new<") == 2 and page.count(">update<") == 1
    assert len(roster(admin_app)) == 3  # a preview changes nothing

    applied_token = re.search(
        r'id="csrf_token" name="csrf_token" type="hidden" value="([^"]+)"', page
    )
    hidden = re.search(r'id="csv_text" name="csv_text" type="hidden" value="([^"]*)"', page)
    response = admin_client.post(
        "/admin/participants/import/apply",
        data={"csrf_token": applied_token.group(1), "csv_text": html.unescape(hidden.group(1))},
    )
    assert response.status_code == 302
    assert flashes(admin_client) == ["Imported 3 participants."]
    assert (TOMMY, "Tommy", "participant") in roster(admin_app)
    assert (BLATHERS, "Blathers the Owl", "moderator") in roster(admin_app)
    assert roster(admin_app, "board") == [("+18005550123", "Timmy", "participant")]


@pytest.mark.parametrize("where", ["upload", "apply"])
def test_a_csv_with_a_bad_row_imports_nothing(admin_client, admin_app, where):
    csv_text = "+18005556789,Tommy,participant\n+1800555,Bad,participant\n"
    if where == "upload":
        token = csrf_token(admin_client, "/admin/participants/import")
        response = admin_client.post(
            "/admin/participants/import",
            data={"csrf_token": token, "file": (io.BytesIO(csv_text.encode()), "bad.csv")},
            content_type="multipart/form-data",
        )
        assert response.status_code == 200
        assert "Nothing was imported: row 2:" in text_of(response)
    else:
        response = post_form(
            admin_client, "/admin/participants/import/apply", {"csv_text": csv_text}
        )
        assert response.status_code == 302
        assert flashes(admin_client)[0].startswith("Nothing was imported: row 2:")
    assert len(roster(admin_app)) == 3


def test_csv_export_is_what_import_reads(admin_client, admin_app):
    response = admin_client.get("/admin/participants/export.csv")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == 'attachment; filename="participants.csv"'
    assert text_of(response) == (
        "phone,name,role,room,code_by\n"
        "'+18005551234,Isabelle,moderator,main,sms\n"
        "'+18005559876,Blathers,participant,main,sms\n"
        "'+18005554321,Mabel,participant,main,sms\n"
    )
    one_room = admin_client.get("/admin/participants/export.csv?room=nowhere")
    assert text_of(one_room) == "phone,name,role,room,code_by\n"


def test_the_console_export_writes_formulas_as_text_and_imports_them_back(admin_client, admin_app):
    store = admin_app.extensions["ivr"].store
    store.update_participant(
        BLATHERS, ParticipantRow(BLATHERS, '=HYPERLINK("http://evil","x")', Role.PARTICIPANT)
    )
    store.update_participant(MABEL, ParticipantRow(MABEL, "@SUM(1+1)", Role.PARTICIPANT))
    before = roster(admin_app)

    exported = text_of(admin_client.get("/admin/participants/export.csv"))

    rows = list(csv.reader(io.StringIO(exported)))
    assert rows[2] == [
        "'+18005559876",
        '\'=HYPERLINK("http://evil","x")',
        "participant",
        "main",
        "sms",
    ]
    assert rows[3] == ["'+18005554321", "'@SUM(1+1)", "participant", "main", "sms"]
    assert not [cell for row in rows for cell in row if cell.startswith(FORMULA_STARTS)]
    store.remove_participant(BLATHERS)
    store.remove_participant(MABEL)
    response = post_form(admin_client, "/admin/participants/import/apply", {"csv_text": exported})
    assert response.status_code == 302
    assert flashes(admin_client) == ["Imported 3 participants."]
    assert roster(admin_app) == before


# -- call log ----------------------------------------------------------------------------------


def test_the_call_log_filters_by_room_number_and_outcome_and_never_shows_a_code(
    admin_client, admin_app, fake_twilio
):
    line = admin_app.test_client()
    signed_post(line, "/voice", call_params(BLATHERS))
    admin_app.extensions["ivr"].sender.wait_idle()
    code = fake_twilio.code_for(BLATHERS)
    signed_post(line, "/gather", call_params(BLATHERS, Digits=code))
    signed_post(line, "/voice", call_params("+18005550199", call_sid="CA" + "f0" * 16))
    signed_post(line, "/voice", call_params("anonymous", call_sid="CA" + "f1" * 16))

    page = text_of(admin_client.get("/admin/calls"))
    assert "3 calls; page 1 of 1." in page
    for outcome in ("joined as participant", "unknown number", "withheld number"):
        assert f">{outcome}</span>" in page
    assert ">code sent</span>" not in page, "a call's steps are on its own page"
    assert code not in page

    by_number = text_of(admin_client.get("/admin/calls?phone=555-9876"))
    assert "1 call matches" in by_number and "+1 800-555-9876" in by_number
    by_outcome = text_of(admin_client.get("/admin/calls?outcome=unknown+number"))
    assert "1 call matches" in by_outcome and "+1 800-555-0199" in by_outcome
    by_room = text_of(admin_client.get("/admin/calls?room=main&outcome=joined+as+participant"))
    assert "1 call matches" in by_room and "Blathers" in by_room
    assert "0 calls match" in text_of(admin_client.get("/admin/calls?outcome=code+sent"))


def test_a_call_of_many_steps_is_one_row_and_its_page_lists_the_steps(
    admin_client, admin_app, fake_twilio
):
    line = admin_app.test_client()
    call_sid = call_params(BLATHERS)["CallSid"]
    signed_post(line, "/voice", call_params(BLATHERS))
    admin_app.extensions["ivr"].sender.wait_idle()
    code = fake_twilio.code_for(BLATHERS)
    signed_post(line, "/gather", call_params(BLATHERS, Digits=f"{(int(code) + 1) % 10**6:06d}"))
    signed_post(line, "/gather", call_params(BLATHERS, Digits=code))
    events = {"ConferenceSid": "CF" + "a" * 32, "FriendlyName": "main", "CallSid": call_sid}
    signed_post(line, "/conference/events", {**events, "StatusCallbackEvent": "participant-join"})
    signed_post(line, "/conference/events", {**events, "StatusCallbackEvent": "participant-leave"})
    store = store_of(admin_app)
    set_times(admin_app, call_sid, ["09:55:00", "09:55:20", "09:55:31", "09:55:33", "10:07:48"])

    [summary] = store.calls_page().calls
    assert (summary.outcome, summary.events, summary.name) == (
        "joined as participant",
        5,
        "Blathers",
    )
    assert summary.answer_to_join == timedelta(seconds=31)
    assert summary.in_conference == timedelta(minutes=12, seconds=15)
    page = text_of(admin_client.get("/admin/calls"))
    assert "1 call; page 1 of 1." in page
    row = page[page.index("<tbody>") : page.index("</tbody>")]
    assert row.count("<tr>") == 1
    assert "31 s" in row and "12 min 15 s" in row
    assert f'href="/admin/calls/{call_sid}">5 events</a>' in row

    detail = text_of(admin_client.get(f"/admin/calls/{call_sid}"))
    steps = re.findall(r'<span class="badge outcome-[a-z-]+">([a-z ]+)</span>', detail)
    assert steps == [
        "joined as participant",  # the summary's outcome comes first
        "code sent",
        "wrong code",
        "joined as participant",
        "entered conference",
        "left conference",
    ]
    assert "2026-11-20 09:55:00 UTC" in detail
    assert code not in detail
    assert admin_client.get("/admin/calls/CA" + "0" * 32).status_code == 404


def test_the_calls_csv_has_one_row_per_filtered_call(admin_client, admin_app):
    store = store_of(admin_app)
    store.log_call(Outcome.CODE_SENT, CallNote("CA1", BLATHERS, "=cmd|' /C calc'!A0", "main"))
    store.log_call(Outcome.HUNG_UP, CallNote("CA1", BLATHERS, "=cmd|' /C calc'!A0", "main"))
    store.log_call(Outcome.UNKNOWN_NUMBER, CallNote("CA2", "+18005550199", None, "main"))
    set_times(admin_app, "CA1", ["09:55:00", "09:56:00"])
    set_times(admin_app, "CA2", ["10:00:00"])

    response = admin_client.get("/admin/calls.csv?outcome=hung+up")

    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == 'attachment; filename="calls.csv"'
    assert list(csv.reader(io.StringIO(text_of(response)))) == [
        [
            "started_utc",
            "phone",
            "name",
            "room",
            "outcome",
            "seconds_to_join",
            "seconds_in_conference",
            "call_sid",
        ],
        [
            "2026-11-20 09:55:00",
            "'+18005559876",
            "'=cmd|' /C calc'!A0",
            "main",
            "hung up",
            "",
            "",
            "CA1",
        ],
    ]
    everything = list(csv.reader(io.StringIO(text_of(admin_client.get("/admin/calls.csv")))))
    assert [row[-1] for row in everything[1:]] == ["CA2", "CA1"]


def test_the_call_log_is_paginated(admin_client, admin_app):
    store = store_of(admin_app)
    for number in range(120):
        store.log_call(Outcome.NO_INPUT, CallNote(call_sid=f"CA{number:032d}", phone=BLATHERS))

    first = text_of(admin_client.get("/admin/calls"))
    assert "120 calls; page 1 of 3." in first
    assert first.count("no input</span>") == 50
    assert 'href="/admin/calls?page=2" rel="next"' in first
    last = text_of(admin_client.get("/admin/calls?page=3&outcome=no+input"))
    assert "page 3 of 3" in last and last.count("no input</span>") == 20
    assert 'rel="next"' not in last


def set_times(app, call_sid: str, times: list[str]) -> None:
    """Give a call's rows, in order, these times on 2026-11-20 (the steps took no time here)."""
    store = store_of(app)
    with store.engine.begin() as connection:
        ids = connection.scalars(
            text("SELECT id FROM call_log WHERE call_sid = :sid ORDER BY id"), {"sid": call_sid}
        ).all()
        assert len(ids) == len(times)
        for row_id, clock in zip(ids, times, strict=True):
            at = datetime.fromisoformat(f"2026-11-20T{clock}")
            connection.execute(
                text("UPDATE call_log SET at = :at WHERE id = :id"), {"at": at, "id": row_id}
            )


# -- lockouts ----------------------------------------------------------------------------------


def test_locked_numbers_are_listed_and_unlocked(admin_client, admin_app):
    store = store_of(admin_app)
    lock_out(store, BLATHERS)
    lock_out(store, MABEL, SignInGuard)

    page = text_of(admin_client.get("/admin/lockouts"))
    assert "+1 800-555-9876" in page and "Blathers" in page and "Calling the line" in page
    assert "+1 800-555-4321" in page and "Console sign-in" in page
    assert "10 minutes" in page

    response = post_form(
        admin_client, "/admin/lockouts/unlock", {"phone": BLATHERS, "kind": "line"}
    )
    assert response.status_code == 302
    assert flashes(admin_client) == ["+1 800-555-9876 is unlocked."]
    assert store.locked_until(BLATHERS) is None
    assert store.locked_until(MABEL, SignInGuard) is not None
    [guard] = [g for g in table(admin_app, NumberGuard) if g.phone == BLATHERS]
    assert (guard.failures, guard.locked_until) == (0, None)


def test_an_unlocked_number_can_call_again(admin_client, admin_app, fake_twilio):
    lock_out(store_of(admin_app), BLATHERS)
    post_form(admin_client, "/admin/lockouts/unlock", {"phone": BLATHERS, "kind": "line"})
    line = admin_app.test_client()
    response = signed_post(line, "/voice", call_params(BLATHERS))
    assert b"Welcome Blathers" in response.data


# -- live conference ---------------------------------------------------------------------------


def conference_event(app, event: str, call_sid: str | None = None, **extra):
    params = {
        "AccountSid": ACCOUNT_SID,
        "ConferenceSid": CONFERENCE,
        "FriendlyName": "main",
        "StatusCallbackEvent": event,
        **extra,
    }
    if call_sid:
        params["CallSid"] = call_sid
    response = signed_post(
        app.test_client(), "/conference/events", params, token=app.config["SIGNING_TOKEN"]
    )
    assert response.status_code == 200


def join_two(app, fake):
    """Blathers (through the real call flow) and Mabel join the main room's conference."""
    line = app.test_client()
    signed_post(line, "/voice", call_params(BLATHERS, call_sid=CALL_BLATHERS))
    app.extensions["ivr"].sender.wait_idle()
    code = fake.code_for(BLATHERS)
    signed_post(line, "/gather", call_params(BLATHERS, call_sid=CALL_BLATHERS, Digits=code))
    conference_event(app, "conference-start")
    conference_event(app, "participant-join", CALL_BLATHERS, ParticipantLabel="Blathers")
    conference_event(app, "participant-join", CALL_MABEL, ParticipantLabel="Mabel", Muted="true")
    # The joins' announcements go out in the background: not into the test's requests.
    app.extensions["ivr"].sender.wait_idle()
    fake.reset()


def members(app) -> list[tuple[str, str | None, bool]]:
    return [(m.call_sid, m.phone, m.muted) for m in store_of(app).live_members()]


def test_conference_events_keep_the_live_list(admin_client, admin_app, fake_twilio):
    join_two(admin_app, fake_twilio)
    assert members(admin_app) == [(CALL_BLATHERS, BLATHERS, False), (CALL_MABEL, None, True)]
    page = text_of(admin_client.get("/admin/live"))
    assert "Blathers" in page and "+1 800-555-9876" in page and "Mute Blathers" in page
    assert "Unmute Mabel" in page

    conference_event(admin_app, "participant-unmute", CALL_MABEL)
    conference_event(admin_app, "participant-mute", CALL_BLATHERS)
    assert members(admin_app) == [(CALL_BLATHERS, BLATHERS, True), (CALL_MABEL, None, False)]

    conference_event(admin_app, "participant-leave", CALL_BLATHERS, ParticipantLabel="Blathers")
    assert members(admin_app) == [(CALL_MABEL, None, False)]
    conference_event(admin_app, "conference-end")
    assert members(admin_app) == []
    # The leave is logged with the caller's number, found from their call.
    log = store_of(admin_app).call_events(CALL_BLATHERS)
    left = [(e.phone, e.name) for e in log if e.outcome == "left conference"]
    assert left == [(BLATHERS, "Blathers")]


def test_a_new_conference_in_a_room_drops_members_left_from_an_old_one(admin_app, fake_twilio):
    join_two(admin_app, fake_twilio)
    signed_post(
        admin_app.test_client(),
        "/conference/events",
        {
            "ConferenceSid": "CF" + "99" * 16,
            "FriendlyName": "main",
            "StatusCallbackEvent": "conference-start",
        },
    )
    assert members(admin_app) == []


@pytest.mark.parametrize(
    ("action", "method", "form", "muted_after", "message"),
    [
        ("mute", "POST", {"Muted": "true"}, True, "Blathers is muted."),
        ("unmute", "POST", {"Muted": "false"}, False, "Blathers is unmuted."),
        ("remove", "DELETE", {}, None, "Blathers was removed from main."),
    ],
)
def test_live_controls_call_twilios_participants_api(
    admin_client, admin_app, fake_twilio, action, method, form, muted_after, message
):
    join_two(admin_app, fake_twilio)

    response = post_form(admin_client, f"/admin/live/{CALL_BLATHERS}/{action}")

    assert response.status_code == 302
    assert response.location == "/admin/live"
    assert fake_twilio.requests_of("conference-participant") == [
        (method, f"{CONFERENCE_API}/Participants/{CALL_BLATHERS}.json", form)
    ]
    assert flashes(admin_client) == [message]
    if muted_after is None:
        assert members(admin_app) == [(CALL_MABEL, None, True)]
    else:
        assert members(admin_app)[0] == (CALL_BLATHERS, BLATHERS, muted_after)


def test_ending_a_conference_completes_it_at_twilio(admin_client, admin_app, fake_twilio):
    join_two(admin_app, fake_twilio)

    response = post_form(admin_client, f"/admin/live/conferences/{CONFERENCE}/end")

    assert response.status_code == 302
    assert fake_twilio.requests_of("conference") == [
        ("POST", f"{CONFERENCE_API}.json", {"Status": "completed"})
    ]
    assert flashes(admin_client) == ["Ended the conference in main."]
    assert members(admin_app) == []


def test_a_caller_twilio_no_longer_knows_is_dropped_from_the_list(
    admin_client, admin_app, fake_twilio
):
    join_two(admin_app, fake_twilio)
    fake_twilio.fail("conference-participant", 404, 20404, "The requested resource was not found")

    post_form(admin_client, f"/admin/live/{CALL_BLATHERS}/mute")

    assert flashes(admin_client) == ["Blathers had already left the conference."]
    assert members(admin_app) == [(CALL_MABEL, None, True)]


def test_a_twilio_fault_is_a_message_and_changes_nothing(admin_client, admin_app, fake_twilio):
    join_two(admin_app, fake_twilio)
    fake_twilio.fail("conference-participant", 500, 20500, "Internal Server Error")

    response = post_form(admin_client, f"/admin/live/{CALL_BLATHERS}/mute")

    assert response.status_code == 302
    [message] = flashes(admin_client)
    assert message.startswith("Twilio did not mute Blathers: mute participant: Twilio answered 500")
    assert members(admin_app)[0] == (CALL_BLATHERS, BLATHERS, False)


def test_live_control_in_local_mode_says_it_needs_twilio(tmp_path, fake_twilio):
    from ivr import create_app

    app = create_app(
        {
            "TESTING": True,
            "INSTANCE_PATH": str(tmp_path / "instance"),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'local.sqlite3'}",
            "ADMIN_SIGN_IN_FLOOR_SECONDS": 0,
        }
    )
    store_of(app).add_admin(ADMIN, "Nook")
    client = app.test_client()
    _sign_in_locally(app, client)
    conference_event(app, "participant-join", CALL_MABEL, ParticipantLabel="Mabel")

    response = post_form(client, f"/admin/live/{CALL_MABEL}/mute")

    assert response.status_code == 302
    assert flashes(client) == [
        "Live control needs Twilio credentials; the line is running in local mode."
    ]
    assert fake_twilio.requests == []
    store_of(app).dispose()


def _sign_in_locally(app, client):
    """Sign in with the code local mode's console outbox shows."""
    from tests.conftest import enter_code, start_sign_in

    start_sign_in(client)
    [message] = app.extensions["ivr"].outbox.messages(ADMIN)
    response = enter_code(client, message.text.removeprefix("Your admin console sign-in code is "))
    assert response.status_code == 302


def test_no_page_of_the_console_fails(admin_client, admin_app, fake_twilio):
    join_two(admin_app, fake_twilio)
    lock_out(store_of(admin_app), BLATHERS)
    room = main_room(admin_app)
    for path in [
        "/admin/",
        "/admin/rooms",
        "/admin/rooms/new",
        f"/admin/rooms/{room.id}",
        f"/admin/rooms/{room.id}/edit",
        f"/admin/rooms/{room.id}/delete",
        f"/admin/rooms/{room.id}/participants/{BLATHERS}/edit",
        "/admin/participants/import",
        "/admin/calls",
        "/admin/lockouts",
        "/admin/live",
    ]:
        assert admin_client.get(path).status_code == 200, path


# -- command line ------------------------------------------------------------------------------


def test_admins_are_added_listed_and_removed_from_the_command_line(admin_app):
    runner = admin_app.test_cli_runner()

    result = runner.invoke(args=["admins", "add", "+1 800 555 0142", "  Tom   Nook "])
    assert result.exit_code == 0
    assert result.output == "Tom Nook (+1 800-555-0142) can now sign in.\n"

    result = runner.invoke(args=["admins", "list"])
    assert result.output == f"{ADMIN}\tNook\n+18005550142\tTom Nook\n"

    result = runner.invoke(args=["admins", "remove", "+18005550142"])
    assert result.exit_code == 0
    assert [a.phone for a in store_of(admin_app).admins()] == [ADMIN]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["admins", "add", "555-0142", "Tom"], "is not a valid phone number"),
        (["admins", "add", "+18005550142", "  "], "the name is empty"),
        (["admins", "remove", "+18005550142"], "+18005550142 is not an admin"),
    ],
)
def test_bad_admin_commands_say_why_and_fail(admin_app, args, message):
    result = admin_app.test_cli_runner().invoke(args=args)
    assert result.exit_code == 1
    assert result.output.startswith("Error: ")
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_join_that_arrives_after_its_leave_does_not_bring_the_caller_back(admin_app):
    store = store_of(admin_app)
    conference_event(admin_app, "participant-leave", CALL_MABEL, ParticipantLabel="Mabel")
    conference_event(admin_app, "participant-join", CALL_MABEL, ParticipantLabel="Mabel")
    conference_event(admin_app, "participant-join", CALL_BLATHERS, ParticipantLabel="Blathers")

    assert [m.call_sid for m in store.live_members()] == [CALL_BLATHERS]
    assert store.live_member(CALL_MABEL) is None

    conference_event(admin_app, "participant-leave", CALL_BLATHERS, ParticipantLabel="Blathers")
    assert store.live_members() == []


# -- code methods ------------------------------------------------------------------------------


def code_method(app, phone) -> tuple[str, bool]:
    with store_of(app).engine.connect() as connection:
        code_by, secret = connection.execute(
            select(Participant.code_by, Participant.app_secret).where(Participant.phone == phone)
        ).one()
    return code_by, secret is not None


def test_the_room_shows_each_method_and_the_edit_form_offers_what_the_line_can_do(
    admin_client, admin_app
):
    enrol_app(admin_app, MABEL)
    room = main_room(admin_app)

    page = text_of(admin_client.get(f"/admin/rooms/{room.id}"))
    rows = re.findall(r'<tr>\s*<td data-label="Name">(\w+)</td>.*?</tr>', page, re.S)
    cells = {
        name: re.search(
            rf'<td data-label="Name">{name}</td>.*?<td data-label="Codes by">([\w ]+)</td>\s*'
            r'<td class="row-actions">',
            page,
            re.S,
        ).group(1)
        for name in rows
    }
    assert cells == {"Isabelle": "SMS", "Blathers": "SMS", "Mabel": "Authenticator app"}

    # Built-in codes: no WhatsApp, and the app only as Mabel's current value.
    blathers = text_of(admin_client.get(f"/admin/rooms/{room.id}/participants/{BLATHERS}/edit"))
    mabel = text_of(admin_client.get(f"/admin/rooms/{room.id}/participants/{MABEL}/edit"))
    assert re.findall(r'<option [^>]*value="(\w+)"', blathers) == [
        "participant",
        "moderator",
        "sms",
    ]
    assert re.findall(r'<option [^>]*value="(\w+)"', mabel) == [
        "participant",
        "moderator",
        "sms",
        "app",
    ]
    assert "Invite to an authenticator app" in blathers


def test_whatsapp_and_app_cannot_be_chosen_where_the_line_cannot_honour_them(
    admin_client, admin_app
):
    room = main_room(admin_app)
    path = f"/admin/rooms/{room.id}/participants/{BLATHERS}/edit"
    base = {"phone": BLATHERS, "name": "Blathers", "role": "participant"}

    whatsapp = post_form(admin_client, path, {**base, "code_by": "whatsapp"})
    app_chosen = post_form(admin_client, path, {**base, "code_by": "app"})

    assert whatsapp.status_code == app_chosen.status_code == 400
    assert "WhatsApp codes need Twilio Verify: set VERIFY_SERVICE_SID." in text_of(whatsapp)
    assert "Only the participant can set up an authenticator app" in text_of(app_chosen)
    assert code_method(admin_app, BLATHERS) == ("sms", False)


def test_whatsapp_is_chosen_in_the_console_with_verify(make_app, fake_twilio):
    app = make_app(VERIFY_SERVICE_SID=VERIFY_SID, ADMIN_SIGN_IN_FLOOR_SECONDS=0)
    seed_roster(app)
    store_of(app).add_admin(ADMIN, "Tom Nook")
    client = app.test_client()
    sign_in(client, fake_twilio)
    room = main_room(app)
    path = f"/admin/rooms/{room.id}/participants/{BLATHERS}/edit"

    response = post_form(
        client,
        path,
        {"phone": BLATHERS, "name": "Blathers", "role": "participant", "code_by": "whatsapp"},
        token_from=path,
    )

    assert response.status_code == 302
    assert code_method(app, BLATHERS) == ("whatsapp", False)
    assert "WhatsApp</td>" in text_of(client.get(f"/admin/rooms/{room.id}"))


def test_resetting_an_app_participant_deletes_the_secret(admin_client, admin_app):
    enrol_app(admin_app, MABEL)
    room = main_room(admin_app)
    path = f"/admin/rooms/{room.id}/participants/{MABEL}/edit"
    flashes(admin_client)

    kept = post_form(
        admin_client,
        path,
        {"phone": MABEL, "name": "Mabel N.", "role": "participant", "code_by": "app"},
    )
    assert kept.status_code == 302
    assert code_method(admin_app, MABEL) == ("app", True)
    assert flashes(admin_client) == ["Mabel N. (+1 800-555-4321) saved."]

    reset = post_form(
        admin_client,
        path,
        {"phone": MABEL, "name": "Mabel", "role": "participant", "code_by": "sms"},
    )

    assert reset.status_code == 302
    assert code_method(admin_app, MABEL) == ("sms", False)
    assert flashes(admin_client) == [
        "Mabel (+1 800-555-4321) saved. Their authenticator app is reset: codes now go by SMS."
    ]


def test_the_invite_button_texts_the_link(admin_client, admin_app, fake_twilio):
    room = main_room(admin_app)
    path = f"/admin/rooms/{room.id}/participants/{BLATHERS}"
    flashes(admin_client)

    response = post_form(admin_client, path + "/invite", token_from=path + "/edit")
    admin_app.extensions["ivr"].sender.wait_idle()

    assert response.status_code == 302
    assert response.location == path + "/edit"
    assert flashes(admin_client) == [
        "Sent Blathers (+1 800-555-9876) a text with a link to set up an authenticator app. "
        "It works once, for 24 hours; codes go as before until they finish."
    ]
    [text] = fake_twilio.sent("message", BLATHERS)
    assert re.search(r"http://localhost/enrol/[A-Za-z0-9_-]{43} ", text["Body"])
    assert code_method(admin_app, BLATHERS) == ("sms", False)  # until they confirm


def test_without_a_number_to_text_from_the_invite_button_is_off(make_app, fake_twilio):
    app = make_app(
        VERIFY_SERVICE_SID=VERIFY_SID,
        ADMIN_VERIFY_SERVICE_SID="VA" + "e5" * 16,
        TWILIO_PHONE_NUMBER=None,
        ADMIN_SIGN_IN_FLOOR_SECONDS=0,
    )
    seed_roster(app)
    store_of(app).add_admin(ADMIN, "Tom Nook")
    client = app.test_client()
    start_sign_in(client)
    enter_code(client, fake_twilio.code_for(ADMIN))
    flashes(client)
    room = main_room(app)
    path = f"/admin/rooms/{room.id}/participants/{BLATHERS}"

    page = text_of(client.get(path + "/edit"))
    response = post_form(client, path + "/invite", token_from=path + "/edit")

    assert re.search(r"<button [^>]*disabled[^>]*>Invite to an authenticator app</button>", page)
    assert "set TWILIO_PHONE_NUMBER to send them" in page
    assert response.status_code == 302
    assert flashes(client) == [
        "No invitation was sent: invitations are text messages from the line's number: "
        "set TWILIO_PHONE_NUMBER."
    ]
    assert fake_twilio.sent("message") == []


def test_an_import_asking_for_the_app_imports_nothing(admin_client, admin_app):
    flashes(admin_client)
    csv_text = f"{TOMMY},Tommy,participant,main,sms\n{BLATHERS},Blathers,participant,main,app\n"

    response = post_form(admin_client, "/admin/participants/import/apply", {"csv_text": csv_text})

    assert response.status_code == 302
    assert flashes(admin_client) == [
        f"Nothing was imported: {BLATHERS} has no authenticator app: send them an invitation "
        "to enrol instead."
    ]
    assert TOMMY not in [p for p, _, _ in roster(admin_app)]


# -- each admin's time zone --------------------------------------------------------------------


def test_times_show_in_the_zone_the_admin_chose(admin_client, admin_app):
    store = store_of(admin_app)
    call_sid = "CA" + "7" * 32
    store.log_call(Outcome.UNKNOWN_NUMBER, CallNote(call_sid, "+18005550199", None, "main"))
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE call_log SET at = :at"), {"at": datetime(2026, 7, 1, 12)})
    assert "2026-07-01 12:00:00 UTC" in text_of(admin_client.get("/admin/calls"))

    refused = post_form(admin_client, "/admin/settings", {"time_zone": "Europe/Berln"})
    assert refused.status_code == 400
    assert "Not a valid choice." in text_of(refused)
    assert store.admin_by_phone(ADMIN).time_zone is None

    for zone, shown in [
        ("Europe/Berlin", "2026-07-01 14:00:00 CEST"),
        ("America/New_York", "2026-07-01 08:00:00 EDT"),
        ("UTC", "2026-07-01 12:00:00 UTC"),
    ]:
        saved = post_form(admin_client, "/admin/settings", {"time_zone": zone})
        assert saved.status_code == 302
        assert store.admin_by_phone(ADMIN).time_zone == zone
        calls = text_of(admin_client.get("/admin/calls"))
        assert shown in calls
        assert f"times in {zone}</footer>" in calls
        assert shown in text_of(admin_client.get(f"/admin/calls/{call_sid}"))


# -- odd input and the audit trail's edges -----------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/admin/calls?endpoint=x&room=main",
        "/admin/calls?_external=1&_anchor=x",
        "/admin/calls?page=99999999999999999999",
        "/admin/calls?phone=%00&room=ma%00in&outcome=%00",
        "/admin/calls.csv?phone=%00",
        "/admin/audit?endpoint=x&target=%00&actor=%00&action=%00",
        "/admin/audit?page=99999999999999999999",
    ],
)
def test_odd_query_strings_get_a_page_not_a_500(admin_client, admin_app, path):
    store = store_of(admin_app)
    for number in range(60):
        store.log_call(Outcome.NO_INPUT, CallNote(f"CA{number:032x}", BLATHERS, None, "main"))
        store.record_audit("command line", "admin.add", f"admin {number}")

    response = admin_client.get(path)

    assert response.status_code == 200
    assert 'href="http' not in text_of(response), "links stay relative to this host"


def test_a_call_page_for_an_odd_sid_is_404(admin_client):
    for sid in ("CA1%00", "CA" + "z" * 32, "x"):
        assert admin_client.get(f"/admin/calls/{sid}").status_code == 404


def audit_rows(app) -> list[tuple[str, str, dict | None]]:
    import json

    entries = reversed(store_of(app).audit_page(per_page=1000).entries)
    return [(e.action, e.target, json.loads(e.changes) if e.changes else None) for e in entries]


def test_saving_a_form_without_a_change_records_nothing(admin_client, admin_app):
    room = main_room(admin_app)
    same_room = {"name": "main", "line_number": "", "hold_music_url": "", "language": "en-US"}
    same_room |= {
        "moderators_anytime": "y",
        "announce_names": "y",
        "time_zone": "",
        "opening_hours": "",
    }
    before = audit_rows(admin_app)

    assert post_form(admin_client, f"/admin/rooms/{room.id}/edit", same_room).status_code == 302
    same_person = {"phone": BLATHERS, "name": "Blathers", "role": "participant", "code_by": "sms"}
    path = f"/admin/rooms/{room.id}/participants/{BLATHERS}/edit"
    assert post_form(admin_client, path, same_person).status_code == 302
    assert post_form(admin_client, "/admin/settings", {"time_zone": "UTC"}).status_code == 302

    assert audit_rows(admin_app) == before


def test_a_room_form_s_hours_get_a_row_of_their_own(admin_client, admin_app):
    room = main_room(admin_app)
    form = {"name": "main room", "line_number": "", "hold_music_url": "", "language": "en-US"}
    form |= {"moderators_anytime": "y", "announce_names": "y", "time_zone": "Europe/Berlin"}
    form |= {"opening_hours": "mon-fri 09:55-11:00"}
    before = len(audit_rows(admin_app))

    assert post_form(admin_client, f"/admin/rooms/{room.id}/edit", form).status_code == 302

    assert audit_rows(admin_app)[before:] == [
        ("room.edit", "room main room", {"name": ["main", "main room"]}),
        (
            "room.hours",
            "room main room",
            {
                "time_zone": [None, "Europe/Berlin"],
                "opening_hours": [None, "mon-fri 09:55-11:00"],
            },
        ),
    ]


def test_refused_and_failed_console_actions_record_nothing(admin_client, admin_app, fake_twilio):
    store_of(admin_app).create_room("board", "+18005550177", None)
    join_two(admin_app, fake_twilio)
    before = audit_rows(admin_app)

    taken = {"name": "board", "line_number": "", "hold_music_url": "", "language": "en-US"}
    assert post_form(admin_client, "/admin/rooms/new", taken).status_code == 400
    fake_twilio.fail("conference-participant", 500, 20500, "Internal Server Error")
    post_form(admin_client, f"/admin/live/{CALL_BLATHERS}/mute")
    fake_twilio.fail("conference", 404, 20404, "The requested resource was not found")
    post_form(admin_client, f"/admin/live/conferences/{CONFERENCE}/end")
    assert flashes(admin_client)[-1] == "The conference in main had ended already."
    post_form(admin_client, f"/admin/live/conferences/CF{'0' * 32}/end")
    assert flashes(admin_client) == ["That conference has ended already."]

    assert audit_rows(admin_app) == before
