"""Commands for operators: `flask --app ivr init-db`, `db ...`, `participants ...`, `rooms ...`,
`admins ...`."""

from __future__ import annotations

import logging
import sys
import time

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from sqlalchemy.exc import SQLAlchemyError

from ivr import audit, enrolment, hours, roster, schema
from ivr.announcements import LocalAnnouncements
from ivr.devphone import (
    LOCAL_LINE,
    Conferences,
    DevCall,
    InProcess,
    OverHttp,
    authenticator_code,
)
from ivr.languages import LANGUAGES
from ivr.phones import international, parse_phone
from ivr.services import seed_participants, services
from ivr.settings import SIGN_IN_OFF
from ivr.store import DEFAULT_ROOM_NAME, MEETING_SETTINGS, CodeBy, NotEnrolled, Role, Room
from ivr.verification import ProviderError

participants = AppGroup("participants", help="Manage who may join each room.")
rooms = AppGroup("rooms", help="Rooms' opening hours, language and options.")
admins = AppGroup("admins", help="Manage who may sign in to the admin console at /admin.")
db = AppGroup(
    "db", help="Schema migrations (Alembic): upgrade, downgrade, current, history, check."
)


def register(app: Flask) -> None:
    app.cli.add_command(init_db)
    app.cli.add_command(db)
    app.cli.add_command(participants)
    app.cli.add_command(rooms)
    app.cli.add_command(call)
    app.cli.add_command(admins)
    app.cli.add_command(audit_trail)


def _store():
    store = services().store
    # Commands work on a new database too; an upgrade at the newest revision changes nothing.
    _schema_step(store.upgrade_schema)
    return store


def _schema_step(step, *args):
    """Run a schema step; a database that cannot be reached or migrated gets one line, exit 1."""
    try:
        return step(*args)
    except schema.SchemaError as error:
        raise click.ClickException(str(error)) from None
    except SQLAlchemyError as error:
        reason = " ".join(str(error.orig or error).split())
        raise click.ClickException(f"cannot use the database: {reason}") from None


def _engine():
    return services().store.engine


@click.command("init-db")
@with_appcontext
def init_db() -> None:
    """Create or upgrade the schema, and load configured participants if there are none."""
    store = _store()
    store.ensure_default_room()
    loaded = seed_participants(store, current_app.config)
    click.echo(f"Database ready. Loaded {loaded} participants." if loaded else "Database ready.")


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Upgrade the schema to REVISION (default: the newest), keeping every row."""
    done = _schema_step(services().store.upgrade_schema, revision)
    if done.stamped:
        click.echo(
            f"This database was made before migrations: marked as revision {schema.BASELINE}, "
            "no rows changed."
        )
    if done.before == done.after:
        click.echo(f"Schema is at revision {done.after}; nothing to do.")
    else:
        where = f"revision {done.before}" if done.before else "an empty database"
        click.echo(f"Schema upgraded from {where} to revision {done.after}.")


@db.command("downgrade")
@click.argument("revision", default="-1")
@click.option("--yes", is_flag=True, help="Do not ask before dropping every table.")
def db_downgrade(revision: str, yes: bool) -> None:
    """Downgrade the schema to REVISION (default: one step back, -1)."""
    if not yes and _schema_step(schema.drops_every_table, _engine(), revision):
        click.confirm(
            "This drops every table of the line and all its rows. Go on?", abort=True, err=True
        )
    before, after = _schema_step(schema.downgrade, _engine(), revision)
    where = f"revision {after}" if after else "an empty database"
    click.echo(f"Schema downgraded from revision {before} to {where}.")


@db.command("current")
def db_current() -> None:
    """Show the database's revision."""
    store = services().store
    missing_file = store.sqlite_file is not None and not store.sqlite_file.exists()
    revision = None if missing_file else _schema_step(schema.current, store.engine)
    if revision is None:
        click.echo("No revision: the schema is not created (run `flask --app ivr db upgrade`).")
    else:
        newest = schema.head()
        click.echo(
            f"{revision} (newest)" if revision == newest else f"{revision} ({newest} is newest)"
        )


@db.command("history")
def db_history() -> None:
    """List every revision, newest first."""
    _schema_step(schema.history)


