"""`flask --app ivr init-db` and `participants ...`: what operators type, and what they get."""

from __future__ import annotations

import csv

import pytest
from sqlalchemy.exc import IntegrityError

from ivr.roster import FORMULA_STARTS
from ivr.store import ParticipantRow, Role
from tests.conftest import participants_in


@pytest.fixture
def runner(make_app):
    app = make_app()
    return app.test_cli_runner(), app.extensions["ivr"].store


def test_init_db_makes_the_default_room_and_loads_configured_participants(make_app):
    app = make_app(MODERATOR="+18005551234", KNOWN_PARTICIPANTS={"+18005559876": "Blathers"})
    store = app.extensions["ivr"].store

    result = app.test_cli_runner().invoke(args=["init-db"])

    assert result.exit_code == 0, result.output
    assert result.output == "Database ready. Loaded 2 participants.\n"
    assert [room.name for room in store.rooms()] == ["main"]
    assert store.participants() == [
        ParticipantRow("+18005551234", "Moderator", Role.MODERATOR, "main"),
        ParticipantRow("+18005559876", "Blathers", Role.PARTICIPANT, "main"),
    ]
    # Again: the list is not empty any more, so nothing is loaded twice or overwritten.
    store.remove_participant("+18005559876")
    again = app.test_cli_runner().invoke(args=["init-db"])
    assert again.output == "Database ready.\n"
    assert len(store.participants()) == 1


def test_init_db_in_production_loads_no_example_callers(runner):
    cli, store = runner
    assert cli.invoke(args=["init-db"]).output == "Database ready.\n"
    assert store.participants() == []


def test_add_list_and_remove(runner):
    cli, store = runner

    added = cli.invoke(args=["participants", "add", "+1 (800) 555-9876", "Blathers"])
    moderator = cli.invoke(
        args=["participants", "add", "+18005551234", "Isabelle", "--moderator", "--room", "board"]
    )

    assert added.exit_code == 0
    assert added.output == "Blathers (+1 800-555-9876) is a participant in main.\n"
    assert moderator.output == (
        "Isabelle (+1 800-555-1234) is a moderator in board.\n"
        "Warning: room board has no line number, so no call reaches it; give it one in the "
        "admin console (Rooms).\n"
    )
    listing = cli.invoke(args=["participants", "list"])
    assert listing.output == (
        "board\t+18005551234\tIsabelle (moderator)\nmain\t+18005559876\tBlathers\n"
    )
    assert cli.invoke(args=["participants", "list", "--room", "main"]).output == (
        "main\t+18005559876\tBlathers\n"
    )

    removed = cli.invoke(args=["participants", "remove", "+18005559876"])
    assert removed.output == "Removed +18005559876.\n"
    assert [row.phone for row in store.participants()] == ["+18005551234"]


def test_adding_again_updates_name_and_role(runner):
    cli, store = runner
    cli.invoke(args=["participants", "add", "+18005559876", "Blathers"])
    cli.invoke(args=["participants", "add", "+18005559876", "Blathers the Owl", "--moderator"])

    assert store.participants() == [
        ParticipantRow("+18005559876", "Blathers the Owl", Role.MODERATOR, "main")
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["participants", "add", "555-9876", "Blathers"],
            "Error: '555-9876' is not a valid phone number: use international format, "
            "e.g. +18005559876\n",
        ),
        (["participants", "add", "+18005559876", "  "], "Error: the name is empty\n"),
        (["participants", "remove", "+18005550199"], "Error: +18005550199 is not a participant\n"),
        (
            ["participants", "remove", "nonsense"],
            "Error: 'nonsense' is not a valid phone number: use international format, "
            "e.g. +18005559876\n",
        ),
    ],
)
def test_bad_input_gets_one_clear_line_and_changes_nothing(runner, args, message):
    cli, store = runner

    result = cli.invoke(args=args)

    assert result.exit_code == 1
    assert result.output == message
    assert store.participants() == []


