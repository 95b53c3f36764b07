"""Settings: defaults < config.py < .env and the environment; validated before anything starts.

Every setting has the same name wherever it comes from (see config.example.py). Explicit
overrides given to `create_app(config)` replace config.py and the environment entirely, so a
test or an embedding application sees only what it passed.
"""

from __future__ import annotations

import json
import os
import runpy
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dotenv import dotenv_values

from ivr.logs import FORMATS, LEVELS
from ivr.phones import parse_phone


class SettingsError(Exception):
    """A setting is missing or malformed; the message names it and says what to do."""


# Set by the Procfile's gunicorn master (gunicorn_config.py) once it has logged the start-up
# warnings itself, so that its workers, which each build the app, do not repeat them.
STARTUP_WARNED = "IVR_STARTUP_WARNED"
# Logged once as the app starts, and repeated by `admins add`, when the console cannot send codes.
SIGN_IN_OFF = (
    "admin console sign-in is off: set TWILIO_PHONE_NUMBER or ADMIN_VERIFY_SERVICE_SID "
    "to send sign-in codes"
)


DEFAULTS: dict[str, Any] = {
    "TWILIO_ACCOUNT_SID": None,
    "TWILIO_AUTH_TOKEN": None,
    "VERIFY_SERVICE_SID": None,
    "ADMIN_VERIFY_SERVICE_SID": None,
    "TWILIO_PHONE_NUMBER": None,
    "TWILIO_API_URL": None,
    "TWILIO_TIMEOUT_SECONDS": 5.0,
    "DATABASE_URL": None,
    "REDIS_URL": None,
    "SECRET_KEY": None,
    "PUBLIC_BASE_URL": None,
    "OTP_TTL_SECONDS": 600,
    "MAX_ATTEMPTS": 3,
    "LOCKOUT_SECONDS": 600,
    "ADMIN_SESSION_HOURS": 8,
    "KNOWN_PARTICIPANTS": None,
    "MODERATOR": None,
    "PROXY_HOPS": 0,
    "INSTANCE_PATH": None,
    "LOG_LEVEL": "INFO",
    "LOG_FORMAT": "text",
    "METRICS_TOKEN": None,
}

# A bearer token shorter than this could be guessed by trying.
METRICS_TOKEN_MIN_LENGTH = 16

# The seed tutorial's example set; loaded only in local mode, into an empty database.
EXAMPLE_MODERATOR = "+18005551234"
EXAMPLE_PARTICIPANTS = {
    "+18005559876": "Blathers",
    "+18005554321": "Mabel",
    "+18005556789": "Tommy",
}
# The example participant who gets codes from an authenticator app (the dev phones show them).
EXAMPLE_APP_USER = "+18005556789"


# Local mode's example of a closed room, on a line of its own: open Sundays 03:00-04:00 Berlin
# time (and on a day now past), so a call at almost any hour hears when it opens next. Mabel is
# refused outside the hours; the moderator, who may call any time, gets in.
@dataclass(frozen=True)
class ExampleRoom:
    """A room local mode adds beside "main", on a line of its own."""

    name: str
    line_number: str
    members: tuple[tuple[str, str, str], ...]  # (phone, name, role)
    time_zone: str | None = None
    opening_hours: str | None = None
    language: str = "en-US"


# Local mode's rooms beside "main": one with opening hours that are almost never on (to hear the
# room-closed sentence), and one that speaks German (to hear the prompts in another language).
EXAMPLE_ROOMS = (
    ExampleRoom(
        "night",
        "+18005550102",
        (
            (EXAMPLE_MODERATOR, "Moderator", "moderator"),
            ("+18005554321", "Mabel", "participant"),
        ),
        time_zone="Europe/Berlin",
        opening_hours="sun 03:00-04:00\n2026-01-01 09:00-10:00",
    ),
    ExampleRoom(
        "berlin",
        "+18005550149",
        (
            (EXAMPLE_MODERATOR, "Moderator", "moderator"),
            ("+18005559876", "Blathers", "participant"),
            ("+18005554321", "Mabel", "participant"),
        ),
        time_zone="Europe/Berlin",
        language="de-DE",
    ),
)

_INT_RANGES = {
    "OTP_TTL_SECONDS": (1, 600),
    "MAX_ATTEMPTS": (1, 100),
    "LOCKOUT_SECONDS": (1, 7 * 24 * 3600),
    "ADMIN_SESSION_HOURS": (1, 7 * 24),
    "PROXY_HOPS": (0, 5),
}
_DATABASE_SCHEMES = {
    "sqlite": "sqlite",
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
}


def read_sources(cwd: Path, environ: dict[str, str]) -> dict[str, Any]:
    """Merge defaults, ./config.py, ./.env and the environment, later sources winning."""
    merged = dict(DEFAULTS)
    config_file = cwd / "config.py"
    if config_file.is_file():
        module_vars = runpy.run_path(str(config_file))
        merged.update({k: v for k, v in module_vars.items() if k.isupper()})
    dotenv_file = cwd / ".env"
    if dotenv_file.is_file():
        merged.update({k: v for k, v in dotenv_values(dotenv_file).items() if k in DEFAULTS})
    merged.update({k: v for k, v in environ.items() if k in DEFAULTS})
    return merged