@db.command("check")
def db_check() -> None:
    """Fail unless the database is at the newest revision and it matches the models."""
    _schema_step(schema.check, _engine())
    click.echo(f"Schema matches the models at revision {schema.head()}.")


@db.command("revision")
@click.option("-m", "--message", required=True, help="What the change does.")
def db_revision(message: str) -> None:
    """Write a revision for the models' changes (developers; review it before committing)."""
    path = _schema_step(schema.revision, _engine(), message)
    click.echo(f"Wrote {path}; read it, then run `flask --app ivr db upgrade`.")


@participants.command("add")
@click.argument("phone")
@click.argument("name")
@click.option("--moderator", is_flag=True, help="Starts and ends the conference.")
@click.option("--room", default="", help="Room name (default: main).")
@click.option(
    "--code-by",
    type=click.Choice([CodeBy.SMS.value, CodeBy.WHATSAPP.value]),
    default=None,
    help="How their codes come (default: as before; sms for someone new). An authenticator "
    "app is set up by the participant: see `participants enrol`.",
)
def add(phone: str, name: str, moderator: bool, room: str, code_by: str | None) -> None:
    """Add PHONE (international format) as NAME, or update them if already listed."""
    row = _valid(
        lambda: roster.participant(
            phone,
            name,
            "moderator" if moderator else "",
            room,
            code_by,
            whatsapp_allowed=current_app.config["WHATSAPP_CODES"],
        )
    )
    store = _store()
    listed = {p.phone: p for p in store.participants(row.room)}.get(row.phone)
    before = listed.code_by if listed else None
    rooms_before = audit.room_names()
    store.add_participant(row)
    audit.record_new_rooms(rooms_before)
    new_values = audit.participant_values(row)
    audit.record(
        "participant.edit" if listed else "participant.add",
        audit.person(row.name, row.phone, row.room),
        audit.changed(audit.participant_values(listed), new_values) if listed else new_values,
    )
    click.echo(f"{row.name} ({international(row.phone)}) is a {row.role.value} in {row.room}.")
    if before == CodeBy.APP and row.code_by not in (None, CodeBy.APP):
        click.echo(
            f"Their authenticator app is reset: codes now go by "
            f"{roster.CODE_BY_NAMES[row.code_by]}."
        )
    _warn_unreachable(store, {row.room})


@participants.command("enrol")
@click.argument("phone")
@click.option("--room", default="", help="Room name (default: main).")
def enrol(phone: str, room: str) -> None:
    """Text PHONE a single-use link to set up an authenticator app for their codes."""
    number = _valid(lambda: roster.phone_from_text(phone))
    room_name = " ".join(room.split()) or DEFAULT_ROOM_NAME
    _store()
    try:
        name = enrolment.invite(number, room_name, in_background=False)
    except enrolment.InviteError as error:
        raise click.ClickException(str(error)) from None
    except ProviderError as error:
        raise click.ClickException(f"the invitation was not sent: {error}") from None
    audit.record("participant.invite", audit.person(name, number, room_name))
    click.echo(
        f"Sent {name} ({international(number)}) an invitation to set up an authenticator app; "
        f"the link works once, for {enrolment.INVITE_HOURS} hours."
    )


@participants.command("list")
@click.option("--room", default=None, help="Only this room.")
def list_(room: str | None) -> None:
    """List participants by room."""
    rows = _store().participants(room)
    if not rows:
        click.echo("No participants.")
        return
    for row in rows:
        marker = " (moderator)" if row.role == Role.MODERATOR else ""
        method = "" if row.code_by == CodeBy.SMS else f" [codes by {row.code_by.value}]"
        click.echo(f"{row.room}\t{row.phone}\t{row.name}{marker}{method}")


@participants.command("remove")
@click.argument("phone")
@click.option("--room", default=None, help="Only from this room (default: every room).")
def remove(phone: str, room: str | None) -> None:
    """Remove PHONE from the participant list."""
    number = _valid(lambda: roster.phone_from_text(phone))
    store = _store()
    listed = [p for p in store.participants(room) if p.phone == number]
    removed = store.remove_participant(number, room)
    if not removed:
        raise click.ClickException(f"{number} is not a participant")
    for gone in listed:
        audit.record("participant.remove", audit.person(gone.name, number, gone.room))
    click.echo(f"Removed {number}.")


