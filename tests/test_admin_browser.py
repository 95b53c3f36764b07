"""The console in real headless Chromium: sign in, add, import, find, unlock, mute.

Needs Debian's chromium at /usr/bin/chromium (CI installs it); set IVR_SKIP_BROWSER=1 to skip.
Every page visited is saved as a PNG in tests/artifacts/ for review.
"""

from __future__ import annotations

import json
import re

import pyotp
import pytest
from sqlalchemy import select

from ivr.store import CodeBy, Participant
from tests.conftest import (
    ACCOUNT_SID,
    ADMIN,
    ARTIFACTS,
    BLATHERS,
    MABEL,
    call_params,
    enrol_app,
    lock_out,
    signed_post,
)

CONFERENCE = "CF" + "d4" * 16
CALL_BLATHERS = "CA" + "b1" * 16
TOMMY = "+18005556789"


@pytest.fixture
def page(browser):
    """A page that records every JavaScript error and accepts confirmation dialogs."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.js_errors = []
    page.on(
        "console",
        lambda message: page.js_errors.append(message.text) if message.type == "error" else None,
    )
    page.on("pageerror", lambda error: page.js_errors.append(str(error)))
    page.on("dialog", lambda dialog: dialog.accept())
    page.set_default_timeout(10_000)
    yield page
    context.close()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"admin-{name}.png"), full_page=True)


def flash_text(page) -> str:
    return page.locator(".flashes").inner_text()


def a_day_on_the_line(app, fake) -> None:
    """Calls the console will show: a join, a stranger, and Blathers in the conference now."""
    line = app.test_client()
    signed_post(line, "/voice", call_params(BLATHERS, call_sid=CALL_BLATHERS))
    app.extensions["ivr"].sender.wait_idle()
    code = fake.code_for(BLATHERS)
    signed_post(line, "/gather", call_params(BLATHERS, call_sid=CALL_BLATHERS, Digits=code))
    signed_post(line, "/voice", call_params("+18005550199", call_sid="CA" + "f0" * 16))
    conference = {"AccountSid": ACCOUNT_SID, "ConferenceSid": CONFERENCE, "FriendlyName": "main"}
    signed_post(
        line, "/conference/events", {**conference, "StatusCallbackEvent": "conference-start"}
    )
    signed_post(
        line,
        "/conference/events",
        {
            **conference,
            "StatusCallbackEvent": "participant-join",
            "CallSid": CALL_BLATHERS,
            "ParticipantLabel": "Blathers",
            "Muted": "false",
        },
    )
    lock_out(app.extensions["ivr"].store, "+18005554321")
    fake.reset()


def test_an_admin_runs_the_line_from_the_browser(
    page, live_server, admin_app, fake_twilio, tmp_path
):
    store = admin_app.extensions["ivr"].store
    a_day_on_the_line(admin_app, fake_twilio)

    # Sign in with the code the fake Twilio texted.
    page.goto(f"{live_server}/admin/")
    assert page.url == f"{live_server}/admin/sign-in"
    shot(page, "01-sign-in")
    page.get_by_label("Your phone number").fill("+1 800 555 0111")
    page.get_by_role("button", name="Continue").click()
    page.get_by_label("Text message (SMS)").check()
    shot(page, "02-choose-channel")
    page.get_by_role("button", name="Send code").click()
    assert "a code is on its way by text message" in flash_text(page)
    # The code goes out in the background, after the page has answered.
    page.get_by_label("Code").fill(fake_twilio.code_for(ADMIN, wait=5))
    shot(page, "03-enter-code")
    page.get_by_role("button", name="Sign in").click()
    assert page.url == f"{live_server}/admin/"
    assert "Welcome, Nook." in flash_text(page)
    shot(page, "04-overview")

    # Add a participant to the main room.
    page.get_by_role("link", name="Rooms & participants").click()
    shot(page, "05-rooms")
    page.get_by_role("link", name="main", exact=True).click()
    page.get_by_label("Phone number").fill("+1 800 555 6789")
    page.get_by_label("Name").fill("Tommy")
    page.get_by_label("Role").select_option("moderator")
    page.get_by_role("button", name="Add participant").click()
    assert "Tommy (+1 800-555-6789) added as moderator." in flash_text(page)
    assert page.get_by_role("cell", name="+1 800-555-6789").is_visible()
    shot(page, "06-room")
    assert (TOMMY, "Tommy") in [(p.phone, p.name) for p in store.participants("main")]

    # Import a CSV: preview first, then apply.
    csv_file = tmp_path / "neighbours.csv"
    csv_file.write_text("phone,name,role,room\n+18005550123,Timmy,participant,main\n")
    page.get_by_role("link", name="Rooms & participants").click()
    page.get_by_role("link", name="Import CSV").click()
    page.get_by_label("CSV file").set_input_files(str(csv_file))
    page.get_by_role("button", name="Preview import").click()
    assert page.get_by_role("heading", name="Preview: 1 participant").is_visible()
    shot(page, "07-import-preview")
    assert "+18005550123" not in [p.phone for p in store.participants()]
    page.get_by_role("button", name="Apply import").click()
    assert "Imported 1 participant." in flash_text(page)
    assert "+18005550123" in [p.phone for p in store.participants("main")]

    # Find Blathers' call in the log.
    page.get_by_role("link", name="Call log").click()
    page.get_by_label("Number").fill("555 9876")
    page.get_by_label("Outcome").select_option("joined as participant")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("tbody tr")
    assert rows.count() == 1
    assert "Blathers" in rows.first.inner_text()
    assert "joined as participant" in rows.first.inner_text()
    shot(page, "08-call-log")
    # Open the call: its steps, in order.
    rows.first.get_by_role("link", name=re.compile(r"\d+ events")).click()
    assert page.get_by_role("heading", name="Call from +1 800-555-9876 (Blathers)").is_visible()
    steps = page.locator("tbody .badge").all_inner_texts()
    assert steps[:2] == ["code sent", "joined as participant"]
    shot(page, "08b-call-events")

    # Unlock Mabel's number.
    page.get_by_role("link", name="Lockouts").click()
    shot(page, "09-lockouts")
    page.get_by_role("button", name="Unlock +1 800-555-4321").click()
    assert "+1 800-555-4321 is unlocked." in flash_text(page)
    assert store.locked_until("+18005554321") is None
    shot(page, "10-lockouts-after")

    # Mute Blathers in the live conference: Twilio's Participants API is called.
    page.get_by_role("link", name="Live").click()
    shot(page, "11-live")
    page.get_by_role("button", name="Mute Blathers").click()
    assert "Blathers is muted." in flash_text(page)
    assert page.get_by_role("button", name="Unmute Blathers").is_visible()
    path = f"/api/2010-04-01/Accounts/{ACCOUNT_SID}/Conferences/{CONFERENCE}"
    assert fake_twilio.requests_of("conference-participant") == [
        ("POST", f"{path}/Participants/{CALL_BLATHERS}.json", {"Muted": "true"})
    ]
    shot(page, "12-live-muted")

    # Someone joins while the admin watches: the live view shows them without a reload.
    mabel_joins(admin_app)
    page.get_by_role("button", name="Mute Mabel").wait_for(timeout=10_000)
    assert "Blathers is muted." in flash_text(page)

    # The layout holds on a phone-sized screen.
    page.set_viewport_size({"width": 390, "height": 844})
    page.get_by_role("link", name="Overview").click()
    shot(page, "13-overview-phone")

    page.get_by_role("button", name="Sign out").click()
    assert page.url == f"{live_server}/admin/sign-in"
    assert "You are signed out." in flash_text(page)

    assert page.js_errors == []


def sign_in_in_browser(page, base: str, fake) -> None:
    page.goto(f"{base}/admin/sign-in")
    page.get_by_label("Your phone number").fill(ADMIN)
    page.get_by_role("button", name="Continue").click()
    page.get_by_label("Text message (SMS)").check()
    page.get_by_role("button", name="Send code").click()
    page.get_by_label("Code").fill(fake.code_for(ADMIN, wait=5))
    page.get_by_role("button", name="Sign in").click()
    assert page.url == f"{base}/admin/"


def mabel_joins(app) -> None:
    """Twilio tells the line that Mabel entered the main room's conference."""
    signed_post(
        app.test_client(),
        "/conference/events",
        {
            "AccountSid": ACCOUNT_SID,
            "ConferenceSid": CONFERENCE,
            "FriendlyName": "main",
            "StatusCallbackEvent": "participant-join",
            "CallSid": "CA" + "e1" * 16,
            "ParticipantLabel": "Mabel",
        },
    )


