"""Fixtures: a fake Twilio over real HTTP, apps on SQLite or TEST_DATABASE_URL, signed posts."""

from __future__ import annotations

import os
import re
import socket
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from twilio.request_validator import RequestValidator
from werkzeug.serving import make_server

from ivr import create_app, schema
from ivr.settings import database_url
from ivr.store import Base, NumberGuard, Participant, ParticipantRow, Role, utcnow
from tests.fake_twilio import FakeTwilio

ACCOUNT_SID = "AC" + "a1" * 16
AUTH_TOKEN = "test-auth-token-not-a-secret"
VERIFY_SID = "VA" + "b2" * 16
ADMIN_VERIFY_SID = "VA" + "d4" * 16
SECRET_KEY = "test-secret-key"
LINE = "+18005550100"
MODERATOR = "+18005551234"
BLATHERS = "+18005559876"
MABEL = "+18005554321"
STRANGER = "+18005550199"


@pytest.fixture(scope="session")
def fake_twilio():
    fake = FakeTwilio(ACCOUNT_SID, AUTH_TOKEN).start()
    yield fake
    fake.stop()


@pytest.fixture(autouse=True)
def _fresh_fake(fake_twilio):
    fake_twilio.reset()


@pytest.fixture
def database(tmp_path):
    """A SQLAlchemy URL to an empty database: TEST_DATABASE_URL if set, else a SQLite file."""
    shared = os.environ.get("TEST_DATABASE_URL")
    if not shared:
        yield f"sqlite:///{tmp_path / 'test.sqlite3'}"
        return
    url = database_url(shared, tmp_path)
    engine = create_engine(url)
    Base.metadata.drop_all(engine)
    with engine.begin() as connection:
        # A migrated database remembers its revision: without this the next upgrade does nothing.
        connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
    engine.dispose()
    yield url


def create_tables(store) -> None:
    """Create the schema with create_all (faster); test_migrations checks migrations agree.

    Stamped with the newest revision, as a migrated database is, so that commands which
    upgrade first find nothing to do.
    """
    store.create_sqlite_file()
    Base.metadata.create_all(store.engine)
    schema.stamp(store.engine)


@pytest.fixture
def make_app(fake_twilio, database, tmp_path) -> Callable:
    """Build apps on one database with Twilio credentials and the fake Twilio; tear them down."""
    apps = []

    def make(*, tables: bool = True, **overrides):
        config = {
            "TESTING": True,
            "INSTANCE_PATH": str(tmp_path / "instance"),
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_PHONE_NUMBER": LINE,
            "TWILIO_API_URL": fake_twilio.url,
            "TWILIO_TIMEOUT_SECONDS": 2,
            "SECRET_KEY": SECRET_KEY,
            "DATABASE_URL": database,
            **overrides,
        }
        app = create_app(config)
        apps.append(app)
        if tables:
            create_tables(app.extensions["ivr"].store)
        return app

    yield make
    for app in apps:
        # Sends still in flight would land in the next test's fake Twilio.
        app.extensions["ivr"].sender.close()
        app.extensions["ivr"].store.dispose()


def lock_out(store, phone: str, guard=NumberGuard, seconds: int = 600) -> None:
    """Lock `phone` the way one failed check does when one attempt is allowed."""
    attempt = store.claim_attempt(phone, 1, guard)
    assert store.fail_attempt(phone, attempt, 1, seconds, guard) is not None


def seed_roster(app) -> None:
    """The tutorial's callers in the default room: a moderator, Blathers and Mabel."""
    app.extensions["ivr"].store.import_participants(
        [
            ParticipantRow(MODERATOR, "Isabelle", Role.MODERATOR),
            ParticipantRow(BLATHERS, "Blathers", Role.PARTICIPANT),
            ParticipantRow(MABEL, "Mabel", Role.PARTICIPANT),
        ]
    )


def enrol_app(app, phone: str, room: str = "main", *, step: int = 0) -> str:
    """Give `phone` in `room` an authenticator app the way enrolment does; return its secret.

    Through the store's own path: an invitation, then its confirmation with `step` used.
    """
    from ivr.enrolment import token_hash

    found = app.extensions["ivr"]
    secret = found.apps.new_secret()
    token = f"test-token-{phone}-{room}"
    expires = utcnow() + timedelta(hours=1)
    assert found.store.invite(phone, room, token_hash(token), found.apps.seal(secret), expires)
    assert found.store.finish_enrolment(token_hash(token), step, utcnow())
    return secret


@pytest.fixture(params=["builtin", "verify"])
def provider(request) -> str:
    return request.param


@pytest.fixture
def app(make_app, provider):
    """An app with the tutorial's callers, once per code provider."""
    overrides = {"VERIFY_SERVICE_SID": VERIFY_SID} if provider == "verify" else {}
    app = make_app(**overrides)
    seed_roster(app)
    return app


