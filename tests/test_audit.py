"""The audit trail: every `flask` command that changes something leaves exactly one row per
change, by "command line"; `flask --app ivr audit` prints it. (The console's actions are driven
in Chromium in tests/test_admin_browser.py.)"""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from sqlalchemy import text

from ivr.store import AuditEntry
from tests.conftest import BLATHERS, MABEL, seed_roster

CLI = "command line"


@pytest.fixture
def app(make_app):
    app = make_app(PUBLIC_BASE_URL="https://line.example.com")
    seed_roster(app)
    return app


def run(app, *args: str, input: str | None = None):
    return app.test_cli_runner().invoke(args=list(args), input=input)


def rows(app) -> list[tuple[str, str, str, dict | None]]:
    entries = reversed(app.extensions["ivr"].store.audit_page(per_page=1000).entries)
    return [
        (e.actor, e.action, e.target, json.loads(e.changes) if e.changes else None) for e in entries
    ]


def test_each_command_that_changes_something_leaves_one_row(app, fake_twilio, tmp_path):
    roster = tmp_path / "roster.csv"
    roster.write_text("phone,name,role,room\n+18005550123,Timmy,participant,main\n")
    commands = [
        (
            ["participants", "add", "+18005556789", "Tommy"],
            ("participant.add", "Tommy (+1 800-555-6789) in main"),
            {"phone": "+18005556789", "name": "Tommy", "role": "participant"},
        ),
        (
            ["participants", "add", "+18005556789", "Tommy", "--moderator"],
            ("participant.edit", "Tommy (+1 800-555-6789) in main"),
            {"role": ["participant", "moderator"]},
        ),
        (
            ["participants", "enrol", BLATHERS],
            ("participant.invite", "Blathers (+1 800-555-9876) in main"),
            None,
        ),
        (
            ["participants", "import", str(roster)],
            ("participant.import", "rooms main"),
            {"rows": 1},
        ),
        (
            ["participants", "remove", MABEL],
            ("participant.remove", "Mabel (+1 800-555-4321) in main"),
            None,
        ),
        (
            ["admins", "add", "+18005550112", "Isabelle"],
            ("admin.add", "Isabelle (+1 800-555-0112)"),
            {"name": "Isabelle"},
        ),
        (
            ["admins", "add", "+18005550112", "Isabelle M."],
            ("admin.add", "Isabelle M. (+1 800-555-0112)"),
            {"name": ["Isabelle", "Isabelle M."]},
        ),
        (
            ["admins", "remove", "+18005550112"],
            ("admin.remove", "Isabelle M. (+1 800-555-0112)"),
            None,
        ),
    ]
    for args, (action, target), changes in commands:
        before = rows(app)
        result = run(app, *args)
        assert result.exit_code == 0, result.output
        assert rows(app)[len(before) :] == [(CLI, action, target, changes)], args


def test_refused_and_read_only_commands_leave_no_row(app):
    assert run(app, "participants", "add", "12", "Nobody").exit_code == 1
    assert run(app, "participants", "remove", "+18005550199").exit_code == 1
    assert run(app, "admins", "remove", "+18005550199").exit_code == 1
    assert run(app, "participants", "list").exit_code == 0
    assert run(app, "participants", "export").exit_code == 0
    assert run(app, "audit").exit_code == 0

    assert rows(app) == []


def test_the_audit_command_prints_one_line_per_change(app):
    store = app.extensions["ivr"].store
    store.record_audit("Nook (+1 800-555-0111)", "admin.sign_in", "Nook (+1 800-555-0111)")
    store.record_audit(
        "Nook (+1 800-555-0111)",
        "participant.edit",
        "Blathers (+1 800-555-9876) in main",
        {"role": ["participant", "moderator"], "name": [None, "Blathers"]},
    )
    store.record_audit(CLI, "admin.remove", "Nook (+1 800-555-0111)")
    with store.engine.begin() as connection:
        for row_id, day in ((1, 20), (2, 21), (3, 22)):
            connection.execute(
                text("UPDATE audit_log SET at = :at WHERE id = :id"),
                {"at": datetime(2026, 11, day, 9, 55), "id": row_id},
            )

    everything = run(app, "audit")
    assert everything.exit_code == 0
    assert everything.output.splitlines() == [
        "2026-11-20 09:55:00 UTC\tNook (+1 800-555-0111)\tadmin.sign_in\tNook (+1 800-555-0111)",
        "2026-11-21 09:55:00 UTC\tNook (+1 800-555-0111)\tparticipant.edit\t"
        "Blathers (+1 800-555-9876) in main\trole: participant -> moderator; name: (none) -> "
        "Blathers",
        "2026-11-22 09:55:00 UTC\tcommand line\tadmin.remove\tNook (+1 800-555-0111)",
    ]
    assert len(run(app, "audit", "--since", "2026-11-21").output.splitlines()) == 2
    newest = run(app, "audit", "--limit", "1").output.splitlines()
    assert newest == ["2026-11-22 09:55:00 UTC\tcommand line\tadmin.remove\tNook (+1 800-555-0111)"]
    assert run(app, "audit", "--since", "2099-01-01").output == "No changes recorded.\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "2026-13-01"], "Invalid value for '--since'"),
        (["--since", "yesterday"], "Invalid value for '--since'"),
        (["--limit", "0"], "Invalid value for '--limit'"),
    ],
)
def test_the_audit_command_refuses_bad_input_in_one_line(app, args, message):
    result = run(app, "audit", *args)
    assert result.exit_code == 2
    [error] = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert error.startswith(f"Error: {message}")
    assert rows(app) == []


