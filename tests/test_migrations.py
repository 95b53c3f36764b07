"""Schema migrations: `flask --app ivr db ...` on an empty database, on one `init-db` made before
migrations existed, and back and forth; on SQLite, and on PostgreSQL with TEST_DATABASE_URL."""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from ivr import schema
from ivr.store import Base, CodeBy, SignInGuard

LEGACY = Path(__file__).parent / "legacy"
HEAD = schema.head()
PREVIOUS = schema.previous(HEAD)
AT = datetime(2026, 11, 20, 9, 55, 0)
LATER = datetime(2026, 11, 20, 10, 5, 0)
FAR = datetime(2099, 1, 1, 0, 0, 0)

# One row in every table of the schema `init-db` made before migrations, as that schema had it.
LEGACY_ROWS: dict[str, list[dict]] = {
    "rooms": [
        {"id": 1, "name": "main", "line_number": None, "hold_music_url": None},
        {"id": 2, "name": "board", "line_number": "+18005550123", "hold_music_url": None},
    ],
    "participants": [
        {"id": 1, "room_id": 1, "phone": "+18005551234", "name": "Isabelle", "role": "moderator"},
        {"id": 2, "room_id": 2, "phone": "+18005559876", "name": "Blathers", "role": "participant"},
    ],
    "number_guards": [{"phone": "+18005554321", "failures": 0, "locked_until": FAR}],
    "sign_in_guards": [{"phone": "+18005550111", "failures": 2, "locked_until": None}],
    "code_sends": [
        {
            "id": 1,
            "phone": "+18005559876",
            "sent_at": AT,
            "call_sid": "CA" + "1" * 32,
            "status": "started",
            "purpose": "line",
        }
    ],
    "one_time_codes": [
        {"phone": "+18005559876", "purpose": "line", "code_hash": "ab" * 32, "expires_at": LATER}
    ],
    "call_log": [
        {
            "id": 1,
            "at": AT,
            "call_sid": "CA" + "1" * 32,
            "phone": "+18005559876",
            "name": "Blathers",
            "room": "board",
            "outcome": "code sent",
        },
        {
            "id": 2,
            "at": LATER,
            "call_sid": "CA" + "1" * 32,
            "phone": "+18005559876",
            "name": "Blathers",
            "room": "board",
            "outcome": "joined as participant",
        },
    ],
    "admins": [{"id": 1, "phone": "+18005550111", "name": "Tom Nook", "signed_out_at": AT}],
    "conference_members": [
        {
            "call_sid": "CA" + "1" * 32,
            "conference_sid": "CF" + "2" * 32,
            "room": "board",
            "label": "Blathers",
            "phone": "+18005559876",
            "muted": True,
            "joined_at": LATER,
            "left_at": None,
        }
    ],
}


@pytest.fixture
def empty_app(make_app):
    """An app with Twilio settings on an empty database: no tables at all."""
    return make_app(tables=False)


def flask_db(app, *args: str, input: str | None = None):
    return app.test_cli_runner().invoke(args=["db", *args], input=input)


def tables(app) -> set[str]:
    store = app.extensions["ivr"].store
    if store.sqlite_file is not None and not store.sqlite_file.exists():
        return set()
    return set(inspect(store.engine).get_table_names())


def shape(engine) -> dict:
    """Describe every table as the database reports it: columns, keys, indexes, constraints."""
    inspector = inspect(engine)
    described = {}
    for table in sorted(set(inspector.get_table_names()) - {"alembic_version"}):
        described[table] = {
            # In any order: a migration adds columns at the end.
            "columns": sorted(
                (c["name"], str(c["type"]), c["nullable"], c["default"])
                for c in inspector.get_columns(table)
            ),
            "primary key": inspector.get_pk_constraint(table)["constrained_columns"],
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), i["unique"])
                for i in inspector.get_indexes(table)
            ),
            "unique": sorted(
                (u["name"], tuple(u["column_names"]))
                for u in inspector.get_unique_constraints(table)
            ),
            "foreign keys": sorted(
                (tuple(f["constrained_columns"]), f["referred_table"], f["options"].get("ondelete"))
                for f in inspector.get_foreign_keys(table)
            ),
        }
    return described


