"""The seed tutorial's settings alone run the line; console sign-in turns itself off and says so.

The tutorial sets TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, VERIFY_SERVICE_SID, KNOWN_PARTICIPANTS
and MODERATOR; SECRET_KEY is ours. DATABASE_URL, TWILIO_API_URL and INSTANCE_PATH below only
point the app at the test database, the fake Twilio and a temporary folder.
"""

from __future__ import annotations

import json
import logging
import os
import time

import pytest
import requests

from ivr import create_app
from ivr.settings import SIGN_IN_OFF
from tests.conftest import (
    ACCOUNT_SID,
    ADMIN,
    ARTIFACTS,
    AUTH_TOKEN,
    BLATHERS,
    MODERATOR,
    SECRET_KEY,
    VERIFY_SID,
    call_params,
    csrf_token,
    free_port,
    serving,
    signed_post,
)
from tests.test_procfile import ROOT, flask, procfile_web, twilio_posts

TUTORIAL = {
    "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
    "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
    "VERIFY_SERVICE_SID": VERIFY_SID,
    "KNOWN_PARTICIPANTS": {"+18005559876": "Blathers", "+18005554321": "Mabel"},
    "MODERATOR": MODERATOR,
    "SECRET_KEY": SECRET_KEY,
}
# The number the tutorial's callers dial; the line itself is never told it.
DIALLED = "+18005550100"
# The TwiML for Blathers' call, byte for byte, as Twilio receives it.
WELCOME = (
    '<?xml version="1.0" encoding="UTF-8"?><Response>'
    '<Gather action="/gather" language="en-US" method="POST" numDigits="6" timeout="10">'
    '<Say language="en-US" voice="Polly.Joanna-Neural">'
    "Welcome Blathers. Please enter the 6 digit code sent to your device.</Say></Gather>"
    '<Redirect method="POST">/gather?reprompt=1</Redirect></Response>'
)
JOINED = (
    '<?xml version="1.0" encoding="UTF-8"?><Response>'
    '<Say language="en-US" voice="Polly.Joanna-Neural">That was correct. Joining conference.'
    "</Say><Dial>"
    '<Conference endConferenceOnExit="false" participantLabel="Blathers" '
    'startConferenceOnEnter="false" statusCallback="{base}/conference/events" '
    'statusCallbackEvent="start end join leave mute hold" statusCallbackMethod="POST">main'
    "</Conference></Dial></Response>"
)


def sign_in_warnings(text: str) -> list[str]:
    return [line for line in text.splitlines() if SIGN_IN_OFF in line]


@pytest.fixture
def tutorial_app(fake_twilio, database, tmp_path, caplog):
    """An app built from the tutorial's settings alone, its database made by `init-db`."""
    with caplog.at_level(logging.WARNING):
        app = create_app(
            {
                **TUTORIAL,
                "DATABASE_URL": database,
                "TWILIO_API_URL": fake_twilio.url,
                "INSTANCE_PATH": str(tmp_path / "instance"),
            }
        )
    made = app.test_cli_runner().invoke(args=["init-db"])
    assert made.exit_code == 0, made.output
    assert made.output == "Database ready. Loaded 3 participants.\n"
    yield app
    app.extensions["ivr"].sender.close()
    app.extensions["ivr"].store.dispose()


def test_the_tutorials_settings_start_the_line_with_one_warning(tutorial_app, caplog):
    # The fixture built the app: what it logged then, from every logger at WARNING or above.
    built = caplog.get_records("setup")
    assert [(r.name, r.levelname, r.getMessage()) for r in built] == [
        ("ivr.admin", "WARNING", SIGN_IN_OFF)
    ]
    assert tutorial_app.config["SIGN_IN_SENDER"] is None
    assert tutorial_app.extensions["ivr"].sign_in_codes is None


def test_the_tutorials_settings_serve_a_whole_call_with_verify(tutorial_app, fake_twilio):
    client = tutorial_app.test_client()
    params = call_params(BLATHERS, to=DIALLED)

    welcome = signed_post(client, "/voice", params)
    tutorial_app.extensions["ivr"].sender.wait_idle()

    assert welcome.status_code == 200
    assert welcome.mimetype == "text/xml"
    assert welcome.get_data(as_text=True) == WELCOME
    [(method, path, form)] = fake_twilio.requests_of("verify-send")
    assert (method, path) == ("POST", f"/verify/v2/Services/{VERIFY_SID}/Verifications")
    assert form == {"To": BLATHERS, "Channel": "sms", "Locale": "en"}
    assert fake_twilio.sent("message") == []

    joined = signed_post(client, "/gather", {**params, "Digits": fake_twilio.code_for(BLATHERS)})

    assert joined.status_code == 200
    assert joined.mimetype == "text/xml"
    assert joined.get_data(as_text=True) == JOINED.format(base="http://localhost")
    [(method, path, form)] = fake_twilio.requests_of("verify-check")
    assert path == f"/verify/v2/Services/{VERIFY_SID}/VerificationCheck"
    assert form["To"] == BLATHERS
    outcomes = [entry.outcome for entry in tutorial_app.extensions["ivr"].store.call_log()]
    assert sorted(outcomes) == ["code sent", "joined as participant"]