def edit_participant(page, name: str) -> None:
    page.get_by_role("link", name="Rooms & participants").click()
    page.get_by_role("link", name="main", exact=True).click()
    page.get_by_role("row").filter(has_text=name).get_by_role("link", name="Edit").click()


def test_an_admin_invites_and_resets_authenticator_apps(page, live_server, admin_app, fake_twilio):
    store = admin_app.extensions["ivr"].store
    enrol_app(admin_app, MABEL)
    sign_in_in_browser(page, live_server, fake_twilio)

    # Blathers is invited; the text holds a link to this server.
    edit_participant(page, "Blathers")
    page.get_by_role("button", name="Invite to an authenticator app").click()
    assert "Sent Blathers (+1 800-555-9876) a text with a link" in flash_text(page)
    shot(page, "20-invited")
    admin_app.extensions["ivr"].sender.wait_idle()
    [text] = fake_twilio.sent("message", BLATHERS)
    link = re.search(rf"{live_server}/enrol/\S+", text["Body"]).group(0)

    # Blathers opens it in the same browser, types the key into an app, confirms a code.
    page.goto(link)
    assert page.locator(".qr svg").is_visible()
    shot(page, "21-enrol")
    secret = page.locator("#secret").inner_text().replace(" ", "")
    page.get_by_label("Code your app shows now").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Confirm").click()
    assert page.get_by_role("heading", name="Your app is set up").is_visible()
    assert {p.phone: p.code_by for p in store.participants("main")}[BLATHERS] == CodeBy.APP

    # Mabel lost her phone: back to SMS, and her app's secret is gone.
    page.goto(f"{live_server}/admin/")
    edit_participant(page, "Mabel")
    assert page.get_by_label("Codes by").input_value() == "app"
    page.get_by_label("Codes by").select_option("sms")
    page.get_by_role("button", name="Save").click()
    assert "Their authenticator app is reset: codes now go by SMS." in flash_text(page)
    row = page.get_by_role("row").filter(has_text="Mabel")
    assert "SMS" in row.inner_text()
    shot(page, "22-reset")
    with store.engine.connect() as connection:
        assert connection.execute(
            select(Participant.code_by, Participant.app_secret).where(Participant.phone == MABEL)
        ).one() == ("sms", None)
    assert page.js_errors == []