def old_database(app):
    """Return the engine of the app's database, as a file that exists (the old init-db made it)."""
    store = app.extensions["ivr"].store
    store.create_sqlite_file()
    return store.engine


def make_pre_migration_database(engine) -> None:
    """Build the schema the old `init-db` made, from its frozen DDL, with a row in every table."""
    ddl = (LEGACY / f"pre_migration_schema.{engine.dialect.name}.sql").read_text()
    with engine.begin() as connection:
        for statement in ddl_statements(ddl):
            connection.exec_driver_sql(statement)
        for table, rows in LEGACY_ROWS.items():
            for row in rows:
                columns = ", ".join(row)
                values = ", ".join(f":{column}" for column in row)
                connection.execute(text(f"INSERT INTO {table} ({columns}) VALUES ({values})"), row)


def ddl_statements(ddl: str) -> list[str]:
    lines = [line for line in ddl.splitlines() if not line.startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def all_rows(engine) -> dict[str, list[dict]]:
    """Return every row of every table, in the columns the pre-migration schema had."""
    with engine.connect() as connection:
        return {
            table: [
                dict(row._mapping)
                for row in connection.execute(
                    text(f"SELECT {', '.join(rows[0])} FROM {table} ORDER BY 1")
                )
            ]
            for table, rows in LEGACY_ROWS.items()
        }


def test_upgrade_creates_the_schema_on_an_empty_database(empty_app):
    assert tables(empty_app) == set()
    assert flask_db(empty_app, "current").output == (
        "No revision: the schema is not created (run `flask --app ivr db upgrade`).\n"
    )

    result = flask_db(empty_app, "upgrade")

    assert result.exit_code == 0, result.output
    assert result.output == f"Schema upgraded from an empty database to revision {HEAD}.\n"
    assert tables(empty_app) == set(Base.metadata.tables) | {"alembic_version"}
    assert flask_db(empty_app, "current").output == f"{HEAD} (newest)\n"
    again = flask_db(empty_app, "upgrade")
    assert again.output == f"Schema is at revision {HEAD}; nothing to do.\n"
    check = flask_db(empty_app, "check")
    assert (check.exit_code, check.output) == (
        0,
        f"Schema matches the models at revision {HEAD}.\n",
    )


def test_the_migrations_make_exactly_the_schema_of_the_models(empty_app):
    engine = old_database(empty_app)
    Base.metadata.create_all(engine)
    from_models = shape(engine)
    Base.metadata.drop_all(engine)

    schema.upgrade(engine)

    assert shape(engine) == from_models
    assert set(from_models) == set(Base.metadata.tables)


def test_a_database_made_before_migrations_is_stamped_and_keeps_every_row(empty_app):
    engine = old_database(empty_app)
    make_pre_migration_database(engine)
    before = all_rows(engine)
    assert all(before[table] for table in LEGACY_ROWS)

    result = flask_db(empty_app, "upgrade")

    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == (
        "This database was made before migrations: marked as revision 0001, no rows changed."
    )
    assert all_rows(engine) == before
    assert flask_db(empty_app, "current").output == f"{HEAD} (newest)\n"
    assert flask_db(empty_app, "check").exit_code == 0
    # The line still works on it: Blathers is still in the board room.
    store = empty_app.extensions["ivr"].store
    assert store.caller_at_line("+18005559876", "+18005550123").name == "Blathers"


def test_init_db_upgrades_a_database_made_before_migrations(empty_app):
    engine = old_database(empty_app)
    make_pre_migration_database(engine)
    before = all_rows(engine)

    result = empty_app.test_cli_runner().invoke(args=["init-db"])

    assert (result.exit_code, result.output) == (0, "Database ready.\n")
    assert all_rows(engine) == before
    assert schema.current(engine) == HEAD


def test_a_partial_old_schema_is_refused_and_left_alone(empty_app):
    engine = old_database(empty_app)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TABLE rooms (id INTEGER PRIMARY KEY, name VARCHAR(100) NOT NULL)"
        )

    result = flask_db(empty_app, "upgrade")

    assert result.exit_code == 1
    assert result.output.count("\n") == 1
    assert result.output.startswith("Error: the database has some of the line's tables")
    assert "rooms.line_number" in result.output and "participants" in result.output
    assert tables(empty_app) == {"rooms"}