def test_import_and_export_round_trip(runner, tmp_path):
    cli, store = runner
    source = tmp_path / "people.csv"
    source.write_text(
        "phone,name,role,room\n"
        "+18005551234,Isabelle,moderator,\n"
        "+1 800 555 9876,Blathers,participant\n"
        "+18005554321,Mabel,,board\n"
    )

    imported = cli.invoke(args=["participants", "import", str(source)])

    assert imported.output == (
        "Imported 3 participants.\n"
        "Warning: room board has no line number, so no call reaches it; give it one in the "
        "admin console (Rooms).\n"
    )
    assert store.participants() == [
        ParticipantRow("+18005554321", "Mabel", Role.PARTICIPANT, "board"),
        ParticipantRow("+18005551234", "Isabelle", Role.MODERATOR, "main"),
        ParticipantRow("+18005559876", "Blathers", Role.PARTICIPANT, "main"),
    ]
    exported = tmp_path / "out.csv"
    assert cli.invoke(args=["participants", "export", str(exported)]).exit_code == 0
    # Numbers start with +, which spreadsheets would read as a formula: exported as text.
    assert exported.read_text() == (
        "phone,name,role,room\n"
        "'+18005554321,Mabel,participant,board\n"
        "'+18005551234,Isabelle,moderator,main\n"
        "'+18005559876,Blathers,participant,main\n"
    )
    stdout = cli.invoke(args=["participants", "export"])
    assert stdout.output == exported.read_text()


@pytest.mark.parametrize(
    ("csv_text", "message"),
    [
        (
            "+18005551234,Isabelle,moderator\n+18005559876,Blathers,owl\n",
            "Error: row 2: role 'owl' is not moderator or participant\n",
        ),
        (
            "phone,name,role\n+18005551234,Isabelle,moderator\n+1555,Blathers,participant\n",
            "Error: row 3: '+1555' is not a valid phone number: use international format, "
            "e.g. +18005559876\n",
        ),
        ("+18005551234\n", "Error: row 1: expected phone,name,role[,room], got 1 columns\n"),
        (
            "+18005551234,Isabelle,moderator\n+1 800 555 1234,Izzy,participant\n",
            "Error: row 2: +18005551234 is already on row 1 for room main\n",
        ),
        ("phone,name,role\n", "Error: the file has no participants\n"),
    ],
)
def test_an_import_with_a_bad_row_names_it_and_changes_nothing(runner, tmp_path, csv_text, message):
    cli, store = runner
    store.add_participant(ParticipantRow("+18005556789", "Tommy", Role.PARTICIPANT))
    source = tmp_path / "bad.csv"
    source.write_text(csv_text)

    result = cli.invoke(args=["participants", "import", str(source)])

    assert result.exit_code == 1
    assert result.output == message
    assert store.participants() == [ParticipantRow("+18005556789", "Tommy", Role.PARTICIPANT)]


def test_an_import_that_fails_in_the_database_changes_nothing(make_app):
    app = make_app()
    store = app.extensions["ivr"].store
    # The third row breaks a NOT NULL constraint: the database refuses mid-import, and the two
    # rows before it must not stay behind.
    rows = [
        ParticipantRow("+18005551234", "Isabelle", Role.MODERATOR),
        ParticipantRow("+18005559876", "Blathers", Role.PARTICIPANT),
        ParticipantRow("+18005554321", None, Role.PARTICIPANT),
    ]
    with pytest.raises(IntegrityError):
        store.import_participants(rows)
    assert participants_in(app) == []


# Names that a spreadsheet would run as formulas (OWASP's CSV injection examples), and one that
# starts with the quote the export adds.
FORMULA_NAMES = [
    '=HYPERLINK("http://evil","x")',
    "@SUM(1+1)",
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "'=already quoted",
]


def test_export_writes_formulas_as_text_and_import_gives_the_names_back(runner, tmp_path):
    cli, store = runner
    phones = [f"+1800555010{i}" for i in range(len(FORMULA_NAMES))]
    for phone, name in zip(phones, FORMULA_NAMES, strict=True):
        assert (
            cli.invoke(args=["participants", "add", "--room", "=evil", "--", phone, name]).exit_code
            == 0
        )
    before = store.participants()
    exported = tmp_path / "out.csv"

    assert cli.invoke(args=["participants", "export", str(exported)]).exit_code == 0

    cells = [cell for row in csv.reader(exported.open()) for cell in row]
    assert not [cell for cell in cells if cell.startswith(FORMULA_STARTS)]
    names = [row[1] for row in csv.reader(exported.open())][1:]
    assert sorted(names) == sorted(f"'{name}" for name in FORMULA_NAMES)
    for phone in phones:
        assert cli.invoke(args=["participants", "remove", phone]).exit_code == 0
    assert store.participants() == []
    assert cli.invoke(args=["participants", "import", str(exported)]).exit_code == 0
    assert store.participants() == before
