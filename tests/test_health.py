"""/healthz tells a load balancer the truth: 200 only when this instance can serve a call.

The SQLite file is moved, deleted and replaced under a running server; a PostgreSQL database
stops taking connections.
"""

from __future__ import annotations

import os
import sqlite3
import xml.etree.ElementTree as ET
from urllib.parse import urlsplit

import pytest
import requests
from sqlalchemy import create_engine, text

from ivr import twiml
from tests.conftest import BLATHERS, call_params, seed_roster, serving, sign


@pytest.fixture
def sqlite_line(make_app, tmp_path):
    """A line on its own SQLite file (whatever TEST_DATABASE_URL says), served over HTTP."""
    path = tmp_path / "line.sqlite3"
    app = make_app(DATABASE_URL=f"sqlite:///{path}")
    seed_roster(app)
    with serving(app) as base:
        yield base, path


def health(base: str) -> tuple[int, str]:
    response = requests.get(f"{base}/healthz", timeout=5)
    return response.status_code, response.text


def call(base: str, call_sid: str) -> list[str]:
    """Dial /voice as Blathers over HTTP; return what the caller hears."""
    params = call_params(BLATHERS, call_sid=call_sid)
    response = requests.post(
        f"{base}/voice",
        data=params,
        headers={"X-Twilio-Signature": sign(f"{base}/voice", params)},
        timeout=5,
    )
    assert response.status_code == 200
    return [element.text for element in ET.fromstring(response.content).iter("Say")]


def test_a_healthy_line_answers_ok(sqlite_line):
    base, _ = sqlite_line
    assert health(base) == (200, "ok\n")


@pytest.mark.parametrize("how", ["renamed", "deleted"])
def test_a_sqlite_file_that_is_gone_fails_the_check_and_is_not_recreated(sqlite_line, how):
    base, path = sqlite_line
    assert call(base, "CA" + "1" * 32)[0].startswith("Welcome Blathers.")
    assert health(base) == (200, "ok\n")

    if how == "renamed":
        path.rename(path.with_name("moved.sqlite3"))
    else:
        for leftover in path.parent.glob(f"{path.name}*"):
            leftover.unlink()

    assert health(base) == (503, "database unreachable\n")
    # A caller hears the apology, and no empty database appears to swallow what follows.
    assert call(base, "CA" + "2" * 32) == [twiml.APPLICATION_FAULT]
    assert not path.exists()
    assert health(base) == (503, "database unreachable\n")

    if how == "renamed":
        path.with_name("moved.sqlite3").rename(path)
        assert health(base) == (200, "ok\n")
        assert call(base, "CA" + "3" * 32)[0].startswith("Welcome Blathers.")


def test_a_sqlite_file_replaced_by_an_empty_database_fails_the_check(sqlite_line):
    base, path = sqlite_line
    assert health(base) == (200, "ok\n")
    stranger = path.with_name("empty.sqlite3")
    sqlite3.connect(stranger).close()

    os.replace(stranger, path)

    assert health(base) == (503, "database schema missing\n")
    assert call(base, "CA" + "4" * 32) == [twiml.APPLICATION_FAULT]


def test_a_database_without_the_schema_fails_the_check(make_app, database):
    app = make_app(tables=False)
    app.extensions["ivr"].store.create_sqlite_file()

    response = app.test_client().get("/healthz")

    assert (response.status_code, response.text) == (503, "database schema missing\n")
    app.extensions["ivr"].store.upgrade_schema()
    response = app.test_client().get("/healthz")
    assert (response.status_code, response.text) == (200, "ok\n")


@pytest.mark.skipif(
    not os.environ.get("TEST_DATABASE_URL"), reason="needs PostgreSQL (TEST_DATABASE_URL)"
)
def test_a_postgresql_database_that_refuses_connections_fails_the_check(make_app, database):
    app = make_app()
    seed_roster(app)
    name = urlsplit(database).path.lstrip("/")
    admin = create_engine(database.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    with serving(app) as base:
        assert health(base) == (200, "ok\n")
        try:
            with admin.connect() as connection:
                connection.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false'))
                connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": name},
                )

            assert health(base) == (503, "database unreachable\n")
            assert call(base, "CA" + "5" * 32) == [twiml.APPLICATION_FAULT]
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true'))
            admin.dispose()

        # Connections allowed again: the pool reconnects, and the check says so.
        assert health(base) == (200, "ok\n")
        assert call(base, "CA" + "6" * 32)[0].startswith("Welcome Blathers.")
