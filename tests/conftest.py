"""Fixtures: a fake Twilio over real HTTP, apps on SQLite or TEST_DATABASE_URL, signed posts."""

from __future__ import annotations

import os
import socket
import xml.etree.ElementTree as ET
from collections.abc import Callable

import pytest
from sqlalchemy import create_engine
from twilio.request_validator import RequestValidator

from ivr import create_app
from ivr.settings import database_url
from ivr.store import Base, Participant, ParticipantRow, Role
from tests.fake_twilio import FakeTwilio

ACCOUNT_SID = "AC" + "a1" * 16
AUTH_TOKEN = "test-auth-token-not-a-secret"
VERIFY_SID = "VA" + "b2" * 16
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
    engine.dispose()
    yield url


@pytest.fixture
def make_app(fake_twilio, database, tmp_path) -> Callable:
    """Build apps on one database with Twilio credentials and the fake Twilio; tear them down."""
    apps = []

    def make(**overrides):
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
        store = app.extensions["ivr"].store
        store.create_schema()
        return app

    yield make
    for app in apps:
        # Sends still in flight would land in the next test's fake Twilio.
        app.extensions["ivr"].sender.close()
        app.extensions["ivr"].store.dispose()


def seed_roster(app) -> None:
    """The tutorial's callers in the default room: a moderator, Blathers and Mabel."""
    app.extensions["ivr"].store.import_participants(
        [
            ParticipantRow(MODERATOR, "Isabelle", Role.MODERATOR),
            ParticipantRow(BLATHERS, "Blathers", Role.PARTICIPANT),
            ParticipantRow(MABEL, "Mabel", Role.PARTICIPANT),
        ]
    )


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