@participants.command("import")
@click.argument("file", type=click.File("r", encoding="utf-8-sig"))
def import_(file) -> None:
    """Add or update everyone in FILE (phone,name,role[,room[,code_by]]); any bad row changes
    nothing."""
    text = file.read()
    whatsapp = current_app.config["WHATSAPP_CODES"]
    rows = _valid(lambda: roster.read_csv(text, whatsapp_allowed=whatsapp))
    store = _store()
    rooms_before = audit.room_names()
    try:
        count = store.import_participants(rows)
    except NotEnrolled as error:
        raise click.ClickException(str(error)) from None
    audit.record_new_rooms(rooms_before)
    rooms = ", ".join(sorted({row.room for row in rows}))
    audit.record("participant.import", f"rooms {rooms}", {"rows": count})
    click.echo(f"Imported {count} participants.")
    _warn_unreachable(store, {row.room for row in rows})


@participants.command("export")
@click.argument("file", type=click.File("w", encoding="utf-8"), required=False)
def export(file) -> None:
    """Write every participant as CSV to FILE, or to standard output."""
    roster.write_csv(_store().participants(), file or sys.stdout)


@rooms.command("list")
def list_rooms() -> None:
    """List every room: line, time zone, opening hours, language and options."""
    for room in _store().rooms():
        click.echo(_room_line(room))


@rooms.command("hours")
@click.argument("room_name", metavar="ROOM")
@click.option("--tz", "zone_name", default=None, help="IANA time zone, e.g. Europe/Berlin.")
@click.option(
    "--weekly", multiple=True, help='A weekly window, e.g. "mon-fri 09:55-11:00" (repeatable).'
)
@click.option(
    "--once", multiple=True, help='A one-off window, e.g. "2026-12-03 15:00-16:30" (repeatable).'
)
@click.option("--clear", is_flag=True, help="No hours: the room is always open.")
def room_hours(
    room_name: str, zone_name: str | None, weekly: tuple, once: tuple, clear: bool
) -> None:
    """Set ROOM's opening hours (replacing its windows), or --clear them."""
    if clear and (weekly or once):
        raise click.ClickException("--clear takes no --weekly or --once windows")
    if not (clear or weekly or once or zone_name is not None):
        raise click.ClickException("give --weekly or --once windows, --tz, or --clear")
    for text in weekly:
        if text.strip()[:1].isdigit():
            raise click.ClickException(f"--weekly takes days, not a date: {text!r} (use --once)")
    for text in once:
        if not text.strip()[:1].isdigit():
            raise click.ClickException(f"--once takes a date: {text!r} (use --weekly for days)")
    values = {}
    try:
        if zone_name is not None:
            hours.zone(zone_name)
            values["time_zone"] = zone_name
        if clear:
            values["opening_hours"] = None
        elif weekly or once:
            values["opening_hours"] = hours.canonical([*weekly, *once])
    except hours.HoursError as error:
        raise click.ClickException(str(error)) from None
    store = _store()
    before = _room_named(store, room_name)
    store.update_meeting(before.id, **values)
    room = store.room(before.id)
    audit.record(
        "room.hours",
        f"room {room.name}",
        audit.changed(_meeting_of(before), {key: getattr(room, key) for key in values}),
    )
    if room.opening_hours is None:
        click.echo(f"Room {room.name} is always open.")
        return
    zone = room.time_zone or hours.DEFAULT_ZONE
    click.echo(f"Room {room.name} is open ({zone} time):")
    for line in hours.lines(room.opening_hours):
        click.echo(f"  {line}")
    opening_hours = hours.schedule(room.time_zone, room.opening_hours)
    now = services().clock()
    if not opening_hours.is_open(now) and opening_hours.next_opening(now) is None:
        click.echo(
            f"Warning: none of room {room.name}'s windows opens again: it stays closed to "
            "everyone but its moderators.",
            err=True,
        )


