"""Local mode and the dev phones: the whole call on one machine, without a Twilio account."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ivr import create_app
from ivr.authenticator import STEP_SECONDS, current_code, matching_step
from ivr.store import CodeBy
from tests.conftest import ACCOUNT_SID, ARTIFACTS, AUTH_TOKEN, SECRET_KEY, create_tables, serving

ROOT = Path(__file__).resolve().parent.parent


class Phone:
    """`flask --app ivr call ...` in a subprocess, read and typed into like a terminal."""

    def __init__(self, cwd: Path, instance: Path, *args: str) -> None:
        env = {
            "PATH": os.environ["PATH"],
            "PYTHONPATH": str(ROOT),
            "HOME": str(cwd),
            "INSTANCE_PATH": str(instance),
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "ivr", "call", *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self.output = ""

    def read_until(self, marker: str) -> str:
        while marker not in self.output:
            char = self.process.stdout.read(1)
            if not char:
                raise AssertionError(f"the phone ended before {marker!r}:\n{self.output}")
            self.output += char
        return self.output

    def type(self, line: str) -> None:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def finish(self) -> str:
        # Not communicate(): it would bypass what read(1) already buffered.
        self.process.stdin.close()
        self.output += self.process.stdout.read()
        self.process.wait(timeout=60)
        assert self.process.returncode == 0, self.output
        return self.output

    def code(self) -> str:
        return re.findall(r"\[SMS to \+\d+\] Your code is (\d{6})", self.output)[-1]


KEYPAD = "Keypad (digits, then Enter; empty line = no input)> "


def test_terminal_phone_on_a_fresh_clone_reaches_the_conference(tmp_path):
    instance = tmp_path / "instance"
    phone = Phone(tmp_path, instance, "+18005559876")

    phone.read_until(KEYPAD)
    phone.type(phone.code())
    phone.read_until("Press Enter to hang up.")
    phone.type("")
    output = phone.finish()

    assert output.splitlines() == [
        "Calling +18005550100 as +18005559876 ...",
        "Line: Welcome Blathers. Please enter the 6 digit code sent to your device.",
        f"[SMS to +18005559876] Your code is {phone.code()}",
        KEYPAD + phone.code(),
        "Line: That was correct. Joining conference.",
        "*** Joined conference main as participant.",
        "(Hold music: conference main waits for a moderator.)",
        "(In the conference. Press Enter to hang up.)",
        "",
        "*** You hung up.",
    ]
    # Local mode made its own database and secrets, in the instance folder only (the .migrating
    # file is the lock that keeps two processes from creating the schema at once).
    assert sorted(p.name for p in instance.iterdir()) == [
        "ivr.sqlite3",
        "ivr.sqlite3.migrating",
        "local_signing_token",
        "secret_key",
    ]


def test_terminal_phone_shows_refusals_lockouts_and_no_input(tmp_path):
    instance = tmp_path / "instance"
    stranger = Phone(tmp_path, instance, "+18005550199").finish()
    assert stranger.splitlines()[-2:] == [
        "Line: Sorry, I don't recognize the number you're calling from.",
        "*** Refused: the line does not accept this caller.",
    ]

    withheld = Phone(tmp_path, instance, "Anonymous").finish()
    assert withheld.splitlines()[-1] == "*** Refused: the line does not accept this caller."

    phone = Phone(tmp_path, instance, "+18005554321")
    phone.read_until(KEYPAD)
    wrong = f"{(int(phone.code()) + 1) % 10**6:06d}"
    for attempt in (wrong, "12", wrong):
        phone.read_until(KEYPAD)
        phone.output = ""
        phone.type(attempt)
    output = phone.finish()
    assert output.splitlines()[-1] == "*** Locked out."
    assert "Line: Too many incorrect codes. This number is locked for 10 minutes." in output

    quiet = Phone(tmp_path, instance, "+18005556789")
    for _ in range(4):
        quiet.read_until(KEYPAD)
        quiet.output = ""
        quiet.type("")
    assert quiet.finish().splitlines()[-2:] == [
        "Line: I didn't receive a code. Goodbye.",
        "*** Hung up: no code was entered.",
    ]


@pytest.fixture
def local_app(tmp_path):
    app = create_app({"INSTANCE_PATH": str(tmp_path / "instance")})
    yield app
    app.extensions["ivr"].store.dispose()


@pytest.fixture
def live_server(local_app):
    with serving(local_app) as base:
        yield base


def test_terminal_phone_against_a_running_server(tmp_path, live_server, local_app):
    phone = Phone(tmp_path, tmp_path / "instance", "+18005551234", "--url", live_server)

    phone.read_until(KEYPAD)
    phone.type(phone.code())
    phone.read_until("Press Enter to hang up.")
    phone.type("")
    output = phone.finish()

    assert "*** Joined conference main as moderator." in output
    # The code came from the server's outbox, which the server printed, not the phone's own.
    assert [m.to for m in local_app.extensions["ivr"].outbox.messages()] == ["+18005551234"]


def test_the_outbox_is_only_for_signed_requests(live_server):
    import requests

    assert requests.get(f"{live_server}/dev/outbox?to=%2B18005551234", timeout=5).status_code == 403


def test_with_credentials_there_is_no_demo_data_no_secrets_and_no_dev_phone(tmp_path):
    instance = tmp_path / "instance"
    app = create_app(
        {
            "INSTANCE_PATH": str(instance),
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_PHONE_NUMBER": "+18005550100",
            "SECRET_KEY": SECRET_KEY,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'line.sqlite3'}",
        }
    )
    store = app.extensions["ivr"].store
    create_tables(store)

    assert store.participants() == []
    assert not instance.exists() or list(instance.iterdir()) == []
    client = app.test_client()
    assert client.get("/dev/phone").status_code == 404
    assert client.get("/dev/outbox?to=%2B18005551234").status_code == 404
    store.dispose()


def test_local_mode_loads_the_examples_once(local_app):
    store = local_app.extensions["ivr"].store
    assert [(p.room, p.phone, p.name, p.role.value) for p in store.participants()] == [
        # The German example room (README: Languages).
        ("berlin", "+18005551234", "Moderator", "moderator"),
        ("berlin", "+18005559876", "Blathers", "participant"),
        ("berlin", "+18005554321", "Mabel", "participant"),
        ("main", "+18005551234", "Moderator", "moderator"),
        ("main", "+18005559876", "Blathers", "participant"),
        ("main", "+18005554321", "Mabel", "participant"),
        ("main", "+18005556789", "Tommy", "participant"),
        # The closed example room (README: Opening hours).
        ("night", "+18005551234", "Moderator", "moderator"),
        ("night", "+18005554321", "Mabel", "participant"),
    ]
    assert [(p.phone, p.name, p.role.value) for p in store.participants("berlin")] == [
        ("+18005551234", "Moderator", "moderator"),
        ("+18005559876", "Blathers", "participant"),
        ("+18005554321", "Mabel", "participant"),
    ]
    store.remove_participant("+18005556789")
    again = create_app({"INSTANCE_PATH": local_app.instance_path})
    assert len(again.extensions["ivr"].store.participants()) == 8
    assert [room.name for room in again.extensions["ivr"].store.rooms()] == [
        "berlin",
        "main",
        "night",
    ]
    again.extensions["ivr"].store.dispose()


def test_local_mode_has_a_room_that_speaks_german(local_app):
    berlin = local_app.extensions["ivr"].store.room_named("berlin")
    assert (berlin.line_number, berlin.language, berlin.time_zone) == (
        "+18005550149",
        "de-DE",
        "Europe/Berlin",
    )
    # The browser phone can dial its line.
    page = local_app.test_client().get("/dev/phone").get_data(as_text=True)
    assert '<option value="+18005550149">+18005550149 (berlin, Deutsch)</option>' in page
    assert '<option value="+18005550100">+18005550100 (main)</option>' in page


def test_terminal_phone_hears_the_german_room_in_german(tmp_path):
    phone = Phone(tmp_path, tmp_path / "instance", "+18005559876", "--to", "+18005550149")

    phone.read_until(KEYPAD)
    code = re.findall(r"\[SMS to \+18005559876\] Ihr Code lautet (\d{6})", phone.output)[-1]
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    phone.type(wrong)
    phone.read_until("Bitte versuchen Sie es noch einmal.")
    phone.read_until(KEYPAD)
    phone.type(code)
    phone.read_until("Press Enter to hang up.")
    phone.type("")
    lines = phone.finish().splitlines()

    assert lines[:8] == [
        "Calling +18005550149 as +18005559876 ...",
        "Line [de-DE]: Willkommen, Blathers. Bitte geben Sie den sechsstelligen Code ein, "
        "der an Ihr Gerät gesendet wurde.",
        f"[SMS to +18005559876] Ihr Code lautet {code}",
        KEYPAD + wrong,
        "Line [de-DE]: Dieser Code ist nicht korrekt. Bitte versuchen Sie es noch einmal.",
        KEYPAD + code,
        "Line [de-DE]: Der Code ist korrekt. Sie werden jetzt mit der Konferenz verbunden.",
        "*** Joined conference berlin as participant.",
    ]


def test_local_webhooks_still_demand_a_signature(local_app):
    response = local_app.test_client().post("/voice", data={"From": "+18005559876"})
    assert response.status_code == 403


# -- the browser dev phone -------------------------------------------------------------------


def open_phone(context, base, errors):
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(f"{base}/dev/phone")
    return page


def call_from(page, phone):
    # Playwright waits for animation frames, which a background tab hardly gets.
    page.bring_to_front()
    page.select_option("#caller", phone)
    page.click("#dial")
    page.wait_for_selector("#inbox li:not(.empty)")
    code = re.search(r"Your code is (\d{6})", page.inner_text("#inbox")).group(1)
    for digit in code:
        page.click(f'.key[data-key="{digit}"]')
    page.wait_for_selector("#transcript li.end >> text=Joined conference main")


def test_browser_phone_plays_the_moderated_conference(browser, live_server):
    errors: list[str] = []
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    blathers = open_phone(context, live_server, errors)
    mabel = open_phone(context, live_server, errors)
    moderator = open_phone(context, live_server, errors)

    call_from(blathers, "+18005559876")
    call_from(mabel, "+18005554321")
    panel = moderator.locator("#conferences .conference")
    panel.filter(has_text="waiting for a moderator").filter(has_text="Mabel").wait_for()
    assert "Blathers +18005559876" in panel.inner_text()

    call_from(moderator, "+18005551234")
    panel.filter(has_text="started").wait_for()
    blathers.wait_for_selector("#transcript >> text=The moderator has joined")
    moderator.screenshot(path=str(ARTIFACTS / "devphone-conference.png"), full_page=True)

    moderator.bring_to_front()
    moderator.click("#hangup")
    blathers.wait_for_selector("#transcript >> text=the conference has ended")
    mabel.wait_for_selector("#transcript >> text=the conference has ended")
    moderator.locator("#conferences").filter(has_text="Nobody is in a conference").wait_for()
    blathers.screenshot(path=str(ARTIFACTS / "devphone-ended.png"), full_page=True)
    assert errors == []


def test_the_dev_phone_pages_are_only_for_this_machine(local_app):
    client = local_app.test_client()
    elsewhere = {"REMOTE_ADDR": "203.0.113.9"}
    assert client.get("/dev/phone", environ_base=elsewhere).status_code == 404
    status = client.get("/dev/phone/status?phone=%2B18005559876", environ_base=elsewhere)
    assert status.status_code == 404
    assert client.get("/dev/phone").status_code == 200


def test_local_mode_on_a_configured_database_loads_no_examples(tmp_path):
    app = create_app(
        {
            "INSTANCE_PATH": str(tmp_path / "instance"),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'real.sqlite3'}",
        }
    )
    store = app.extensions["ivr"].store
    assert app.config["LOCAL_MODE"] is True
    assert store.participants() == []
    store.dispose()


def test_a_moderator_alone_waits_for_someone_else(tmp_path):
    phone = Phone(tmp_path, tmp_path / "instance", "+18005551234")
    phone.read_until(KEYPAD)
    phone.type(phone.code())
    phone.read_until("Press Enter to hang up.")
    phone.type("")
    output = phone.finish()
    assert "(Hold music: conference main starts when someone else joins.)" in output


# -- Tommy uses an authenticator app -----------------------------------------------------------

TOMMY = "+18005556789"


def app_codes_now(app) -> set[str]:
    """Tommy's app's code now, and one step either side (a step may turn between two reads)."""
    found = app.extensions["ivr"]
    secret = found.apps.open(found.store.app_secret_of(TOMMY))
    now = time.time()
    return {current_code(secret, now + offset) for offset in (-STEP_SECONDS, 0, STEP_SECONDS)}


def test_local_mode_enrols_tommy_for_an_authenticator_app(local_app):
    store = local_app.extensions["ivr"].store
    methods = {p.phone: p.code_by for p in store.participants()}
    assert methods == {
        "+18005551234": CodeBy.SMS,
        "+18005559876": CodeBy.SMS,
        "+18005554321": CodeBy.SMS,
        TOMMY: CodeBy.APP,
    }
    # Sealed under the instance's SECRET_KEY, and open with it.
    assert len(local_app.extensions["ivr"].apps.open(store.app_secret_of(TOMMY))) == 32


def test_terminal_phone_shows_tommys_app_code_and_he_joins_with_it(tmp_path):
    instance = tmp_path / "instance"
    phone = Phone(tmp_path, instance, TOMMY)

    phone.read_until(KEYPAD)
    shown = re.search(r"\[Authenticator app of \+18005556789\] (\d{3}) (\d{3})", phone.output)
    code = shown.group(1) + shown.group(2)
    phone.type(code)
    phone.read_until("Press Enter to hang up.")
    phone.type("")
    output = phone.finish()

    lines = output.splitlines()
    assert lines[:4] == [
        "Calling +18005550100 as +18005556789 ...",
        "Line: Welcome Tommy. Please enter the 6 digit code from your authenticator app.",
        f"[Authenticator app of +18005556789] {code[:3]} {code[3:]} (a new code every 30 s)",
        KEYPAD + code,
    ]
    assert "*** Joined conference main as participant." in lines
    assert "[SMS to" not in output
    app = create_app({"INSTANCE_PATH": str(instance)})
    found = app.extensions["ivr"]
    secret = found.apps.open(found.store.app_secret_of(TOMMY))
    assert matching_step(secret, code) is not None
    app.extensions["ivr"].store.dispose()


def test_the_browser_phone_status_shows_an_app_code_only_for_app_users(local_app):
    client = local_app.test_client()

    tommy = client.get("/dev/phone/status?phone=%2B18005556789").get_json()
    blathers = client.get("/dev/phone/status?phone=%2B18005559876").get_json()

    assert tommy["app_code"] in app_codes_now(local_app)
    assert blathers["app_code"] is None


def test_browser_phone_tommy_joins_with_the_code_his_app_shows(browser, live_server):
    errors: list[str] = []
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    page = open_phone(context, live_server, errors)

    page.select_option("#caller", TOMMY)
    page.click("#dial")
    # The app panel shows as soon as Tommy is chosen (his app runs whether he calls or not);
    # the line's question arrives with the call.
    page.wait_for_selector("#app-panel:not([hidden])")
    page.wait_for_selector("#transcript >> text=code from your authenticator app")
    code = page.inner_text("#app-code").replace(" ", "")
    for digit in code:
        page.click(f'.key[data-key="{digit}"]')
    page.wait_for_selector("#transcript li.end >> text=Joined conference main")
    assert page.inner_text("#inbox") == "No messages."
    page.screenshot(path=str(ARTIFACTS / "devphone-app-code.png"), full_page=True)
    assert errors == []


def test_browser_phone_dials_the_closed_example_room(browser, live_server, local_app):
    from datetime import datetime
    from zoneinfo import ZoneInfo

    # A Monday noon in Berlin: the room "night" opens on Sundays at 03:00.
    noon = datetime(2026, 11, 23, 12, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    local_app.extensions["ivr"].clock = lambda: noon
    errors: list[str] = []
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    page = open_phone(context, live_server, errors)
    assert page.inner_text("#line").splitlines() == [
        "+18005550100 (main)",
        "+18005550149 (berlin, Deutsch)",
        "+18005550102 (night, English (US))",
    ]

    page.select_option("#caller", "+18005554321")
    page.select_option("#line", "+18005550102")
    page.click("#dial")

    page.wait_for_selector("#transcript >> text=The line hung up")
    assert "This meeting room opens on Sunday at 3:00 a.m., Berlin time. Goodbye." in (
        page.inner_text("#transcript")
    )
    assert page.inner_text("#inbox") == "No messages."
    page.screenshot(path=str(ARTIFACTS / "devphone-room-closed.png"), full_page=True)


def test_browser_phone_dials_the_german_room(browser, live_server):
    errors: list[str] = []
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    page = open_phone(context, live_server, errors)

    page.select_option("#caller", "+18005559876")
    page.select_option("#line", "+18005550149")
    page.click("#dial")
    page.wait_for_selector("#inbox li:not(.empty)")
    code = re.search(r"Ihr Code lautet (\d{6})", page.inner_text("#inbox")).group(1)
    for digit in code:
        page.click(f'.key[data-key="{digit}"]')
    page.wait_for_selector("#transcript li.end >> text=Joined conference berlin")
    transcript = page.inner_text("#transcript")
    assert "Line [de-DE]: Willkommen, Blathers." in transcript
    assert "Line [de-DE]: Der Code ist korrekt." in transcript
    page.screenshot(path=str(ARTIFACTS / "devphone-german-room.png"), full_page=True)
    assert errors == []
