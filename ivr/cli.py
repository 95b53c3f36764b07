"""Commands for operators: `flask --app ivr init-db`, `participants ...`, `admins ...`."""

from __future__ import annotations

import sys

import click
from flask import Flask
from flask.cli import AppGroup

from ivr import roster
from ivr.phones import international
from ivr.services import seed_participants, services
from ivr.store import Role

participants = AppGroup("participants", help="Manage who may join each room.")
admins = AppGroup("admins", help="Manage who may sign in to the admin console at /admin.")


def register(app: Flask) -> None:
    app.cli.add_command(init_db)
    app.cli.add_command(participants)
    app.cli.add_command(admins)


def _store():
    store = services().store
    # Commands work on a new database too; creating missing tables is idempotent.
    store.create_schema()
    return store


@click.command("init-db")
def init_db() -> None:
    """Create or upgrade the schema, and load configured participants if there are none."""
    from flask import current_app

    store = services().store
    store.create_schema()
    store.ensure_default_room()
    loaded = seed_participants(store, current_app.config)
    click.echo(f"Database ready. Loaded {loaded} participants." if loaded else "Database ready.")


@participants.command("add")
@click.argument("phone")
@click.argument("name")
@click.option("--moderator", is_flag=True, help="Starts and ends the conference.")
@click.option("--room", default="", help="Room name (default: main).")
def add(phone: str, name: str, moderator: bool, room: str) -> None:
    """Add PHONE (international format) as NAME, or update them if already listed."""
    row = _valid(lambda: roster.participant(phone, name, "moderator" if moderator else "", room))
    _store().add_participant(row)
    click.echo(f"{row.name} ({international(row.phone)}) is a {row.role.value} in {row.room}.")


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
        click.echo(f"{row.room}\t{row.phone}\t{row.name}{marker}")


@participants.command("remove")
@click.argument("phone")
@click.option("--room", default=None, help="Only from this room (default: every room).")
def remove(phone: str, room: str | None) -> None:
    """Remove PHONE from the participant list."""
    number = _valid(lambda: roster.phone_from_text(phone))
    removed = _store().remove_participant(number, room)
    if not removed:
        raise click.ClickException(f"{number} is not a participant")
    click.echo(f"Removed {number}.")


@participants.command("import")
@click.argument("file", type=click.File("r", encoding="utf-8-sig"))
def import_(file) -> None:
    """Add or update everyone in FILE (phone,name,role[,room]); any bad row changes nothing."""
    rows = _valid(lambda: roster.read_csv(file.read()))
    count = _store().import_participants(rows)
    click.echo(f"Imported {count} participants.")


@participants.command("export")
@click.argument("file", type=click.File("w", encoding="utf-8"), required=False)
def export(file) -> None:
    """Write every participant as CSV to FILE, or to standard output."""
    roster.write_csv(_store().participants(), file or sys.stdout)


@admins.command("add")
@click.argument("phone")
@click.argument("name")
def add_admin(phone: str, name: str) -> None:
    """Let PHONE (international format), called NAME, sign in to the admin console."""
    number = _valid(lambda: roster.phone_from_text(phone))
    clean_name = _valid(lambda: roster.participant(number, name).name)
    added = _store().add_admin(number, clean_name)
    verb = "can now sign in" if added else "was already an admin; name updated"
    click.echo(f"{clean_name} ({international(number)}) {verb}.")


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
    if not _store().remove_admin(number):
        raise click.ClickException(f"{number} is not an admin")
    click.echo(f"Removed admin {number}.")


def _valid(make):
    try:
        return make()
    except roster.RosterError as error:
        raise click.ClickException(str(error)) from None
