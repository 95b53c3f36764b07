"""`flask --app ivr init-db` and `participants ...`: what operators type, and what they get."""

from __future__ import annotations

import csv

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ivr.roster import FORMULA_STARTS
from ivr.store import CodeBy, Participant, ParticipantRow, Role
from tests.conftest import BLATHERS, MABEL, VERIFY_SID, enrol_app, participants_in


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
        ParticipantRow("+18005551234", "Moderator", Role.MODERATOR, "main", CodeBy.SMS),
        ParticipantRow("+18005559876", "Blathers", Role.PARTICIPANT, "main", CodeBy.SMS),
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
        ParticipantRow("+18005559876", "Blathers the Owl", Role.MODERATOR, "main", CodeBy.SMS)
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
        ParticipantRow("+18005554321", "Mabel", Role.PARTICIPANT, "board", CodeBy.SMS),
        ParticipantRow("+18005551234", "Isabelle", Role.MODERATOR, "main", CodeBy.SMS),
        ParticipantRow("+18005559876", "Blathers", Role.PARTICIPANT, "main", CodeBy.SMS),
    ]
    exported = tmp_path / "out.csv"
    assert cli.invoke(args=["participants", "export", str(exported)]).exit_code == 0
    # Numbers start with +, which spreadsheets would read as a formula: exported as text.
    assert exported.read_text() == (
        "phone,name,role,room,code_by\n"
        "'+18005554321,Mabel,participant,board,sms\n"
        "'+18005551234,Isabelle,moderator,main,sms\n"
        "'+18005559876,Blathers,participant,main,sms\n"
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
        (
            "+18005551234\n",
            "Error: row 1: expected phone,name,role[,room[,code_by]], got 1 columns\n",
        ),
        (
            "+18005551234,Isabelle,moderator,main,pigeon\n",
            "Error: row 1: code_by 'pigeon' is not sms, whatsapp or app\n",
        ),
        (
            "+18005551234,Isabelle,moderator,main,whatsapp\n",
            "Error: row 1: whatsapp codes need Twilio Verify: set VERIFY_SERVICE_SID\n",
        ),
        (
            "+18005551234,Isabelle,moderator,main,app\n",
            "Error: +18005551234 has no authenticator app: send them an invitation to enrol "
            "instead\n",
        ),
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
    assert store.participants() == [
        ParticipantRow("+18005556789", "Tommy", Role.PARTICIPANT, "main", CodeBy.SMS)
    ]


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


# -- code methods ------------------------------------------------------------------------------


def method_and_secret(store, phone: str) -> tuple[str, bool]:
    with store.engine.connect() as connection:
        code_by, secret = connection.execute(
            select(Participant.code_by, Participant.app_secret).where(Participant.phone == phone)
        ).one()
    return code_by, secret is not None


def test_whatsapp_is_set_with_verify_and_refused_without(make_app):
    with_verify = make_app(VERIFY_SERVICE_SID=VERIFY_SID)
    cli = with_verify.test_cli_runner()

    added = cli.invoke(args=["participants", "add", BLATHERS, "Blathers", "--code-by", "whatsapp"])
    listed = cli.invoke(args=["participants", "list"])

    assert added.exit_code == 0, added.output
    assert listed.output == f"main\t{BLATHERS}\tBlathers [codes by whatsapp]\n"
    store = with_verify.extensions["ivr"].store
    assert method_and_secret(store, BLATHERS) == ("whatsapp", False)

    without = make_app(tables=False).test_cli_runner()
    refused = without.invoke(args=["participants", "add", MABEL, "Mabel", "--code-by", "whatsapp"])
    assert refused.exit_code == 1
    assert refused.output == ("Error: whatsapp codes need Twilio Verify: set VERIFY_SERVICE_SID\n")
    assert [p.phone for p in store.participants()] == [BLATHERS]
    # `app` is not offered: only the participant's own enrolment sets it.
    app_asked = without.invoke(args=["participants", "add", MABEL, "Mabel", "--code-by", "app"])
    assert app_asked.exit_code == 2
    assert "'app' is not one of 'sms', 'whatsapp'" in app_asked.output


def test_setting_sms_resets_an_authenticator_app(runner, make_app):
    cli, store = runner
    app = make_app(tables=False)
    store.add_participant(ParticipantRow(BLATHERS, "Blathers", Role.PARTICIPANT))
    enrol_app(app, BLATHERS)
    # Updating the name leaves the method alone.
    renamed = cli.invoke(args=["participants", "add", BLATHERS, "Blathers the Owl"])
    assert renamed.output == "Blathers the Owl (+1 800-555-9876) is a participant in main.\n"
    assert method_and_secret(store, BLATHERS) == ("app", True)

    reset = cli.invoke(args=["participants", "add", BLATHERS, "Blathers", "--code-by", "sms"])

    assert reset.exit_code == 0
    assert reset.output == (
        "Blathers (+1 800-555-9876) is a participant in main.\n"
        "Their authenticator app is reset: codes now go by SMS.\n"
    )
    assert method_and_secret(store, BLATHERS) == ("sms", False)


def test_an_export_with_an_app_participant_imports_back_unchanged(runner, make_app, tmp_path):
    cli, store = runner
    app = make_app(tables=False)
    store.add_participant(ParticipantRow(BLATHERS, "Blathers", Role.PARTICIPANT))
    store.add_participant(ParticipantRow(MABEL, "Mabel", Role.PARTICIPANT))
    enrol_app(app, BLATHERS)
    with store.engine.connect() as connection:
        sealed = connection.scalar(
            select(Participant.app_secret).where(Participant.phone == BLATHERS)
        )
    exported = tmp_path / "out.csv"
    cli.invoke(args=["participants", "export", str(exported)])
    assert exported.read_text() == (
        "phone,name,role,room,code_by\n"
        f"'{BLATHERS},Blathers,participant,main,app\n"
        f"'{MABEL},Mabel,participant,main,sms\n"
    )

    again = cli.invoke(args=["participants", "import", str(exported)])

    assert again.output == "Imported 2 participants.\n"
    with store.engine.connect() as connection:
        assert (
            connection.scalar(select(Participant.app_secret).where(Participant.phone == BLATHERS))
            == sealed
        )


def test_a_file_without_the_code_by_column_keeps_every_method(runner, make_app, tmp_path):
    cli, store = runner
    app = make_app(tables=False)
    store.add_participant(ParticipantRow(BLATHERS, "Blathers", Role.PARTICIPANT))
    enrol_app(app, BLATHERS)
    old_format = tmp_path / "old.csv"
    old_format.write_text(f"phone,name,role,room\n{BLATHERS},Blathers,moderator,main\n")
    empty_cell = tmp_path / "empty.csv"
    empty_cell.write_text(f"{BLATHERS},Blathers,moderator,main,\n")

    assert cli.invoke(args=["participants", "import", str(old_format)]).exit_code == 0
    assert method_and_secret(store, BLATHERS) == ("app", True)
    # An empty code_by cell means sms, as the column's documentation says: a reset.
    assert cli.invoke(args=["participants", "import", str(empty_cell)]).exit_code == 0
    assert method_and_secret(store, BLATHERS) == ("sms", False)
