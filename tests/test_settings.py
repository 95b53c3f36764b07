"""Settings: where they come from, what they mean, and a clear stop when they are wrong."""

from __future__ import annotations

import logging
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from ivr import create_app, settings
from ivr.settings import SettingsError, read_sources, validate
from tests.conftest import ACCOUNT_SID, ADMIN_VERIFY_SID, AUTH_TOKEN, VERIFY_SID

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = {
    "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
    "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
    "TWILIO_PHONE_NUMBER": "+18005550100",
    "SECRET_KEY": "k",
}


def settled(tmp_path, **values):
    return validate({**settings.DEFAULTS, **values}, tmp_path)


def test_config_py_then_dotenv_then_environment(tmp_path):
    (tmp_path / "config.py").write_text(
        'MAX_ATTEMPTS = 5\nLOCKOUT_SECONDS = 60\nOTP_TTL_SECONDS = 120\nlowercase = "ignored"\n'
    )
    (tmp_path / ".env").write_text("LOCKOUT_SECONDS=90\nOTP_TTL_SECONDS=300\n")

    raw = read_sources(tmp_path, {"OTP_TTL_SECONDS": "30", "UNRELATED": "x"})

    assert raw["MAX_ATTEMPTS"] == 5
    assert raw["LOCKOUT_SECONDS"] == "90"
    assert raw["OTP_TTL_SECONDS"] == "30"
    assert "lowercase" not in raw and "UNRELATED" not in raw
    assert validate(raw, tmp_path)["OTP_TTL_SECONDS"] == 30


def test_local_mode_generates_and_keeps_its_secrets(tmp_path):
    first = settled(tmp_path)
    second = settled(tmp_path)

    assert first["LOCAL_MODE"] is True
    assert len(first["SECRET_KEY"]) == 64
    assert first["SECRET_KEY"] == second["SECRET_KEY"]
    assert first["SIGNING_TOKEN"] == second["SIGNING_TOKEN"] != first["SECRET_KEY"]
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
    assert first["DATABASE_URL"] == f"sqlite:///{tmp_path / 'ivr.sqlite3'}"


def test_production_signs_with_the_auth_token_and_generates_nothing(tmp_path):
    production = settled(tmp_path, **PRODUCTION)

    assert production["LOCAL_MODE"] is False
    assert production["SIGNING_TOKEN"] == AUTH_TOKEN
    assert production["SECRET_KEY"] == "k"
    assert production["SEED_PARTICIPANTS"] == []
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@db:5432/line", "postgresql+psycopg://u:p@db:5432/line"),
        ("postgresql://u@db/line", "postgresql+psycopg://u@db/line"),
        ("postgresql+psycopg://u@db/line", "postgresql+psycopg://u@db/line"),
        ("sqlite:////var/line.db", "sqlite:////var/line.db"),
    ],
)
def test_database_urls(tmp_path, given, expected):
    assert settled(tmp_path, DATABASE_URL=given)["DATABASE_URL"] == expected


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"SECRET_KEY": None}, "SECRET_KEY is required"),
        ({"TWILIO_AUTH_TOKEN": None}, "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN go together"),
        ({"TWILIO_ACCOUNT_SID": "AC123"}, "TWILIO_ACCOUNT_SID must be"),
        ({"VERIFY_SERVICE_SID": "VA1"}, "VERIFY_SERVICE_SID must be"),
        ({"ADMIN_VERIFY_SERVICE_SID": "VA1"}, "ADMIN_VERIFY_SERVICE_SID must be"),
        (
            {"VERIFY_SERVICE_SID": VERIFY_SID, "ADMIN_VERIFY_SERVICE_SID": VERIFY_SID},
            "ADMIN_VERIFY_SERVICE_SID must be a different Verify service",
        ),
        ({"TWILIO_PHONE_NUMBER": None}, "TWILIO_PHONE_NUMBER is required"),
        ({"TWILIO_PHONE_NUMBER": "555-0100"}, "TWILIO_PHONE_NUMBER must be"),
        ({"OTP_TTL_SECONDS": "0"}, "OTP_TTL_SECONDS must be a whole number from 1 to 600"),
        ({"OTP_TTL_SECONDS": "601"}, "OTP_TTL_SECONDS must be"),
        ({"MAX_ATTEMPTS": "three"}, "MAX_ATTEMPTS must be"),
        ({"LOCKOUT_SECONDS": "-5"}, "LOCKOUT_SECONDS must be"),
        ({"TWILIO_TIMEOUT_SECONDS": "30"}, "TWILIO_TIMEOUT_SECONDS must be"),
        ({"DATABASE_URL": "mysql://db/line"}, "DATABASE_URL must start with"),
        ({"PUBLIC_BASE_URL": "line.example.com"}, "PUBLIC_BASE_URL must be"),
        ({"TWILIO_API_URL": "ftp://x"}, "TWILIO_API_URL must be"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL must start with"),
        ({"KNOWN_PARTICIPANTS": {"555": "Nobody"}}, "KNOWN_PARTICIPANTS must be a phone"),
    ],
)
def test_malformed_settings_are_named(tmp_path, values, named):
    with pytest.raises(SettingsError, match=named):
        settled(tmp_path, **{**PRODUCTION, **values})


def test_verify_for_the_line_and_sign_in_needs_no_sender_number(tmp_path):
    values = {
        **PRODUCTION,
        "TWILIO_PHONE_NUMBER": None,
        "VERIFY_SERVICE_SID": VERIFY_SID,
        "ADMIN_VERIFY_SERVICE_SID": ADMIN_VERIFY_SID,
    }
    assert settled(tmp_path, **values)["TWILIO_PHONE_NUMBER"] is None