def test_the_store_only_appends_to_the_trail(app):
    """No store method edits or deletes the trail: the app can only add to it."""
    store = app.extensions["ivr"].store
    methods = [name for name in dir(store) if "audit" in name and not name.startswith("_")]
    assert sorted(methods) == ["audit_actors", "audit_page", "record_audit"]
    store.record_audit(CLI, "admin.add", "x")
    assert [e.target for e in store.audit_page().entries] == ["x"]
    assert AuditEntry.__tablename__ == "audit_log"


def test_room_commands_leave_one_row_with_the_change(app):
    hours = run(
        app, "rooms", "hours", "main", "--tz", "Europe/Berlin", "--weekly", "mon-fri 09:55-11:00"
    )
    assert hours.exit_code == 0, hours.output
    settings = run(app, "rooms", "set", "main", "--language", "de-DE", "--no-announce-names")
    assert settings.exit_code == 0, settings.output
    refused = run(app, "rooms", "hours", "main", "--weekly", "mox 09:00-10:00")
    assert refused.exit_code == 1
    cleared = run(app, "rooms", "hours", "main", "--clear")
    assert cleared.exit_code == 0

    assert rows(app) == [
        (
            CLI,
            "room.hours",
            "room main",
            {
                "time_zone": [None, "Europe/Berlin"],
                "opening_hours": [None, "mon-fri 09:55-11:00"],
            },
        ),
        (
            CLI,
            "room.edit",
            "room main",
            {"language": ["en-US", "de-DE"], "announce_names": [True, False]},
        ),
        (CLI, "room.hours", "room main", {"opening_hours": ["mon-fri 09:55-11:00", None]}),
    ]


def test_a_room_a_command_makes_on_the_way_is_recorded(app, tmp_path):
    roster = tmp_path / "roster.csv"
    roster.write_text("phone,name,role,room\n+18005550123,Timmy,participant,board\n")

    assert (
        run(app, "participants", "add", "+18005556789", "Tommy", "--room", "night").exit_code == 0
    )
    assert run(app, "participants", "import", str(roster)).exit_code == 0

    assert rows(app) == [
        (CLI, "room.create", "room night", {"name": "night"}),
        (
            CLI,
            "participant.add",
            "Tommy (+1 800-555-6789) in night",
            {"phone": "+18005556789", "name": "Tommy", "role": "participant"},
        ),
        (CLI, "room.create", "room board", {"name": "board"}),
        (CLI, "participant.import", "rooms board", {"rows": 1}),
    ]


def test_commands_that_change_nothing_record_nothing(app):
    assert run(app, "admins", "add", "+18005550112", "Isabelle").exit_code == 0
    before = rows(app)

    assert run(app, "admins", "add", "+18005550112", "Isabelle").exit_code == 0
    assert run(app, "participants", "add", BLATHERS, "Blathers").exit_code == 0
    assert run(app, "rooms", "set", "main", "--language", "en-US").exit_code == 0
    assert run(app, "rooms", "hours", "main", "--clear").exit_code == 0

    assert rows(app) == before


@pytest.mark.parametrize("typed", ["5559876", "+18005559876", "800 555 9876", "blathers"])
def test_the_trail_finds_a_number_however_it_is_typed(app, typed):
    store = app.extensions["ivr"].store
    store.record_audit(CLI, "participant.remove", "Blathers (+1 800-555-9876) in main")
    store.record_audit(CLI, "participant.remove", "Mabel (+1 800-555-4321) in main")

    found = store.audit_page(target=typed).entries

    assert [entry.target for entry in found] == ["Blathers (+1 800-555-9876) in main"]