def test_the_sign_in_page_says_sign_in_is_off_and_sends_nothing(tutorial_app, fake_twilio):
    tutorial_app.extensions["ivr"].store.add_admin(ADMIN, "Nook")
    client = tutorial_app.test_client()

    page = client.get("/admin/sign-in")
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "<strong>Sign-in is off.</strong>" in text
    assert "<code>TWILIO_PHONE_NUMBER</code>" in text
    assert "<code>ADMIN_VERIFY_SERVICE_SID</code>" in text
    assert '<fieldset class="plain" disabled>' in text

    # An admin's number posted anyway (a page from before the restart, a script).
    token = csrf_token(client)
    posted = client.post("/admin/sign-in", data={"csrf_token": token, "phone": ADMIN})
    assert posted.status_code == 503
    assert "<strong>Sign-in is off.</strong>" in posted.get_data(as_text=True)
    with client.session_transaction() as session:
        assert "sign_in_phone" not in session

    # The later steps lead back to that page; they neither send nor check.
    for path, data in [
        ("/admin/sign-in/send", {"channel": "sms"}),
        ("/admin/sign-in/code", {"code": "123456"}),
    ]:
        step = client.post(path, data={"csrf_token": token, **data})
        assert step.status_code == 302
        assert step.location == "/admin/sign-in"
    tutorial_app.extensions["ivr"].sender.wait_idle()
    assert fake_twilio.requests == []

    # The console's pages still send everyone to sign in.
    dashboard = client.get("/admin/")
    assert (dashboard.status_code, dashboard.location) == (302, "/admin/sign-in")


def test_in_a_browser_the_sign_in_form_is_off_and_says_what_to_set(tutorial_app, browser):
    with serving(tutorial_app, "localhost") as base:
        page = browser.new_page()
        page.goto(f"{base}/admin/")

        assert page.url == f"{base}/admin/sign-in"
        notice = page.get_by_role("alert")
        assert notice.inner_text().splitlines()[0].startswith("Sign-in is off.")
        assert "TWILIO_PHONE_NUMBER" in notice.inner_text()
        assert "ADMIN_VERIFY_SERVICE_SID" in notice.inner_text()
        assert page.get_by_label("Your phone number").is_disabled()
        assert page.get_by_role("button", name="Continue").is_disabled()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "admin-sign-in-off.png"), full_page=True)
        page.close()


def test_admins_add_warns_that_nobody_can_sign_in_yet(tutorial_app):
    result = tutorial_app.test_cli_runner().invoke(args=["admins", "add", ADMIN, "Tom Nook"])

    assert result.exit_code == 0
    assert result.stdout == "Tom Nook (+1 800-555-0111) is now an admin.\n"
    assert result.stderr == f"Warning: Tom Nook cannot sign in yet: {SIGN_IN_OFF}.\n"
    assert [a.phone for a in tutorial_app.extensions["ivr"].store.admins()] == [ADMIN]


# -- as an operator runs it: the command line and the Procfile's web process ----------------


@pytest.fixture
def tutorial_environment(fake_twilio, database, tmp_path):
    return {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(ROOT),
        "HOME": str(tmp_path),
        **{name: value for name, value in TUTORIAL.items() if isinstance(value, str)},
        "KNOWN_PARTICIPANTS": json.dumps(TUTORIAL["KNOWN_PARTICIPANTS"]),
        "DATABASE_URL": database,
        "TWILIO_API_URL": fake_twilio.url,
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "PORT": str(free_port()),
    }


def test_init_db_admins_add_and_the_web_process_run_on_the_tutorials_settings(
    tutorial_environment, tmp_path, fake_twilio
):
    made = flask(tutorial_environment, tmp_path, "init-db")
    assert made.returncode == 0, made.stderr
    assert made.stdout == "Database ready. Loaded 3 participants.\n"
    assert made.stderr.splitlines() == sign_in_warnings(made.stderr)
    assert len(sign_in_warnings(made.stderr)) == 1

    added = flask(tutorial_environment, tmp_path, "admins", "add", ADMIN, "Nook")
    assert added.returncode == 0, added.stderr
    assert added.stdout == "Nook (+1 800-555-0111) is now an admin.\n"
    # The start-up warning, then the command's own about the admin it added.
    lines = added.stderr.splitlines()
    assert len(lines) == 2
    assert SIGN_IN_OFF in lines[0]
    assert lines[1] == f"Warning: Nook cannot sign in yet: {SIGN_IN_OFF}."

    with procfile_web(tutorial_environment, tmp_path) as web:
        workers = both_workers_booted(web)
        base = web.base

        params = call_params(BLATHERS, to=DIALLED)
        welcome = twilio_posts(base, "/voice", params)
        assert welcome.status_code == 200
        assert welcome.text == WELCOME
        code = fake_twilio.code_for(BLATHERS, wait=5)
        joined = twilio_posts(base, "/gather", {**params, "Digits": code})
        assert joined.status_code == 200
        assert joined.text == JOINED.format(base=base)
        assert len(fake_twilio.sent("verify-send", BLATHERS)) == 1

        off = requests.get(f"{base}/admin/sign-in", timeout=10)
        assert off.status_code == 200
        assert "<strong>Sign-in is off.</strong>" in off.text

    output = web.log.read_text()
    # Said once, by gunicorn's master, though both workers built the app.
    assert workers == 2
    assert len(sign_in_warnings(output)) == 1, output
    assert "Traceback" not in output


def both_workers_booted(web) -> int:
    """Wait until both of the server's workers have booted; return how many did."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        booted = web.log.read_text().count("Booting worker with pid")
        if booted == 2:
            return booted
        time.sleep(0.2)
    raise AssertionError(web.log.read_text())