class AuditTrail:
    """The rows the audit trail gained since the last look."""

    def __init__(self, store):
        self.store = store
        self.seen = store.audit_page(per_page=1).total

    def new_rows(self) -> list[tuple[str, str, str, dict | None]]:
        entries = self.store.audit_page(per_page=1000).entries
        fresh = list(reversed(entries))[self.seen :]
        self.seen += len(fresh)
        return [
            (e.actor, e.action, e.target, json.loads(e.changes) if e.changes else None)
            for e in fresh
        ]


def test_every_change_in_the_console_leaves_one_audit_row(
    page, live_server, admin_app, fake_twilio, tmp_path
):
    store = admin_app.extensions["ivr"].store
    a_day_on_the_line(admin_app, fake_twilio)
    trail = AuditTrail(store)
    nook = "Nook (+1 800-555-0111)"

    sign_in_in_browser(page, live_server, fake_twilio)
    assert trail.new_rows() == [(nook, "admin.sign_in", nook, None)]

    page.get_by_role("link", name="Rooms & participants").click()
    page.get_by_role("link", name="New room").click()
    page.get_by_label("Name", exact=True).fill("board")
    page.get_by_label("Line number").fill("+1 800 555 0100")
    page.get_by_role("button", name="Create room").click()
    assert "Room board created." in flash_text(page)
    assert trail.new_rows() == [
        (
            nook,
            "room.create",
            "room board",
            {
                "name": "board",
                "line_number": "+18005550100",
                "hold_music_url": None,
                "time_zone": None,
                "opening_hours": None,
                "moderators_anytime": True,
                "announce_names": True,
                "language": "en-US",
            },
        )
    ]

    page.get_by_role("link", name="Edit room").click()
    page.get_by_label("Name", exact=True).fill("boardroom")
    page.get_by_role("button", name="Save room").click()
    assert trail.new_rows() == [
        (nook, "room.edit", "room boardroom", {"name": ["board", "boardroom"]})
    ]

    page.get_by_label("Phone number").fill("+1 800 555 6789")
    page.get_by_label("Name").fill("Tommy")
    page.get_by_role("button", name="Add participant").click()
    tommy = "Tommy (+1 800-555-6789) in boardroom"
    assert trail.new_rows() == [
        (
            nook,
            "participant.add",
            tommy,
            {"phone": TOMMY, "name": "Tommy", "role": "participant"},
        )
    ]

    page.get_by_role("row").filter(has_text="Tommy").get_by_role("link", name="Edit").click()
    page.get_by_label("Role").select_option("moderator")
    page.get_by_role("button", name="Save").click()
    assert trail.new_rows() == [
        (nook, "participant.edit", tommy, {"role": ["participant", "moderator"]})
    ]

    page.get_by_role("row").filter(has_text="Tommy").get_by_role("link", name="Edit").click()
    page.get_by_role("button", name="Invite to an authenticator app").click()
    assert "Sent Tommy" in flash_text(page)
    assert trail.new_rows() == [(nook, "participant.invite", tommy, None)]

    page.get_by_role("link", name="Rooms & participants").click()
    page.get_by_role("link", name="boardroom", exact=True).click()
    page.get_by_role("row").filter(has_text="Tommy").get_by_role("button", name="Remove").click()
    assert "removed from boardroom" in flash_text(page)
    assert trail.new_rows() == [(nook, "participant.remove", tommy, None)]

    csv_file = tmp_path / "two.csv"
    csv_file.write_text(
        "phone,name,role,room\n+18005550123,Timmy,participant,main\n"
        "+18005556789,Tommy,moderator,boardroom\n"
    )
    page.get_by_role("link", name="Rooms & participants").click()
    page.get_by_role("link", name="Import CSV").click()
    page.get_by_label("CSV file").set_input_files(str(csv_file))
    page.get_by_role("button", name="Preview import").click()
    page.get_by_role("button", name="Apply import").click()
    assert trail.new_rows() == [(nook, "participant.import", "rooms boardroom, main", {"rows": 2})]

    page.get_by_role("link", name="Lockouts").click()
    page.get_by_role("button", name="Unlock +1 800-555-4321").click()
    assert trail.new_rows() == [(nook, "lockout.unlock", "+1 800-555-4321 (line)", None)]

    page.get_by_role("link", name="Live").click()
    page.get_by_role("button", name="Mute Blathers").click()
    page.get_by_role("button", name="Unmute Blathers").click()
    assert trail.new_rows() == [
        (nook, "live.mute", "Blathers in main", None),
        (nook, "live.unmute", "Blathers in main", None),
    ]
    page.get_by_role("button", name="Remove").click()
    assert "Blathers was removed from main." in flash_text(page)
    assert trail.new_rows() == [(nook, "live.remove", "Blathers in main", None)]
    mabel_joins(admin_app)
    page.get_by_role("link", name="Live").click()
    page.get_by_role("button", name="End conference").click()
    assert trail.new_rows() == [(nook, "live.end", "conference in main", None)]

    page.get_by_role("link", name="Rooms & participants").click()
    page.get_by_role("row").filter(has_text="boardroom").get_by_role("link", name="Delete").click()
    page.get_by_role("button", name="Delete boardroom").click()
    assert trail.new_rows() == [(nook, "room.delete", "room boardroom", {"participants": 1})]

    page.get_by_role("link", name="Nook").click()
    page.get_by_label("Show times in").select_option("Europe/Berlin")
    page.get_by_role("button", name="Save").click()
    assert "Times are now shown in Europe/Berlin." in flash_text(page)
    assert trail.new_rows() == [
        (nook, "admin.time_zone", nook, {"time_zone": ["UTC", "Europe/Berlin"]})
    ]

    # The trail, in the admin's zone, filtered by action.
    page.get_by_role("link", name="Audit").click()
    page.get_by_label("Action").select_option("live.mute")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("tbody tr")
    assert rows.count() == 1
    row = rows.first.inner_text()
    assert "Caller muted" in row and "Blathers in main" in row
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d CET", row)
    assert "times in Europe/Berlin" in page.locator("footer").inner_text()
    shot(page, "30-audit")

    page.get_by_role("button", name="Sign out").click()
    assert trail.new_rows() == [(nook, "admin.sign_out", nook, None)]


