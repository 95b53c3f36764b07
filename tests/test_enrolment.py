"""Authenticator app self-enrolment: the invitation by SMS, the page behind its link, the command.

Driven as a participant would: the link from the text the fake Twilio received, the page over
HTTP, the secret read off the page and turned into a code by pyotp.
"""

from __future__ import annotations

import re
import threading
from datetime import timedelta
from urllib.parse import parse_qs, unquote, urlsplit

import pyotp
import pytest
import requests
import segno
from sqlalchemy import func, select, update

from ivr import create_app
from ivr.enrolment import INVITE_HOURS, token_hash
from ivr.store import CodeBy, Enrolment, Participant, Room, utcnow
from tests.conftest import (
    BLATHERS,
    MABEL,
    VERIFY_SID,
    csrf_token,
    seed_roster,
    serving,
)

PUBLIC = "https://line.example.com"
DEAD = "This link does not work."


@pytest.fixture
def app(make_app):
    app = make_app(PUBLIC_BASE_URL=PUBLIC)
    seed_roster(app)
    return app


def invite(app, phone=BLATHERS, *args) -> str:
    """Run `participants enrol`; return the link path from the text the fake Twilio got."""
    result = app.test_cli_runner().invoke(args=["participants", "enrol", phone, *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def link_sent(fake, phone=BLATHERS) -> str:
    body = fake.sent("message", phone)[-1]["Body"]
    link = re.search(r"https://\S+", body).group(0)
    assert link.startswith(f"{PUBLIC}/enrol/")
    return urlsplit(link).path


def secret_on(page: str) -> str:
    """Read the secret off the page the way an app would: the key shown for typing in."""
    typed = re.search(r'<code class="secret" id="secret">([A-Z2-7 ]+)</code>', page).group(1)
    return typed.replace(" ", "")


def confirm(client, path, code, page=None):
    token = csrf_token(client, path) if page is None else _csrf_in(page)
    return client.post(path, data={"csrf_token": token, "code": code})


def _csrf_in(page: str) -> str:
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)


def method_of(app, phone=BLATHERS, room="main") -> tuple[str, bool, int | None]:
    store = app.extensions["ivr"].store
    with store.engine.connect() as connection:
        code_by, secret, step = connection.execute(
            select(Participant.code_by, Participant.app_secret, Participant.app_last_step)
            .join(Room)
            .where(Participant.phone == phone, Room.name == room)
        ).one()
    return code_by, secret is not None, step


def open_invitations(app) -> int:
    with app.extensions["ivr"].store.engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(Enrolment))


def test_an_invitation_enrols_the_participant_after_one_right_code(app, fake_twilio):
    output = invite(app)
    assert output == (
        "Sent Blathers (+1 800-555-9876) an invitation to set up an authenticator app; "
        "the link works once, for 24 hours.\n"
    )
    [text] = fake_twilio.sent("message", BLATHERS)
    assert text["From"] == "+18005550100"
    path = link_sent(fake_twilio)
    client = app.test_client()

    page = client.get(path)

    assert page.status_code == 200
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    html = page.get_data(as_text=True)
    assert "<svg" in html and "</svg>" in html  # the QR code, drawn on the server
    assert "Blathers" in html and "main" in html
    assert BLATHERS not in html and "555-9876" not in html
    secret = secret_on(html)
    # The QR code holds the same secret: the otpauth URI an app reads.
    uri = pyotp.TOTP(secret).provisioning_uri(name="main: Blathers", issuer_name="Conference line")
    assert parse_qs(urlsplit(uri).query)["secret"] == [secret]
    assert uri.startswith("otpauth://totp/Conference%20line:main%3A%20Blathers?secret=")
    assert segno.make(uri, error="m").svg_inline(scale=5, dark="#000", light="#fff") in html
    assert method_of(app) == ("sms", False, None)  # nothing changes until the code is confirmed

    done = confirm(client, path, pyotp.TOTP(secret).now(), html)

    assert done.status_code == 200
    assert "Your app is set up" in done.get_data(as_text=True)
    code_by, has_secret, step = method_of(app)
    assert (code_by, has_secret) == ("app", True)
    assert step in (
        pyotp.TOTP(secret).timecode(utcnow()) - 1,
        pyotp.TOTP(secret).timecode(utcnow()),
    )
    assert open_invitations(app) == 0
    # The secret is stored encrypted, and opens to the one on the page.
    store = app.extensions["ivr"].store
    with store.engine.connect() as connection:
        sealed = connection.scalar(
            select(Participant.app_secret).where(Participant.phone == BLATHERS)
        )
    assert secret not in sealed
    assert app.extensions["ivr"].apps.open(sealed) == secret
    # The link is dead now.
    again = client.get(path)
    assert again.status_code == 404
    assert DEAD in again.get_data(as_text=True)


