"""The store's shared counters hold when many workers hit them at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select

from ivr.store import NumberGuard, ParticipantRow, Role, Room, Store, utcnow
from tests.conftest import BLATHERS, MABEL, MODERATOR, create_tables

THREADS = 8


@pytest.fixture
def stores(database):
    """Two stores (two instances' engines) on one database."""
    first, second = Store(database), Store(database)
    create_tables(first)
    yield first, second
    first.dispose()
    second.dispose()


def together(calls):
    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(lambda call: call(), calls))


def test_concurrent_failures_are_all_counted(stores):
    first, second = stores
    calls = [
        (lambda store=store: store.record_failure(BLATHERS, 1000, 600))
        for store in [first, second] * 10
    ]
    together(calls)
    # 20 failures from two instances and eight threads; a lost update would show fewer.
    with first.engine.connect() as connection:
        counted = connection.scalar(
            select(NumberGuard.failures).where(NumberGuard.phone == BLATHERS)
        )
    assert counted == 20


def test_the_lockout_comes_exactly_at_max_attempts(stores):
    first, second = stores
    assert first.record_failure(BLATHERS, 3, 600) is None
    assert second.record_failure(BLATHERS, 3, 600) is None
    until = first.record_failure(BLATHERS, 3, 600)

    assert until is not None and 599 <= (until - utcnow()).total_seconds() <= 600
    assert second.locked_until(BLATHERS) == until
    assert first.locked_until(MABEL) is None


def test_concurrent_sends_never_pass_the_cap(stores):
    first, second = stores
    results = together([(lambda s=s: s.reserve_send(BLATHERS, 5)) for s in [first, second] * 8])

    sent = [send_id for send_id in results if send_id is not None]
    assert len(sent) == len(set(sent)) == 5
    assert first.reserve_send(MABEL, 5) is not None


def test_a_code_is_consumed_once_however_many_try(stores):
    first, second = stores
    first.put_code(BLATHERS, "hash", utcnow().replace(year=utcnow().year + 1))

    results = together(
        [(lambda s=s: s.consume_code(BLATHERS, "hash")) for s in [first, second] * 6]
    )

    assert results.count(True) == 1
    assert first.pending_code(BLATHERS) is None


def test_sends_are_capped_per_purpose(stores):
    first, second = stores
    results = together(
        [(lambda s=s: s.reserve_send(BLATHERS, 5, purpose="sign-in")) for s in [first, second] * 4]
    )

    assert sum(r is not None for r in results) == 5
    assert second.reserve_send(BLATHERS, 5, purpose="sign-in") is None
    # The console's sends leave the line's whole hour untouched.
    assert [first.reserve_send(BLATHERS, 5) is not None for _ in range(6)] == [True] * 5 + [False]


def test_a_number_has_one_code_per_purpose(stores):
    first, second = stores
    later = utcnow().replace(year=utcnow().year + 1)
    first.put_code(BLATHERS, "line-hash", later)
    first.put_code(BLATHERS, "sign-in-hash", later, "sign-in")
    first.put_code(BLATHERS, "newer-sign-in-hash", later, "sign-in")

    assert second.pending_code(BLATHERS) == ("line-hash", later)
    assert second.pending_code(BLATHERS, "sign-in") == ("newer-sign-in-hash", later)
    assert not second.consume_code(BLATHERS, "line-hash", "sign-in")
    assert second.consume_code(BLATHERS, "newer-sign-in-hash", "sign-in")
    assert second.pending_code(BLATHERS, "sign-in") is None
    assert second.pending_code(BLATHERS) == ("line-hash", later)


def test_unlock_ends_a_lockout(stores):
    first, second = stores
    first.record_failure(BLATHERS, 1, 600)

    assert second.unlock(BLATHERS) is True
    assert first.locked_until(BLATHERS) is None
    assert second.unlock(BLATHERS) is False


def test_the_dialled_line_picks_the_room(stores):
    store, _ = stores
    store.import_participants(
        [
            ParticipantRow(MODERATOR, "Isabelle", Role.MODERATOR, "main"),
            ParticipantRow(BLATHERS, "Blathers", Role.PARTICIPANT, "main"),
            ParticipantRow(MABEL, "Mabel", Role.MODERATOR, "board"),
        ]
    )
    with store.engine.begin() as connection:
        connection.execute(
            Room.__table__.update().where(Room.name == "board").values(line_number="+18005550111")
        )

    board = store.caller_at_line(MABEL, "+18005550111")
    assert (board.room, board.name, board.role) == ("board", "Mabel", Role.MODERATOR)
    # Blathers is in main, not board: on board's line he is unknown.
    stranger = store.caller_at_line(BLATHERS, "+18005550111")
    assert (stranger.room, stranger.name) == ("board", None)
    # Any other line reaches the room without a line number.
    assert store.caller_at_line(BLATHERS, "+18005550100").name == "Blathers"
    assert store.caller_at_line(MABEL, None).name is None


def test_no_rooms_means_nobody_is_known(stores):
    store, _ = stores
    assert store.caller_at_line(BLATHERS, "+18005550100") is None