def test_an_admin_sets_opening_hours_and_a_bad_line_is_named(
    page, live_server, admin_app, fake_twilio
):
    store = admin_app.extensions["ivr"].store
    sign_in_in_browser(page, live_server, fake_twilio)
    page.get_by_role("link", name="Rooms & participants").click()
    page.get_by_role("row").filter(has_text="main").get_by_role("link", name="Edit").click()

    # One bad line: the form says which, and nothing is saved.
    page.get_by_label("Time zone").fill("Europe/Berlin")
    page.get_by_label("Opening hours").fill("mon-fri 09:55-11:00\nmox 15:00-16:00")
    page.get_by_label("Moderators may call any time").uncheck()
    page.get_by_label("Language").select_option("de-DE")
    page.get_by_role("button", name="Save room").click()
    error = page.locator("#opening_hours-error").inner_text()
    assert error == "Line 2: unknown day 'mox' (use mon tue wed thu fri sat sun)."
    assert page.get_by_label("Opening hours").get_attribute("aria-invalid") == "true"
    shot(page, "30-hours-refused")
    # The refused form's page comes with status 400, which Chromium reports on its console.
    assert page.js_errors == [
        "Failed to load resource: the server responded with a status of 400 (BAD REQUEST)"
    ]
    page.js_errors.clear()
    main = store.room_named("main")
    assert (main.time_zone, main.opening_hours, main.moderators_anytime, main.language) == (
        None,
        None,
        True,
        "en-US",
    )

    # Fixed: saved in canonical form, and the rooms table shows it.
    page.get_by_label("Opening hours").fill("Mon-Fri 9:55-11:00\n2026-12-03 15:00-16:30")
    page.get_by_role("button", name="Save room").click()
    assert "Room main saved." in flash_text(page)
    assert "mon-fri 09:55-11:00" in page.locator(".room-hours").inner_text()
    main = store.room_named("main")
    assert (main.time_zone, main.opening_hours, main.moderators_anytime, main.language) == (
        "Europe/Berlin",
        "mon-fri 09:55-11:00\n2026-12-03 15:00-16:30",
        False,
        "de-DE",
    )
    page.get_by_role("link", name="Rooms", exact=True).click()
    row = page.get_by_role("row").filter(has_text="main").inner_text()
    assert "mon-fri 09:55-11:00" in row and "2026-12-03 15:00-16:30" in row
    assert "Europe/Berlin time" in row and "Deutsch" in row
    shot(page, "31-hours-saved")
    assert page.js_errors == []