def test_downgrade_one_step_and_upgrade_again_keeps_the_rows(empty_app):
    engine = old_database(empty_app)
    make_pre_migration_database(engine)
    assert flask_db(empty_app, "upgrade").exit_code == 0
    before = all_rows(engine)

    result = flask_db(empty_app, "downgrade")

    assert result.exit_code == 0, result.output
    assert result.output == f"Schema downgraded from revision {HEAD} to revision {PREVIOUS}.\n"
    assert schema.current(engine) == PREVIOUS
    assert all_rows(engine) == before
    behind = flask_db(empty_app, "check")
    assert behind.exit_code == 1
    assert behind.output == (
        "Error: Target database is not up to date. (run `flask --app ivr db upgrade`)\n"
    )

    again = flask_db(empty_app, "upgrade")
    assert again.output == f"Schema upgraded from revision {PREVIOUS} to revision {HEAD}.\n"
    assert all_rows(engine) == before
    assert flask_db(empty_app, "check").exit_code == 0


def test_the_previous_head_upgrades_with_its_rows(empty_app):
    """Revision 0006 adds the audit trail and admins' time zones: admins start on UTC, the
    trail starts empty, and nothing else changes."""
    engine = old_database(empty_app)
    make_pre_migration_database(engine)
    assert schema.upgrade(engine, PREVIOUS).after == PREVIOUS == "0005"
    before = all_rows(engine)

    assert flask_db(empty_app, "upgrade").exit_code == 0

    assert schema.current(engine) == HEAD == "0006"
    assert all_rows(engine) == before
    with engine.connect() as connection:
        assert connection.execute(text("SELECT phone, time_zone FROM admins")).all() == [
            ("+18005550111", None)
        ]
        assert connection.scalar(text("SELECT count(*) FROM audit_log")) == 0
    store = empty_app.extensions["ivr"].store
    store.record_audit("command line", "admin.remove", "Tom Nook (+1 800-555-0111)")
    assert [e.action for e in store.audit_page().entries] == ["admin.remove"]


def test_revision_0005_keeps_every_room_open_and_in_english(empty_app):
    """Revision 0005 adds rooms' hours, announcements and language: every room stays open,
    announces names and speaks US English, as before."""
    engine = old_database(empty_app)
    make_pre_migration_database(engine)
    assert schema.upgrade(engine, "0004").after == "0004"
    before = all_rows(engine)

    assert flask_db(empty_app, "upgrade").exit_code == 0

    assert schema.current(engine) == HEAD
    assert all_rows(engine) == before
    with engine.connect() as connection:
        rooms = connection.execute(
            text(
                "SELECT name, time_zone, opening_hours, moderators_anytime, announce_names, "
                "language FROM rooms ORDER BY id"
            )
        ).all()
    assert rooms == [
        ("main", None, None, True, True, "en-US"),
        ("board", None, None, True, True, "en-US"),
    ]
    store = empty_app.extensions["ivr"].store
    caller = store.caller_at_line("+18005559876", "+18005550123")
    assert (caller.name, caller.room, caller.language) == ("Blathers", "board", "en-US")
    assert (caller.opening_hours, caller.time_zone, caller.moderators_anytime) == (
        None,
        None,
        True,
    )


def test_revision_0004_gives_everyone_listed_sms(empty_app):
    """Revision 0004 adds how participants get codes: everyone listed keeps getting SMS."""
    engine = old_database(empty_app)
    make_pre_migration_database(engine)
    assert schema.upgrade(engine, "0003").after == "0003"
    before = all_rows(engine)

    assert flask_db(empty_app, "upgrade").exit_code == 0

    assert schema.current(engine) == HEAD
    assert all_rows(engine) == before
    with engine.connect() as connection:
        methods = connection.execute(
            text("SELECT phone, code_by, app_secret, app_last_step FROM participants ORDER BY id")
        ).all()
        assert connection.scalar(text("SELECT count(*) FROM enrolments")) == 0
    assert methods == [("+18005551234", "sms", None, None), ("+18005559876", "sms", None, None)]
    store = empty_app.extensions["ivr"].store
    caller = store.caller_at_line("+18005559876", "+18005550123")
    assert (caller.name, caller.code_by, caller.app_secret) == ("Blathers", CodeBy.SMS, None)