@pytest.fixture
def builtin_app(make_app):
    app = make_app()
    seed_roster(app)
    return app


@pytest.fixture
def client(app):
    return app.test_client()


def sign(url: str, params: dict, token: str = AUTH_TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, params)


def signed_post(client, path: str, data: dict, *, base: str = "http://localhost", token=AUTH_TOKEN):
    """POST form data the way Twilio does, with X-Twilio-Signature over base + path."""
    headers = {"X-Twilio-Signature": sign(base + path, data, token)}
    return client.post(path, data=data, headers=headers)


def call_params(caller: str, *, call_sid: str = "CA" + "c3" * 16, to: str = LINE, **extra) -> dict:
    return {
        "CallSid": call_sid,
        "AccountSid": ACCOUNT_SID,
        "From": caller,
        "To": to,
        "CallStatus": "in-progress",
        "Direction": "inbound",
        **extra,
    }


def twiml_of(response) -> ET.Element:
    """Parse a webhook answer, which must be 200 text/xml TwiML."""
    assert response.status_code == 200, response.data
    assert response.mimetype == "text/xml"
    root = ET.fromstring(response.data)
    assert root.tag == "Response"
    return root


def verbs(root: ET.Element) -> list[str]:
    return [child.tag for child in root]


def said(root: ET.Element) -> list[str]:
    return [element.text for element in root.iter("Say")]


def participants_in(app) -> list[str]:
    store = app.extensions["ivr"].store
    with store.engine.connect() as connection:
        return sorted(row.phone for row in connection.execute(Participant.__table__.select()))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- the admin console ---------------------------------------------------------------------

ADMIN = "+18005550111"
ADMIN_NAME = "Nook"
_CSRF_INPUT = re.compile(
    r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"'
)


@pytest.fixture
def admin_app(make_app):
    """An app with the tutorial's callers and one admin; sign-in steps are not padded."""
    app = make_app(ADMIN_SIGN_IN_FLOOR_SECONDS=0)
    seed_roster(app)
    app.extensions["ivr"].store.add_admin(ADMIN, ADMIN_NAME)
    return app


@pytest.fixture
def admin_client(admin_app, fake_twilio):
    """A test client signed in to the console as ADMIN."""
    client = admin_app.test_client()
    response = sign_in(client, fake_twilio)
    assert response.status_code == 302
    assert response.location == "/admin/"
    fake_twilio.reset()
    return client


def csrf_token(client, path: str = "/admin/sign-in") -> str:
    """Read the CSRF token a page of the console puts in its forms."""
    page = client.get(path)
    assert page.status_code == 200, page.status_code
    match = _CSRF_INPUT.search(page.get_data(as_text=True))
    assert match, f"no CSRF token on {path}"
    return match.group(1) or match.group(2)


def start_sign_in(client, phone: str = ADMIN, channel: str = "sms"):
    """Steps 1 and 2: give the number and ask for a code; return the step 2 answer.

    Sign-in codes go out in the background; this waits until Twilio has been asked.
    """
    token = csrf_token(client)
    response = client.post("/admin/sign-in", data={"csrf_token": token, "phone": phone})
    assert response.status_code == 302, response.get_data(as_text=True)
    sent = client.post("/admin/sign-in/send", data={"csrf_token": token, "channel": channel})
    client.application.extensions["ivr"].sender.wait_idle()
    return sent


def enter_code(client, code: str):
    token = csrf_token(client, "/admin/sign-in/code")
    return client.post("/admin/sign-in/code", data={"csrf_token": token, "code": code})


def sign_in(client, fake, phone: str = ADMIN, channel: str = "sms"):
    """Sign in with the code the fake Twilio delivered; return the code step's answer."""
    start_sign_in(client, phone, channel)
    return enter_code(client, fake.code_for(phone))


def post_form(client, path: str, data: dict | None = None, *, token_from: str = "/admin/"):
    """POST a console form with a valid CSRF token taken from `token_from`."""
    return client.post(path, data={"csrf_token": csrf_token(client, token_from), **(data or {})})


@contextmanager
def serving(app, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve `app` over real HTTP on a free port in a thread; yield its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)


@pytest.fixture
def live_server(admin_app):
    """The admin app over HTTP for a browser."""
    # "localhost", not 127.0.0.1: Chromium keeps Secure cookies for http://localhost only.
    with serving(admin_app, "localhost") as base:
        yield base


CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # Several tabs poll at once: keep the ones in the background running at full speed.
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]


@pytest.fixture
def browser():
    """Debian's Chromium driven by Playwright (which cannot download a browser here)."""
    if os.environ.get("IVR_SKIP_BROWSER") == "1":
        pytest.skip("IVR_SKIP_BROWSER=1")
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install it with `apt-get install -y chromium` "
            "(or set IVR_SKIP_BROWSER=1 to skip the browser tests)"
        )
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()