def validate(raw: dict[str, Any], instance_path: Path) -> dict[str, Any]:
    """Return the settings with types fixed and defaults derived, or raise SettingsError."""
    settings = {k: (None if v == "" else v) for k, v in raw.items()}

    for name, (low, high) in _INT_RANGES.items():
        settings[name] = _whole_number(name, settings[name], low, high)
    settings["TWILIO_TIMEOUT_SECONDS"] = _seconds(
        "TWILIO_TIMEOUT_SECONDS", settings["TWILIO_TIMEOUT_SECONDS"]
    )

    for name, choices in (("LOG_LEVEL", LEVELS), ("LOG_FORMAT", FORMATS)):
        settings[name] = _choice(name, settings[name] or DEFAULTS[name], choices)

    sid, token = settings["TWILIO_ACCOUNT_SID"], settings["TWILIO_AUTH_TOKEN"]
    if bool(sid) != bool(token):
        raise SettingsError(
            "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN go together: set both for Twilio, "
            "or neither for local mode"
        )
    local_mode = not sid
    settings["LOCAL_MODE"] = local_mode
    if sid and not (sid.startswith("AC") and len(sid) == 34):
        raise SettingsError("TWILIO_ACCOUNT_SID must be your account SID: AC and 32 characters")
    for name in ("VERIFY_SERVICE_SID", "ADMIN_VERIFY_SERVICE_SID"):
        service_sid = settings[name]
        if service_sid and not (service_sid.startswith("VA") and len(service_sid) == 34):
            raise SettingsError(f"{name} must be a Verify service SID: VA and 32 characters")
    verify_sid = settings["VERIFY_SERVICE_SID"]
    admin_verify_sid = settings["ADMIN_VERIFY_SERVICE_SID"]
    if verify_sid and verify_sid == admin_verify_sid:
        # Verify keeps one pending code per number in a service: one would replace the other.
        raise SettingsError(
            "ADMIN_VERIFY_SERVICE_SID must be a different Verify service from VERIFY_SERVICE_SID"
        )

    line = settings["TWILIO_PHONE_NUMBER"]
    if line:
        settings["TWILIO_PHONE_NUMBER"] = _phone_setting("TWILIO_PHONE_NUMBER", line)
    elif not local_mode and not verify_sid:
        raise SettingsError(
            "TWILIO_PHONE_NUMBER is required to send codes without Verify: set it to the line's "
            "number, or set VERIFY_SERVICE_SID"
        )
    settings["SIGN_IN_SENDER"] = _sign_in_sender(settings)
    # WhatsApp codes need Verify: business-initiated WhatsApp messages need approved templates.
    settings["WHATSAPP_CODES"] = bool(verify_sid) and not local_mode
    # Authenticator app invitations are text messages of our own: from the line's number, or
    # to the console outbox in local mode.
    settings["INVITE_TEXTS"] = local_mode or bool(settings["TWILIO_PHONE_NUMBER"])

    for name in ("TWILIO_API_URL", "PUBLIC_BASE_URL"):
        if settings[name]:
            settings[name] = _base_url(name, settings[name])

    # Examples go only into local mode's own SQLite file, never into a database someone
    # configured and then forgot the credentials for.
    examples_allowed = local_mode and not settings["DATABASE_URL"]
    if not settings["DATABASE_URL"]:
        # SQLite makes its file but not the folder it goes in.
        instance_path.mkdir(parents=True, exist_ok=True)
    settings["DATABASE_URL"] = database_url(settings["DATABASE_URL"], instance_path)
    if settings["REDIS_URL"] and urlsplit(settings["REDIS_URL"]).scheme not in (
        "redis",
        "rediss",
        "unix",
    ):
        raise SettingsError("REDIS_URL must start with redis://, rediss:// or unix://")

    if not settings["SECRET_KEY"]:
        if not local_mode:
            raise SettingsError(
                "SECRET_KEY is required with Twilio credentials: set it to a long random string, "
                'e.g. python -c "import secrets; print(secrets.token_hex(32))"'
            )
        settings["SECRET_KEY"] = _kept_secret(instance_path / "secret_key")
    # Webhook signatures: Twilio signs with the auth token; in local mode the dev phone signs
    # with a token generated once and kept beside the database.
    settings["SIGNING_TOKEN"] = token or _kept_secret(instance_path / "local_signing_token")

    token = settings["METRICS_TOKEN"]
    if token is not None:
        token = settings["METRICS_TOKEN"] = str(token).strip()
        if len(token) < METRICS_TOKEN_MIN_LENGTH or any(c.isspace() for c in token):
            raise SettingsError(
                f"METRICS_TOKEN must be at least {METRICS_TOKEN_MIN_LENGTH} characters without "
                'spaces, e.g. python -c "import secrets; print(secrets.token_urlsafe(32))"'
            )

    settings["SEED_PARTICIPANTS"] = _seed_participants(settings, examples_allowed)
    examples = examples_allowed and settings["KNOWN_PARTICIPANTS"] is None
    settings["SEED_APP_USERS"] = (
        [EXAMPLE_APP_USER] if examples and not settings["MODERATOR"] else []
    )
    settings["SEED_ROOMS"] = EXAMPLE_ROOMS if examples and not settings["MODERATOR"] else ()
    return settings