def test_revision_0002_starts_existing_guards_with_no_checks_in_flight(empty_app):
    """Revision 0002 adds guards' count of checks in flight: existing guards start at 0."""
    engine = old_database(empty_app)
    make_pre_migration_database(engine)
    assert schema.upgrade(engine, "0001").after == "0001"
    before = all_rows(engine)

    assert flask_db(empty_app, "upgrade").exit_code == 0

    assert schema.current(engine) == HEAD
    assert all_rows(engine) == before
    with engine.connect() as connection:
        for guard in ("number_guards", "sign_in_guards"):
            assert connection.scalars(text(f"SELECT checking FROM {guard}")).all() == [0]
    # The line uses them: the locked number is still locked, the other may guess again.
    store = empty_app.extensions["ivr"].store
    assert store.claim_attempt("+18005554321", 3) is None
    assert store.claim_attempt("+18005550111", 3, SignInGuard) == 3


def test_downgrading_below_the_first_revision_asks_first(empty_app):
    assert flask_db(empty_app, "upgrade").exit_code == 0

    declined = flask_db(empty_app, "downgrade", "base", input="n\n")
    assert declined.exit_code == 1
    assert "This drops every table of the line and all its rows. Go on?" in declined.output
    assert schema.current(empty_app.extensions["ivr"].store.engine) == HEAD

    result = flask_db(empty_app, "downgrade", "base", "--yes")
    assert result.exit_code == 0, result.output
    assert result.output == f"Schema downgraded from revision {HEAD} to an empty database.\n"
    assert tables(empty_app) == {"alembic_version"}

    assert flask_db(empty_app, "upgrade").exit_code == 0
    assert tables(empty_app) == set(Base.metadata.tables) | {"alembic_version"}
    assert flask_db(empty_app, "check").exit_code == 0


def test_check_fails_when_the_database_and_the_models_differ(empty_app):
    assert flask_db(empty_app, "upgrade").exit_code == 0
    with empty_app.extensions["ivr"].store.engine.begin() as connection:
        connection.exec_driver_sql("DROP INDEX ix_call_log_at")

    result = flask_db(empty_app, "check")

    assert result.exit_code == 1
    assert result.output.count("\n") == 1
    assert result.output.startswith("Error: the models differ from the newest revision")
    assert "ix_call_log_at" in result.output


def test_history_lists_the_revisions(empty_app):
    result = flask_db(empty_app, "history")

    lines = result.output.splitlines()
    assert result.exit_code == 0
    assert f"-> {HEAD} (head), " in lines[0]
    assert lines[-1].startswith("<base> -> 0001")
    assert lines[-1].endswith(", The schema `init-db` created before migrations existed.")


def test_instances_released_together_migrate_once(database):
    """Several processes upgrading one new database at the same moment all succeed."""
    engines = [create_engine(database) for _ in range(4)]
    start = threading.Barrier(len(engines))
    results, errors = [], []

    def release(engine):
        start.wait()
        try:
            results.append(schema.upgrade(engine).after)
        except Exception as error:  # noqa: BLE001 - any failure is the finding
            errors.append(error)

    threads = [threading.Thread(target=release, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert errors == []
    assert results == [HEAD] * len(engines)
    schema.check(engines[0])
    for engine in engines:
        engine.dispose()


def test_an_unreachable_database_gets_one_line(make_app):
    app = make_app(tables=False, DATABASE_URL="postgresql://postgres@127.0.0.1:9/none")

    result = flask_db(app, "upgrade")

    assert result.exit_code == 1
    assert result.output.startswith("Error: cannot use the database: ")
    assert result.output.count("\n") == 1