def test_a_wrong_code_changes_nothing(app, fake_twilio):
    invite(app)
    path = link_sent(fake_twilio)
    client = app.test_client()
    html = client.get(path).get_data(as_text=True)
    right = pyotp.TOTP(secret_on(html)).now()
    wrong = f"{(int(right) + 500_000) % 10**6:06d}"

    refused = confirm(client, path, wrong, html)

    assert refused.status_code == 400
    assert "That code is not right." in refused.get_data(as_text=True)
    assert method_of(app) == ("sms", False, None)
    assert open_invitations(app) == 1
    assert client.get(path).status_code == 200


def test_a_confirmation_without_its_csrf_token_is_refused(app, fake_twilio):
    invite(app)
    path = link_sent(fake_twilio)
    client = app.test_client()
    secret = secret_on(client.get(path).get_data(as_text=True))

    refused = client.post(path, data={"code": pyotp.TOTP(secret).now()})

    assert refused.status_code == 400
    assert method_of(app) == ("sms", False, None)


def test_used_expired_and_unknown_links_get_the_same_page(app, fake_twilio):
    invite(app, MABEL)
    expired = link_sent(fake_twilio, MABEL)
    with app.extensions["ivr"].store.engine.begin() as connection:
        connection.execute(update(Enrolment).values(expires_at=utcnow() - timedelta(seconds=1)))
    invite(app)
    used = link_sent(fake_twilio)
    client = app.test_client()
    used_page = client.get(used).get_data(as_text=True)
    assert confirm(client, used, pyotp.TOTP(secret_on(used_page)).now()).status_code == 200
    unknown = "/enrol/" + "A" * 43

    pages = [client.get(path) for path in (used, expired, unknown, "/enrol/short")]

    assert [page.status_code for page in pages] == [404, 404, 404, 404]
    bodies = {re.sub(r"\s+", " ", page.get_data(as_text=True)) for page in pages}
    assert len(bodies) == 1
    assert DEAD in bodies.pop()
    # Posting a code to a dead link changes nothing either.
    assert confirm(client, expired, "123456", used_page).status_code == 404
    assert method_of(app, MABEL) == ("sms", False, None)


def test_a_new_invitation_replaces_the_old_one(app, fake_twilio):
    invite(app)
    first = link_sent(fake_twilio)
    invite(app)
    second = link_sent(fake_twilio)
    client = app.test_client()

    assert first != second
    assert client.get(first).status_code == 404
    assert client.get(second).status_code == 200
    assert open_invitations(app) == 1