@rooms.command("set")
@click.argument("room_name", metavar="ROOM")
@click.option("--language", default=None, help=f"One of {', '.join(LANGUAGES)}.")
@click.option(
    "--announce-names/--no-announce-names",
    default=None,
    help="Say who joins and leaves to the others.",
)
@click.option(
    "--moderators-anytime/--no-moderators-anytime",
    default=None,
    help="Let moderators in outside the opening hours.",
)
def room_set(
    room_name: str,
    language: str | None,
    announce_names: bool | None,
    moderators_anytime: bool | None,
) -> None:
    """Set ROOM's language and options; what is not given stays as it is."""
    if language is not None and language not in LANGUAGES:
        raise click.ClickException(
            f"unknown language {language!r} (use one of {', '.join(LANGUAGES)})"
        )
    given = {
        "language": language,
        "announce_names": announce_names,
        "moderators_anytime": moderators_anytime,
    }
    values = {key: value for key, value in given.items() if value is not None}
    if not values:
        raise click.ClickException(
            "give --language, --announce-names/--no-announce-names or "
            "--moderators-anytime/--no-moderators-anytime"
        )
    store = _store()
    room = _room_named(store, room_name)
    store.update_meeting(room.id, **values)
    audit.record("room.edit", f"room {room.name}", audit.changed(_meeting_of(room), values))
    click.echo(_room_line(store.room(room.id)))


def _meeting_of(room: Room) -> dict:
    return {key: getattr(room, key) for key in MEETING_SETTINGS}


def _room_named(store, name: str) -> Room:
    room = store.room_named(" ".join(name.split()))
    if room is None:
        raise click.ClickException(f"no room named {name!r}")
    return room


def _room_line(room: Room) -> str:
    """Return a room as one tab-separated line of `rooms list`."""
    line = international(room.line_number) if room.line_number else "every other number"
    windows = "; ".join(hours.lines(room.opening_hours)) or "always open"
    options = [
        "moderators anytime" if room.moderators_anytime else "moderators in hours only",
        "announces names" if room.announce_names else "no name announcements",
    ]
    zone = room.time_zone or hours.DEFAULT_ZONE
    return "\t".join([room.name, line, zone, windows, room.language, ", ".join(options)])


@admins.command("add")
@click.argument("phone")
@click.argument("name")
def add_admin(phone: str, name: str) -> None:
    """Let PHONE (international format), called NAME, sign in to the admin console."""
    number = _valid(lambda: roster.phone_from_text(phone))
    clean_name = _valid(lambda: roster.participant(number, name).name)
    store = _store()
    existing = store.admin_by_phone(number)
    added = store.add_admin(number, clean_name)
    audit.record(
        "admin.add",
        f"{clean_name} ({international(number)})",
        audit.changed({"name": existing.name}, {"name": clean_name})
        if existing
        else {"name": clean_name},
    )
    sign_in_off = current_app.config["SIGN_IN_SENDER"] is None
    if not added:
        verb = "was already an admin; name updated"
    else:
        verb = "is now an admin" if sign_in_off else "can now sign in"
    click.echo(f"{clean_name} ({international(number)}) {verb}.")
    if sign_in_off:
        click.echo(f"Warning: {clean_name} cannot sign in yet: {SIGN_IN_OFF}.", err=True)


@admins.command("list")
def list_admins() -> None:
    """List who may sign in to the admin console."""
    rows = _store().admins()
    if not rows:
        click.echo("No admins. Add one with: flask --app ivr admins add PHONE NAME")
        return
    for admin in rows:
        click.echo(f"{admin.phone}\t{admin.name}")


@admins.command("remove")
@click.argument("phone")
def remove_admin(phone: str) -> None:
    """Stop PHONE from signing in; their open sessions end at once."""
    number = _valid(lambda: roster.phone_from_text(phone))
    store = _store()
    admin = store.admin_by_phone(number)
    if admin is None or not store.remove_admin(number):
        raise click.ClickException(f"{number} is not an admin")
    audit.record("admin.remove", audit.admin_name(admin))
    click.echo(f"Removed admin {number}.")


@click.command("audit")
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Only changes on or after this day (YYYY-MM-DD, UTC).",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1, max=100_000),
    default=50,
    show_default=True,
    help="The newest this many.",
)
@with_appcontext
def audit_trail(since, limit: int) -> None:
    """Print the audit trail, oldest of the newest LIMIT first: one change per line."""
    entries = _store().audit_page(since=since, per_page=limit).entries
    if not entries:
        click.echo("No changes recorded.")
        return
    for entry in reversed(entries):
        change = "; ".join(audit.describe_changes(entry.changes))
        line = f"{entry.at:%Y-%m-%d %H:%M:%S} UTC\t{entry.actor}\t{entry.action}\t{entry.target}"
        click.echo(f"{line}\t{change}" if change else line)