@pytest.mark.parametrize(
    ("values", "sender"),
    [
        # Built-in codes for the line and the console, texted from the line's number.
        ({}, "builtin"),
        # Verify for the line; sign-in codes built in, texted from the line's number.
        ({"VERIFY_SERVICE_SID": VERIFY_SID}, "builtin"),
        # A Verify service for the console: no number needed.
        (
            {
                "TWILIO_PHONE_NUMBER": None,
                "VERIFY_SERVICE_SID": VERIFY_SID,
                "ADMIN_VERIFY_SERVICE_SID": ADMIN_VERIFY_SID,
            },
            "verify",
        ),
        # The tutorial's settings: the line runs on Verify, the console has no way to send.
        ({"TWILIO_PHONE_NUMBER": None, "VERIFY_SERVICE_SID": VERIFY_SID}, None),
    ],
)
def test_how_console_sign_in_codes_are_sent(tmp_path, values, sender):
    assert settled(tmp_path, **{**PRODUCTION, **values})["SIGN_IN_SENDER"] == sender


def test_local_mode_signs_in_through_the_outbox_whatever_else_is_set(tmp_path):
    local = settled(
        tmp_path, VERIFY_SERVICE_SID=VERIFY_SID, ADMIN_VERIFY_SERVICE_SID=ADMIN_VERIFY_SID
    )
    assert local["LOCAL_MODE"] is True
    assert local["SIGN_IN_SENDER"] == "builtin"


def test_without_a_sign_in_sender_the_app_starts_and_warns_once(tmp_path, capsys, caplog):
    values = {**PRODUCTION, "TWILIO_PHONE_NUMBER": None, "VERIFY_SERVICE_SID": VERIFY_SID}

    with caplog.at_level(logging.WARNING):
        app = create_app({**values, "INSTANCE_PATH": str(tmp_path)})

    assert app.config["SIGN_IN_SENDER"] is None
    assert [(r.name, r.levelname, r.getMessage()) for r in caplog.records] == [
        ("ivr.admin", "WARNING", settings.SIGN_IN_OFF)
    ]
    # One line on stderr, through the handler the app factory configures.
    printed = capsys.readouterr().err.splitlines()
    assert len(printed) == 1
    assert printed[0].endswith(f" WARNING ivr.admin {settings.SIGN_IN_OFF}")
    app.extensions["ivr"].sender.close()
    app.extensions["ivr"].store.dispose()


def test_without_database_url_the_sqlite_file_gets_its_folder(tmp_path):
    # The tutorial's settings name no database: SQLite in an instance folder not made yet.
    instance = tmp_path / "new" / "instance"
    app = create_app({**PRODUCTION, "INSTANCE_PATH": str(instance)})

    result = app.test_cli_runner().invoke(args=["init-db"])

    assert result.exit_code == 0, result.output
    assert result.output == "Database ready.\n"
    assert (instance / "ivr.sqlite3").is_file()
    app.extensions["ivr"].sender.close()
    app.extensions["ivr"].store.dispose()


def test_create_app_stops_with_one_clear_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        create_app({**PRODUCTION, "SECRET_KEY": None, "INSTANCE_PATH": str(tmp_path)})

    assert stopped.value.code == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("ivr: configuration error: SECRET_KEY is required")


def test_the_command_line_and_gunicorn_stop_on_bad_settings(tmp_path):
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(ROOT),
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_PHONE_NUMBER": "+18005550100",
        "INSTANCE_PATH": str(tmp_path),
    }
    flask = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "ivr", "participants", "list"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert flask.returncode == 4
    assert flask.stderr.strip().splitlines() == [
        "ivr: configuration error: SECRET_KEY is required with Twilio credentials: set it to a "
        'long random string, e.g. python -c "import secrets; print(secrets.token_hex(32))"'
    ]

    # gunicorn halts on the same error instead of restarting workers forever.
    gunicorn = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--bind", "127.0.0.1:0", "ivr:create_app()"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert gunicorn.returncode != 0
    assert "ivr: configuration error: SECRET_KEY is required" in gunicorn.stderr


def test_example_participants_match_config_example():
    example = runpy.run_path(str(ROOT / "config.example.py"))

    assert example["MODERATOR"] == settings.EXAMPLE_MODERATOR == "+18005551234"
    assert example["KNOWN_PARTICIPANTS"] == settings.EXAMPLE_PARTICIPANTS
    assert set(example) >= {name for name in settings.DEFAULTS if name != "INSTANCE_PATH"}


def test_configured_participants_load_in_production_examples_only_locally(tmp_path):
    configured = settled(
        tmp_path,
        **PRODUCTION,
        MODERATOR="+18005551234",
        KNOWN_PARTICIPANTS={"+1 800 555 9876": "Blathers", "+18005551234": "Isabelle"},
    )
    assert configured["SEED_PARTICIPANTS"] == [
        ("+18005551234", "Isabelle", "moderator"),
        ("+18005559876", "Blathers", "participant"),
    ]
    assert settled(tmp_path / "local")["SEED_PARTICIPANTS"] == [
        ("+18005551234", "Moderator", "moderator"),
        ("+18005559876", "Blathers", "participant"),
        ("+18005554321", "Mabel", "participant"),
        ("+18005556789", "Tommy", "participant"),
    ]
    as_json = settled(tmp_path, **PRODUCTION, KNOWN_PARTICIPANTS='{"+18005554321": "Mabel"}')
    assert as_json["SEED_PARTICIPANTS"] == [("+18005554321", "Mabel", "participant")]