def test_two_confirmations_released_together_enrol_once(make_app, fake_twilio):
    # Plain http to a test server: the session cookie (and its CSRF token) must come back.
    app = make_app(PUBLIC_BASE_URL=PUBLIC, SESSION_COOKIE_SECURE=False)
    seed_roster(app)
    invite(app)
    path = link_sent(fake_twilio)
    racers = 6
    barrier = threading.Barrier(racers)
    statuses: list[int] = [0] * racers

    with serving(app) as base:
        sessions = [requests.Session() for _ in range(racers)]
        pages = [session.get(base + path).text for session in sessions]
        code = pyotp.TOTP(secret_on(pages[0])).now()

        def post(index: int) -> None:
            data = {"csrf_token": _csrf_in(pages[index]), "code": code}
            barrier.wait()
            statuses[index] = sessions[index].post(base + path, data=data).status_code

        threads = [threading.Thread(target=post, args=(i,)) for i in range(racers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)

    assert sorted(statuses) == [200] + [404] * (racers - 1)
    assert method_of(app)[0] == "app"


def test_the_page_is_rate_limited_per_address(app, fake_twilio):
    invite(app)
    path = link_sent(fake_twilio)
    client = app.test_client()
    page = client.get(path).get_data(as_text=True)

    statuses = [confirm(client, path, "000000", page).status_code for _ in range(11)]

    assert statuses == [400] * 10 + [429]
    assert "Too many attempts" in confirm(client, path, "000000", page).get_data(as_text=True)
    assert method_of(app) == ("sms", False, None)


def test_the_command_refuses_bad_input_in_one_line(app, make_app, fake_twilio):
    cli = app.test_cli_runner()

    cases = [
        (["+1555"], "Error: '+1555' is not a valid phone number: use international format"),
        (["+18005550199"], "Error: +18005550199 is not a participant in room main"),
        ([BLATHERS, "--room", "board"], "Error: +18005559876 is not a participant in room board"),
    ]
    for args, message in cases:
        result = cli.invoke(args=["participants", "enrol", *args])
        assert result.exit_code == 1
        assert result.output.startswith(message)
        assert result.output.count("\n") == 1

    # Verify for the line, and no number to send our own text from.
    verify_only = make_app(tables=False, VERIFY_SERVICE_SID=VERIFY_SID, TWILIO_PHONE_NUMBER=None)
    result = verify_only.test_cli_runner().invoke(args=["participants", "enrol", BLATHERS])
    assert result.exit_code == 1
    assert result.output == (
        "Error: invitations are text messages from the line's number: set TWILIO_PHONE_NUMBER\n"
    )
    assert fake_twilio.sent("message") == []
    assert open_invitations(app) == 0


def test_a_failed_text_is_reported_by_the_command(app, fake_twilio):
    fake_twilio.fail("message", 500, 20500)

    result = app.test_cli_runner().invoke(args=["participants", "enrol", BLATHERS])

    assert result.exit_code == 1
    assert result.output == (
        "Error: the invitation was not sent: text message: Twilio answered 500 (code 20500)\n"
    )


def test_without_public_base_url_the_command_says_so(make_app):
    app = make_app()
    seed_roster(app)

    result = app.test_cli_runner().invoke(args=["participants", "enrol", BLATHERS])

    assert result.exit_code == 1
    assert result.output == (
        "Error: set PUBLIC_BASE_URL: the invitation links to a page on this server\n"
    )


def test_local_mode_puts_the_invitation_in_the_outbox_and_the_page_works(tmp_path):
    app = create_app({"TESTING": True, "INSTANCE_PATH": str(tmp_path / "instance")})
    try:
        with app.app_context():
            from ivr.enrolment import invite as send_invitation

            assert send_invitation(BLATHERS, "main") == "Blathers"
        app.extensions["ivr"].sender.wait_idle()
        [message] = app.extensions["ivr"].outbox.messages(BLATHERS)
        link = re.search(r"http://127\.0\.0\.1:5000(/enrol/\S+)", message.text).group(1)
        client = app.test_client()
        html = client.get(link).get_data(as_text=True)

        done = confirm(client, link, pyotp.TOTP(secret_on(html)).now(), html)

        assert done.status_code == 200
        assert method_of(app)[0] == "app"
        assert f"works once, for {INVITE_HOURS} hours" in message.text
    finally:
        app.extensions["ivr"].sender.close()
        app.extensions["ivr"].store.dispose()


def test_the_token_is_kept_only_as_a_hash(app, fake_twilio):
    invite(app)
    token = unquote(link_sent(fake_twilio).rsplit("/", 1)[1])

    with app.extensions["ivr"].store.engine.connect() as connection:
        kept = connection.scalars(select(Enrolment.token_hash)).all()

    assert kept == [token_hash(token)]
    assert token not in kept[0]
    assert CodeBy.SMS == method_of(app)[0]