def _warn_unreachable(store, rooms: set[str]) -> None:
    for room in sorted(rooms & set(store.unreachable_rooms())):
        click.echo(
            f"Warning: room {room} has no line number, so no call reaches it; give it one in "
            "the admin console (Rooms).",
            err=True,
        )


def _valid(make):
    try:
        return make()
    except roster.RosterError as error:
        raise click.ClickException(str(error)) from None


@click.command("call")
@click.argument("phone")
@click.option("--to", "line", default=None, help="The line to dial (default: the line's number).")
@click.option("--url", default=None, help="A running server, e.g. http://127.0.0.1:5000.")
@with_appcontext
def call(phone: str, line: str | None, url: str | None) -> None:
    """Dial the line as PHONE and play Twilio's part: hear the TwiML, type the digits."""
    config = current_app.config
    line = line or config["TWILIO_PHONE_NUMBER"] or LOCAL_LINE
    inbox_key = parse_phone(phone) or phone
    if url:
        transport = OverHttp(url, config["SIGNING_TOKEN"], config["PUBLIC_BASE_URL"])
        if config["LOCAL_MODE"]:
            read_inbox = lambda: transport.outbox(inbox_key)  # noqa: E731
        else:
            read_inbox = lambda: []  # noqa: E731
    else:
        transport = InProcess(current_app)
        # The transcript tells the call; the line's own INFO lines would only repeat it.
        line_logger = logging.getLogger("ivr")
        if line_logger.level == logging.INFO:
            line_logger.setLevel(logging.WARNING)
        outbox = services().outbox
        if outbox is not None:
            outbox.echo = False
            read_inbox = lambda: [m.text for m in outbox.messages(inbox_key)]  # noqa: E731
        else:
            read_inbox = lambda: []  # noqa: E731
    if not config["LOCAL_MODE"]:
        click.echo("(Twilio credentials are set: codes go to the real phone, not shown here.)")

    shown = len(read_inbox())

    def show_new_texts(wait_seconds: float = 0.0) -> None:
        nonlocal shown
        deadline = time.monotonic() + wait_seconds
        while True:
            texts = read_inbox()
            if len(texts) > shown or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        for text in texts[shown:]:
            click.echo(f"[SMS to {inbox_key}] {text}")
        shown = len(texts)

    app_code_shown = None

    def show_app_code() -> None:
        """Show the caller's authenticator app, as the phone in their hand would (local mode)."""
        nonlocal app_code_shown
        code = authenticator_code(services(), inbox_key) if config["LOCAL_MODE"] else None
        if code is not None and code != app_code_shown:
            click.echo(
                f"[Authenticator app of {inbox_key}] {code[:3]} {code[3:]} (a new code every 30 s)"
            )
            app_code_shown = code

    def hear(line_heard: str) -> None:
        click.echo(line_heard)
        show_new_texts()

    # In process, the dev phone plays the line's announcements; over --url they stay there.
    announcer = None if url else services().announcements.announcer
    announcements = announcer if isinstance(announcer, LocalAnnouncements) else None
    dev_call = DevCall(transport, phone, line, Conferences(announcements), on_line=hear)
    click.echo(f"Calling {line} as {phone} ...")
    dev_call.dial()
    first_prompt = True
    while not dev_call.ended:
        if dev_call.waiting_for_digits:
            show_app_code()
            if first_prompt:
                # The line sends the code while the greeting plays; give the text a moment.
                # An app user is sent nothing: no text to wait for.
                waiting = shown == 0 and app_code_shown is None
                show_new_texts(wait_seconds=5.0 if waiting else 0.0)
                first_prompt = False
            click.echo("Keypad (digits, then Enter; empty line = no input)> ", nl=False)
        else:
            click.echo("(In the conference. Press Enter to hang up.)")
        entered = sys.stdin.readline()
        if not sys.stdin.isatty():
            click.echo(entered.rstrip("\n"))
        if not entered:
            dev_call.hang_up()
        elif dev_call.waiting_for_digits:
            dev_call.press(entered.strip())
        else:
            dev_call.hang_up()