def _sign_in_sender(settings: dict[str, Any]) -> str | None:
    """Return how the console sends sign-in codes: "verify", "builtin", or None for not at all.

    The line never needs this: with Verify for the line and neither a second Verify service
    nor a number to send from, only console sign-in is off.
    """
    if settings["LOCAL_MODE"]:
        return "builtin"  # to the console outbox
    if settings["ADMIN_VERIFY_SERVICE_SID"]:
        return "verify"
    if settings["TWILIO_PHONE_NUMBER"]:
        return "builtin"  # texted or called from the line's number
    return None


def startup_warnings(settings: dict[str, Any]) -> list[str]:
    """Return what the operator starting the line should hear about optional parts left off."""
    return [SIGN_IN_OFF] if settings["SIGN_IN_SENDER"] is None else []


def database_url(url: str | None, instance_path: Path) -> str:
    """Return a SQLAlchemy URL: sqlite stays, postgres:// and postgresql:// use psycopg 3."""
    if not url:
        return f"sqlite:///{instance_path / 'ivr.sqlite3'}"
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in _DATABASE_SCHEMES:
        raise SettingsError(
            "DATABASE_URL must start with sqlite:///, postgres:// or postgresql://, "
            f"got {scheme or url!r}"
        )
    return f"{_DATABASE_SCHEMES[scheme]}://{rest}"


def _whole_number(name: str, value: Any, low: int, high: int) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        number = None
    if number is None or not low <= number <= high:
        raise SettingsError(f"{name} must be a whole number from {low} to {high}, got {value!r}")
    return number


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """Return the one of `choices` that `value` names, in any letter case."""
    by_name = {choice.lower(): choice for choice in choices}
    choice = by_name.get(str(value).strip().lower())
    if choice is None:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return choice


def _seconds(name: str, value: Any) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = 0.0
    if not 0 < seconds <= 14:
        # Twilio gives up on a webhook after 15 s: a provider call must end well before.
        raise SettingsError(f"{name} must be a number of seconds above 0 and at most 14")
    return seconds


def _phone_setting(name: str, value: str) -> str:
    phone = parse_phone(str(value))
    if phone is None:
        raise SettingsError(f"{name} must be a phone number in E.164 form, e.g. +18005550100")
    return phone


def _base_url(name: str, value: str) -> str:
    parts = urlsplit(str(value))
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
        raise SettingsError(f"{name} must be an http(s) URL such as https://line.example.com")
    return str(value).rstrip("/")


def _kept_secret(path: Path) -> str:
    """Read a generated secret from the instance folder, making it on first use."""
    if path.is_file():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secrets.token_hex(32))
    try:
        # A link appears whole or not at all: a process starting at the same moment (the
        # server and a dev phone) either wins or reads the winner's secret, never half of it.
        os.link(draft, path)
    except FileExistsError:
        pass
    finally:
        draft.unlink()
    return path.read_text().strip()


def _seed_participants(
    settings: dict[str, Any], examples_allowed: bool
) -> list[tuple[str, str, str]]:
    """Return (phone, name, role) rows to load into an empty database.

    A config file's KNOWN_PARTICIPANTS/MODERATOR always load; the example set only when
    `examples_allowed` (local mode on its own SQLite file), so a real line never gets demo callers.
    """
    known, moderator = settings["KNOWN_PARTICIPANTS"], settings["MODERATOR"]
    if known is None and moderator is None:
        if not examples_allowed:
            return []
        known, moderator = EXAMPLE_PARTICIPANTS, EXAMPLE_MODERATOR
    if isinstance(known, str):
        try:
            known = json.loads(known)
        except ValueError as error:
            raise SettingsError(
                "KNOWN_PARTICIPANTS must be a JSON object of phone: name"
            ) from error
    if known is not None and not isinstance(known, dict):
        raise SettingsError("KNOWN_PARTICIPANTS must map phone numbers to names")
    rows = []
    for raw_phone, name in (known or {}).items():
        phone = _phone_setting("KNOWN_PARTICIPANTS", raw_phone)
        rows.append((phone, str(name), "participant"))
    if moderator:
        phone = _phone_setting("MODERATOR", moderator)
        name = (known or {}).get(moderator) or "Moderator"
        rows = [row for row in rows if row[0] != phone]
        rows.insert(0, (phone, str(name), "moderator"))
    return rows