PHONE_WIDTH = 390


def test_every_console_page_fits_a_phone(browser, live_server, admin_app, fake_twilio, tmp_path):
    """At 390 px wide no page is wider than the screen and every control is on it."""
    a_day_on_the_line(admin_app, fake_twilio)
    room_id = admin_app.extensions["ivr"].store.room_named("main").id
    context = browser.new_context(viewport={"width": PHONE_WIDTH, "height": 844})
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.goto(f"{live_server}/admin/sign-in")
    check_fits_a_phone(page, "sign-in")
    sign_in_in_browser(page, live_server, fake_twilio)

    pages = {
        "overview": "/admin/",
        "rooms": "/admin/rooms",
        "new-room": "/admin/rooms/new",
        "room": f"/admin/rooms/{room_id}",
        "edit-room": f"/admin/rooms/{room_id}/edit",
        "delete-room": f"/admin/rooms/{room_id}/delete",
        "edit-participant": f"/admin/rooms/{room_id}/participants/{BLATHERS}/edit",
        "import": "/admin/participants/import",
        "calls": "/admin/calls",
        "call": f"/admin/calls/{CALL_BLATHERS}",
        "lockouts": "/admin/lockouts",
        "live": "/admin/live",
        "audit": "/admin/audit",
        "settings": "/admin/settings",
    }
    for name, path in pages.items():
        page.goto(f"{live_server}{path}")
        check_fits_a_phone(page, name)

    csv_file = tmp_path / "one.csv"
    csv_file.write_text("phone,name,role,room,code_by\n+18005550123,Timmy,participant,main,sms\n")
    page.goto(f"{live_server}/admin/participants/import")
    page.get_by_label("CSV file").set_input_files(str(csv_file))
    page.get_by_role("button", name="Preview import").click()
    check_fits_a_phone(page, "import-preview")
    context.close()


def check_fits_a_phone(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"phone-{name}.png"), full_page=True)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE_WIDTH, f"{name} is {width} px wide"
    # Every control a person may need is within the screen, not scrolled away inside a table.
    outside = page.evaluate(
        """(width) => [...document.querySelectorAll('a, button, input, select, textarea')]
            .filter((el) => el.offsetParent !== null && el.type !== 'hidden')
            .filter((el) => !el.matches('.skip-link'))  // on screen only when focused
            .filter((el) => {
                const box = el.getBoundingClientRect();
                return box.left < 0 || box.right > width + 0.5;
            })
            .map((el) => el.outerHTML.slice(0, 80))""",
        PHONE_WIDTH,
    )
    assert outside == [], f"{name}: {outside}"
