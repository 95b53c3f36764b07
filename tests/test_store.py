"""The store's shared counters hold when many workers hit them at once."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from ivr.store import (
    CallerLookup,
    CallNote,
    KeptAnswer,
    NumberGuard,
    Outcome,
    ParticipantRow,
    Role,
    Room,
    SignInGuard,
    Store,
    StoredCode,
    utcnow,
)
from ivr.store.database import RECYCLE_SECONDS
from ivr.store.models import WebhookAnswer
from tests.conftest import BLATHERS, MABEL, MODERATOR, create_tables, lock_out

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


def test_concurrent_claims_are_all_counted(stores):
    first, second = stores
    calls = [
        (lambda store=store: store.claim_attempt(BLATHERS, 1000)) for store in [first, second] * 10
    ]
    claimed = together(calls)
    # 20 claims from two instances and eight threads; a lost update would show fewer.
    assert sorted(claimed) == list(range(1, 21))
    with first.engine.connect() as connection:
        counted = connection.scalar(
            select(NumberGuard.failures).where(NumberGuard.phone == BLATHERS)
        )
    assert counted == 20


@pytest.mark.parametrize("guard", [NumberGuard, SignInGuard])
def test_concurrent_claims_never_pass_max_attempts(stores, guard):
    first, second = stores
    calls = [
        (lambda store=store: store.claim_attempt(BLATHERS, 3, guard))
        for store in [first, second] * 12
    ]
    claimed = together(calls)

    assert sorted(c for c in claimed if c is not None) == [1, 2, 3]
    assert claimed.count(None) == 21
    assert first.claim_attempt(MABEL, 3, guard) == 1


def test_the_lockout_comes_when_the_last_claimed_check_fails(stores):
    first, second = stores
    attempts = [first.claim_attempt(BLATHERS, 3), second.claim_attempt(BLATHERS, 3)]
    attempts.append(first.claim_attempt(BLATHERS, 3))
    assert attempts == [1, 2, 3]
    assert second.claim_attempt(BLATHERS, 3) is None  # all claimed, none settled yet

    # The last claim may settle first; the lockout comes with it, not with the earlier ones.
    until = first.fail_attempt(BLATHERS, 3, 3, 600)
    assert first.fail_attempt(BLATHERS, 1, 3, 600) is None
    assert second.fail_attempt(BLATHERS, 2, 3, 600) is None

    assert until is not None and 599 <= (until - utcnow()).total_seconds() <= 600
    assert second.locked_until(BLATHERS) == until
    assert second.claim_attempt(BLATHERS, 3) is None
    assert first.locked_until(MABEL) is None


def test_an_attempt_never_checked_is_given_back(stores):
    first, second = stores
    assert first.claim_attempt(BLATHERS, 3) == 1
    assert second.claim_attempt(BLATHERS, 3) == 2
    second.give_back_attempt(BLATHERS)
    assert first.claim_attempt(BLATHERS, 3) == 2


def test_a_success_clears_the_failures_before_it(stores):
    first, second = stores
    assert first.fail_attempt(BLATHERS, first.claim_attempt(BLATHERS, 3), 3, 600) is None
    assert second.claim_attempt(BLATHERS, 3) == 2

    second.succeed_attempt(BLATHERS)

    assert first.claim_attempt(BLATHERS, 3) == 1


def test_a_success_in_a_burst_does_not_reopen_the_window(stores):
    first, second = stores
    claims = [first.claim_attempt(BLATHERS, 3) for _ in range(3)]
    assert claims == [1, 2, 3]

    second.succeed_attempt(BLATHERS)  # the second guess was right; two are still in flight

    assert first.claim_attempt(BLATHERS, 3) is None
    assert second.fail_attempt(BLATHERS, 1, 3, 600) is None
    assert first.claim_attempt(BLATHERS, 3) is None
    assert second.fail_attempt(BLATHERS, 3, 3, 600) is not None


def test_concurrent_sends_never_pass_the_cap(stores):
    first, second = stores
    results = together([(lambda s=s: s.reserve_send(BLATHERS, 5)) for s in [first, second] * 8])

    sent = [send_id for send_id in results if send_id is not None]
    assert len(sent) == len(set(sent)) == 5
    assert first.reserve_send(MABEL, 5) is not None


def released_together(calls):
    """Run every call on its own thread, all released at one barrier; return their results."""
    barrier = threading.Barrier(len(calls))

    def run(call):
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def test_concurrent_calls_reserve_log_and_keep_only_up_to_the_cap(stores):
    """/voice's reservation: the send, its "code sent" row and the webhook's kept answer come
    together, for exactly the sends under the cap, however many calls race on two instances."""
    from ivr.store import CallNote, KeptAnswer

    first, second = stores
    tokens = [f"token-{n}" for n in range(12)]
    for token in tokens:
        assert first.claim_webhook(token, "/voice") is None

    def reserve(store, n):
        note = CallNote(f"CA{n:032d}", BLATHERS, "Blathers", "main")
        kept = KeptAnswer(tokens[n], f"<Response>{n}</Response>")
        code = StoredCode(f"hash-{n}", utcnow() + timedelta(minutes=5))
        return store.reserve_send(BLATHERS, 5, note, answer=kept, code=code)

    results = released_together(
        [(lambda s=s, n=n: reserve(s, n)) for n, s in enumerate([first, second] * 6)]
    )

    reserved = [n for n, send_id in enumerate(results) if send_id is not None]
    assert len(reserved) == len({results[n] for n in reserved}) == 5
    logged = sorted(entry.call_sid for entry in first.call_log())
    assert logged == sorted(f"CA{n:032d}" for n in reserved)
    assert {entry.outcome for entry in first.call_log()} == {"code sent"}
    for n, token in enumerate(tokens):
        expected = f"<Response>{n}</Response>" if n in reserved else None
        assert first.answer_of(token) == expected
    # The code stored is one that went with a reserved send, never a refused one's.
    assert first.pending_code(BLATHERS)[0] in {f"hash-{n}" for n in reserved}


@pytest.mark.skipif(
    not os.environ.get("TEST_DATABASE_URL"), reason="needs PostgreSQL (TEST_DATABASE_URL)"
)
def test_a_reservation_that_fails_part_way_leaves_nothing(stores):
    """The row lock, the send, its log row, the kept answer and the code stand or fall
    together, sent in one round trip. (SQLite keeps text of any length: nothing fails.)"""
    from sqlalchemy.exc import DBAPIError

    store, other = stores
    assert store.claim_webhook("token-1", "/voice") is None
    too_long = CallNote(VOICE_CALL, BLATHERS, "B" * 500, "main")  # longer than the log keeps
    code = StoredCode("hash-1", utcnow() + timedelta(minutes=5))
    with pytest.raises(DBAPIError):
        store.reserve_send(BLATHERS, 5, too_long, answer=KeptAnswer("token-1", "<R/>"), code=code)
    assert (other.answer_of("token-1"), other.pending_code(BLATHERS)) == (None, None)
    assert other.call_log() == []
    # The connection is fine for the next reservation.
    assert store.reserve_send(BLATHERS, 5, VOICE_NOTE, code=code) is not None


def test_a_join_settles_its_claim_logs_and_keeps_its_answer_in_one_step(stores):
    from ivr.store import CallNote, KeptAnswer, Outcome

    store, other = stores
    assert store.claim_webhook("token-join", "/gather") is None
    assert store.claim_attempt(BLATHERS, 3) == 1
    assert store.claim_attempt(BLATHERS, 3) == 2
    store.fail_attempt(BLATHERS, 2, 3, 600)  # one guess failed; the right one is in flight

    note = CallNote("CA" + "4" * 32, BLATHERS, "Blathers", "main")
    other.record_join(Outcome.JOINED_PARTICIPANT, note, KeptAnswer("token-join", "<Joined/>"))

    assert store.answer_of("token-join") == "<Joined/>"
    [entry] = store.call_log()
    assert (entry.call_sid, entry.phone, entry.outcome) == (
        note.call_sid,
        BLATHERS,
        "joined as participant",
    )
    with store.engine.connect() as connection:
        guard = connection.execute(
            select(NumberGuard.failures, NumberGuard.checking).where(NumberGuard.phone == BLATHERS)
        ).one()
    assert tuple(guard) == (0, 0)
    # A right code while other guesses are still being checked: the count stays (a burst gets
    # no more than its max_attempts checks), and only this check is settled.
    assert [store.claim_attempt(MABEL, 3) for _ in range(3)] == [1, 2, 3]
    other.record_join(Outcome.JOINED_PARTICIPANT, CallNote("CA" + "6" * 32, MABEL, "Mabel", "main"))
    with store.engine.connect() as connection:
        guard = connection.execute(
            select(NumberGuard.failures, NumberGuard.checking).where(NumberGuard.phone == MABEL)
        ).one()
    assert tuple(guard) == (3, 2)
    assert store.claim_attempt(MABEL, 3) is None
    # Without a phone or a token there is nothing to settle or keep, only the row to log.
    store.record_join(Outcome.JOINED_PARTICIPANT, CallNote("CA" + "5" * 32, None, None, "main"))
    assert len(store.call_log()) == 3


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
    lock_out(first, BLATHERS)

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


def test_webhook_statements_store_times_as_sqlalchemy_does(stores):
    """The webhook path's prepared statements bypass SQLAlchemy's execution, not its types.

    A time written by one (the call log's "at", a lockout's end) is stored as the ORM stores
    it, byte for byte on SQLite, and reads back as the same datetime through both.
    """
    from sqlalchemy import text

    from ivr.store import CallLogEntry, CallNote, Outcome

    store, _ = stores
    store.import_participants([ParticipantRow(MABEL, "Mabel", Role.PARTICIPANT)])
    store.log_call(Outcome.WRONG_CODE, CallNote("CA" + "1" * 32, BLATHERS, "Blathers", "main"))
    [entry] = store.call_log()
    with store._session.begin() as session:
        session.add(
            CallLogEntry(
                at=entry.at,
                call_sid="CA" + "2" * 32,
                phone=MABEL,
                name="Mabel",
                room="main",
                outcome=str(Outcome.WRONG_CODE),
            )
        )
    with store.engine.connect() as connection:
        stored = connection.execute(text("SELECT at FROM call_log ORDER BY id")).scalars().all()
    assert stored[0] == stored[1]
    assert [e.at for e in store.call_log()] == [entry.at, entry.at]
    assert isinstance(entry.at, datetime)

    lock_out(store, MABEL)
    until = store.locked_until(MABEL)
    [lockout] = store.lockouts()
    assert (lockout.phone, lockout.locked_until) == (MABEL, until)
    assert store.caller_at_line(MABEL, None).locked_until == until


def test_a_caller_is_found_with_the_claim_of_their_webhook(stores):
    from ivr.store import CallerLookup, CallNote, SendStatus

    store, other = stores
    store.import_participants([ParticipantRow(BLATHERS, "Blathers", Role.PARTICIPANT)])
    lookup = CallerLookup(BLATHERS, None, "CA" + "3" * 32)
    claimed = store.claim_webhook_finding("token-1", "/voice", lookup)
    assert (claimed.seen, claimed.looked_up) == (None, True)
    caller = claimed.caller
    assert (caller.name, caller.room, caller.send_status) == ("Blathers", "main", None)
    # The same token again, from another instance: a retry, which looks up no one.
    retry = other.claim_webhook_finding("token-1", "/voice", lookup)
    assert (retry.seen.answer, retry.caller, retry.looked_up) == (None, None, False)
    store.reserve_send(BLATHERS, 5, CallNote("CA" + "3" * 32, BLATHERS, "Blathers", "main"))
    claimed = store.claim_webhook_finding("token-2", "/gather", lookup)
    assert claimed.caller.send_status == SendStatus.STARTED


def test_the_live_labels_come_with_the_claim_of_a_gather(stores):
    """/gather's claim reads who is in the caller's conference with the caller: every label
    live there, and none that left, none in another room's conference, none without a label."""
    from ivr.store import CallerLookup

    store, _ = stores
    store.import_participants(
        [
            ParticipantRow(BLATHERS, "Blathers", Role.PARTICIPANT),
            ParticipantRow(MABEL, "Mabel", Role.PARTICIPANT, room="board"),
        ]
    )
    lookup = CallerLookup(BLATHERS, None, "CA" + "3" * 32, with_live_labels=True)
    # Nobody in the conference yet: no labels (an empty set, not "not read").
    assert store.claim_webhook_finding("token-0", "/gather", lookup).caller.live_labels == set()
    for n in range(40):
        store.member_joined("CF" + "1" * 32, "main", f"CA{n:032d}", f"Caller {n}", False)
    store.member_left(f"CA{7:032d}", "CF" + "1" * 32, "main")
    store.member_joined("CF" + "1" * 32, "main", "CA" + "x" * 32, None, False)
    store.member_joined("CF" + "2" * 32, "board", "CA" + "y" * 32, "Mabel", False)

    claimed = store.claim_webhook_finding("token-1", "/gather", lookup)

    expected = {f"Caller {n}" for n in range(40)} - {"Caller 7"}
    assert claimed.caller.live_labels == expected
    assert store.live_labels("main") == expected


def test_a_code_check_is_claimed_with_the_look_up_for_a_listed_caller_only(stores):
    """/gather claims its check with the webhook claim: counted as `claim_attempt` counts, for
    a caller on the dialled line's list, never for a retry or a number not on the list."""
    from ivr.store import CallerLookup

    store, other = stores
    store.import_participants([ParticipantRow(BLATHERS, "Blathers", Role.PARTICIPANT)])

    def gather(store, token, phone=BLATHERS):
        lookup = CallerLookup(phone, None, "CA" + "4" * 32, claiming_a_check=3)
        return store.claim_webhook_finding(token, "/gather", lookup)

    first = gather(store, "token-1")
    assert (first.attempt, first.attempt_claimed, first.caller.name) == (1, True, "Blathers")
    assert (gather(other, "token-2").attempt, store.claim_attempt(BLATHERS, 3)) == (2, 3)
    # The window is used up until a claim settles: the look-up claims nothing then.
    refused = gather(other, "token-3")
    assert (refused.attempt, refused.attempt_claimed, refused.caller.name) == (
        None,
        True,
        "Blathers",
    )
    # A retry claims nothing, and neither does a number not on the list.
    retry = gather(other, "token-1")
    assert (retry.seen.answer, retry.attempt, retry.attempt_claimed) == (None, None, False)
    stranger = gather(store, "token-4", MABEL)
    assert (stranger.caller.name, stranger.attempt, stranger.attempt_claimed) == (None, None, True)
    with store.engine.connect() as connection:
        rows = connection.execute(select(NumberGuard.phone, NumberGuard.failures)).all()
    assert rows == [(BLATHERS, 3)]


def test_a_burst_of_claims_with_look_ups_claims_at_most_max_attempts(stores):
    """Released together on two instances' engines: at most three checks are claimed."""
    from ivr.store import CallerLookup

    first, second = stores
    first.import_participants([ParticipantRow(BLATHERS, "Blathers", Role.PARTICIPANT)])
    lookup = CallerLookup(BLATHERS, None, "CA" + "5" * 32, claiming_a_check=3)
    claims = together(
        (lambda store=store, n=n: store.claim_webhook_finding(f"token-{n}", "/gather", lookup))
        for n, store in enumerate([first, second] * 12)
    )
    assert sorted(claim.attempt for claim in claims if claim.attempt is not None) == [1, 2, 3]
    assert all(claim.attempt_claimed for claim in claims)


VOICE_CALL = "CA" + "6" * 32
VOICE_NOTE = CallNote(VOICE_CALL, BLATHERS, "Blathers", "main")


def voice_claim(store, token: str, hold: bool = True):
    """/voice's claim of its webhook, holding SQLite's transaction open for its next write."""
    store.import_participants([ParticipantRow(BLATHERS, "Blathers", Role.PARTICIPANT)])
    lookup = CallerLookup(BLATHERS, None, VOICE_CALL)
    return store.claim_webhook_finding(token, "/voice", lookup, hold)


def claims_seen_by(store) -> int:
    with store.engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(WebhookAnswer))


def writers_started(*stores) -> list[threading.Thread]:
    """A call log write from each store, each on a thread of its own."""
    threads = [
        threading.Thread(target=store.log_call, args=(Outcome.UNKNOWN_NUMBER, VOICE_NOTE))
        for store in stores
    ]
    for thread in threads:
        thread.start()
    return threads


def test_a_held_claim_commits_with_its_threads_next_write_while_other_writers_wait(stores):
    """/voice's claim and its reservation commit together on SQLite; meanwhile this process's
    other writers and another instance's wait for them (and are not lost). PostgreSQL commits
    the claim at once: its statement is the claim's whole transaction."""
    store, other = stores
    assert voice_claim(store, "token-1").caller.name == "Blathers"
    held = store.dialect == "sqlite"
    assert claims_seen_by(other) == (0 if held else 1)

    waiting = writers_started(store, other)
    for thread in waiting:
        thread.join(0.3)
    assert [thread.is_alive() for thread in waiting] == [held, held]

    store.reserve_send(BLATHERS, 5, VOICE_NOTE, answer=KeptAnswer("token-1", "<Response/>"))
    for thread in waiting:
        thread.join(15)
        assert not thread.is_alive()
    assert other.answer_of("token-1") == "<Response/>"
    logged = [entry.outcome for entry in other.call_events(VOICE_CALL)]
    assert sorted(logged) == ["code sent", "unknown number", "unknown number"]


def test_a_held_claim_without_a_next_write_is_committed_by_commit_held(stores):
    store, other = stores
    voice_claim(store, "token-1")

    store.commit_held()
    store.commit_held()  # nothing held: nothing to do

    assert claims_seen_by(other) == 1
    [writer] = writers_started(other)
    writer.join(5)
    assert not writer.is_alive()


def test_a_retry_holds_nothing(stores):
    store, other = stores
    voice_claim(store, "token-1", hold=False)

    retry = voice_claim(other, "token-1")

    assert (retry.seen.answer, retry.looked_up) == (None, False)
    [writer] = writers_started(store)
    writer.join(5)
    assert not writer.is_alive()


def test_a_held_claim_falls_with_the_next_write_if_that_fails(stores):
    """On SQLite the claim and the write it was held for stand or fall together: a retry
    then acts afresh. On PostgreSQL the claim was committed by itself."""
    from sqlalchemy.exc import IntegrityError

    store, other = stores
    voice_claim(store, "token-1")
    with pytest.raises(IntegrityError):
        store.reserve_send(None, 5)  # no number: refused by the database

    again = voice_claim(other, "token-1", hold=False)
    assert (again.seen is None) == (store.dialect == "sqlite")


def test_a_built_in_code_is_stored_with_its_reservation_and_not_past_the_cap(stores):
    store, other = stores
    expires = utcnow().replace(microsecond=0) + timedelta(minutes=5)
    for n in range(5):
        code = StoredCode(f"hash-{n}", expires)
        assert store.reserve_send(BLATHERS, 5, VOICE_NOTE, code=code) is not None
        assert other.pending_code(BLATHERS) == (f"hash-{n}", expires)
    # The sixth send in the hour is refused: its code is not stored either.
    refused = StoredCode("hash-refused", expires + timedelta(minutes=1))
    assert store.reserve_send(BLATHERS, 5, VOICE_NOTE, code=refused) is None
    assert other.pending_code(BLATHERS) == ("hash-4", expires)
    assert other.consume_code(BLATHERS, "hash-4") is True


def test_sends_are_marked_done_in_groups_and_a_failed_one_stays_failed(stores):
    from ivr.store import CodeSend, SendStatus

    store, other = stores
    notes = [CallNote(f"CA{n:032d}", f"+1202555{n:04d}", None, "main") for n in range(3)]
    ids = [store.reserve_send(note.phone, 5, note) for note in notes]
    store.send_failed(ids[1], SendStatus.FAILED, Outcome.PROVIDER_ERROR, notes[1])

    other.sends_done(ids)

    with store.engine.connect() as connection:
        rows = connection.execute(select(CodeSend.id, CodeSend.status).order_by(CodeSend.id))
        assert [status for _, status in rows] == ["sent", "failed", "sent"]


def test_a_caller_row_that_cannot_be_read_leaves_no_check_claimed(stores):
    """A participant row the line cannot read (a role it does not know): the look-up fails,
    and the code check claimed with it is given back, not left in flight."""
    from sqlalchemy import text

    store, _ = stores
    store.import_participants([ParticipantRow(BLATHERS, "Blathers", Role.PARTICIPANT)])
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE participants SET role = 'bogus'"))
    lookup = CallerLookup(BLATHERS, None, "CA" + "8" * 32, claiming_a_check=3)

    with pytest.raises(ValueError):
        store.claim_webhook_finding("token-1", "/gather", lookup)

    with store.engine.connect() as connection:
        guard = connection.execute(select(NumberGuard.failures, NumberGuard.checking)).all()
    assert guard in ([], [(0, 0)])


def test_a_database_error_on_the_webhook_path_is_sqlalchemys(stores):
    """The prepared statements raise what SQLAlchemy raises (and drop a lost pool as it does)."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    store, _ = stores
    with store.engine.begin() as connection:
        connection.execute(text("DROP TABLE webhook_answers"))
    with pytest.raises(DBAPIError):
        store.claim_webhook("token-1", "/voice")


def terminate_connections(store) -> None:
    """Do what a database restart does to the store's connections: end every one of them."""
    from sqlalchemy import create_engine, text

    admin = create_engine(store.engine.url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :name AND pid <> pg_backend_pid()"
            ),
            {"name": store.engine.url.database},
        )
    admin.dispose()


def on_own_threads(count: int) -> list[ThreadPoolExecutor]:
    """`count` threads that live until shut down: each runs what is submitted to it."""
    return [ThreadPoolExecutor(1) for _ in range(count)]


needs_postgresql = pytest.mark.skipif(
    not os.environ.get("TEST_DATABASE_URL"), reason="needs PostgreSQL (TEST_DATABASE_URL)"
)


@needs_postgresql
@pytest.mark.parametrize("first_to_find_out", ["single statement", "transaction"])
def test_after_a_database_restart_one_webhook_fails_not_one_per_pooled_connection(
    stores, first_to_find_out
):
    """A restart kills every pooled connection: the first webhook to find out drops them all,
    whichever of the two pools (single statements, transactions) it used."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    store, _ = stores
    # Both of its pools: transactions, and the webhook path's single statements.
    held = [engine.connect() for engine in (store.engine, store._autocommit) for _ in range(4)]
    for connection in held:
        connection.execute(text("SELECT 1"))
        connection.close()  # back to the pools: four live connections in each
    terminate_connections(store)
    with pytest.raises(DBAPIError) as failed:
        if first_to_find_out == "single statement":
            store.claim_webhook("token-1", "/voice")
        else:
            store.reserve_send(MABEL, 5)
    assert failed.value.connection_invalidated
    # The other stale connections, in both pools, went with it: the next webhooks just work.
    assert [store.claim_webhook(f"token-{n}", "/voice") for n in range(2, 6)] == [None] * 4
    assert [store.reserve_send(BLATHERS, 5) is not None for _ in range(4)] == [True] * 4


@needs_postgresql
def test_after_a_restart_threads_that_keep_connections_take_new_ones(stores):
    """PostgreSQL: request threads keep their webhook connections; after a restart the first
    webhook to find out fails, and every other thread's next statement runs on a new one."""
    from sqlalchemy.exc import DBAPIError

    store, _ = stores
    threads = on_own_threads(4)
    claimed = [
        t.submit(store.claim_webhook, f"before-{n}", "/voice") for n, t in enumerate(threads)
    ]
    assert [future.result() for future in claimed] == [None] * 4
    assert len(store._kept) == 4
    terminate_connections(store)

    with pytest.raises(DBAPIError) as failed:
        threads[0].submit(store.claim_webhook, "after-0", "/voice").result()
    assert failed.value.connection_invalidated
    after = [t.submit(store.claim_webhook, f"after-{n}", "/voice") for n, t in enumerate(threads)]
    assert [future.result() for future in after] == [None] * 4
    assert store.reserve_send(MABEL, 5) is not None  # the pool of transactions, too
    for thread in threads:
        thread.shutdown()


@needs_postgresql
def test_threads_past_the_kept_connections_share_the_pool_and_ending_ones_give_theirs_back(
    stores,
):
    import gc

    from ivr.store.database import KEPT_CONNECTIONS

    store, _ = stores
    threads = on_own_threads(KEPT_CONNECTIONS + 4)
    claimed = [t.submit(store.claim_webhook, f"token-{n}", "/voice") for n, t in enumerate(threads)]
    assert [future.result() for future in claimed] == [None] * len(threads)
    # The first ten threads keep theirs; the other four gave theirs back to the pool.
    assert len(store._kept) == KEPT_CONNECTIONS
    assert store._autocommit.pool.checkedout() == KEPT_CONNECTIONS
    for thread in threads:
        thread.shutdown()
    gc.collect()
    assert (len(store._kept), store._autocommit.pool.checkedout()) == (0, 0)
    # Slots freed by ended threads are kept by the next ones.
    newcomer = ThreadPoolExecutor(1)
    assert newcomer.submit(store.claim_webhook, "token-new", "/voice").result() is None
    assert len(store._kept) == 1
    newcomer.shutdown()


@needs_postgresql
def test_a_kept_connection_left_in_a_transaction_is_not_used_again(stores):
    """Should a statement ever leave a thread's kept connection inside a transaction, the
    thread's next write does not land in it, uncommitted: it takes a new connection."""
    store, other = stores
    assert store.claim_webhook("token-1", "/voice") is None
    stuck = store._held.kept.kept.connection
    stuck.connection.driver_connection.execute("BEGIN")

    assert store.claim_webhook("token-2", "/voice") is None
    with other.engine.connect() as connection:
        committed = connection.scalars(select(WebhookAnswer.token).order_by(WebhookAnswer.token))
        assert list(committed) == ["token-1", "token-2"]
    assert stuck.closed


@needs_postgresql
def test_a_kept_connection_is_replaced_when_it_is_as_old_as_the_pools_recycle_age(stores):
    store, _ = stores
    assert store.claim_webhook("token-1", "/voice") is None
    old = store._held.kept.kept
    old.recycle_at -= RECYCLE_SECONDS  # taken RECYCLE_SECONDS ago

    assert store.claim_webhook("token-2", "/voice") is None
    assert old.connection.closed and store._held.kept.kept is not old
    assert list(store._kept) == [store._held.kept.kept]


@needs_postgresql
def test_dispose_closes_the_connections_other_threads_keep(stores):
    """Closed, not given back to the pool: a statement still running on that thread must not
    share its connection with one that checks it out meanwhile."""
    from sqlalchemy import event

    store, _ = stores
    thread = ThreadPoolExecutor(1)
    assert thread.submit(store.claim_webhook, "token-1", "/voice").result() is None
    (kept,) = store._kept
    theirs = kept.connection.connection.driver_connection
    given_back = []
    event.listen(store._autocommit.pool, "checkin", lambda dbapi, _record: given_back.append(dbapi))
    store.dispose()
    assert kept.connection.closed and not store._kept
    assert theirs.closed and theirs not in given_back
    thread.shutdown()


@needs_postgresql
def test_a_thread_that_reacts_to_a_restart_never_gets_a_dead_pooled_connection(stores):
    """While the first webhook to find a restart is still failing, another thread drops its
    kept connection and takes a new one: from an emptied pool, not one of the dead idle ones."""
    import threading

    from sqlalchemy import event
    from sqlalchemy.exc import DBAPIError

    store, _ = stores
    first, second = on_own_threads(2)
    for n, thread in enumerate((first, second)):
        assert thread.submit(store.claim_webhook, f"before-{n}", "/voice").result() is None
    idle = [store._autocommit.connect() for _ in range(3)]
    for connection in idle:
        connection.exec_driver_sql("SELECT 1")
        connection.close()  # three live connections idle in the pool
    terminate_connections(store)
    failing, go_on = threading.Event(), threading.Event()

    def hold_the_first_failure(_context) -> None:  # runs after the store's own listener
        if not failing.is_set():
            failing.set()
            go_on.wait(10)

    event.listen(store._autocommit, "handle_error", hold_the_first_failure)
    failed = first.submit(store.claim_webhook, "after-0", "/voice")
    assert failing.wait(10)
    try:
        assert second.submit(store.claim_webhook, "after-1", "/voice").result() is None
    finally:
        go_on.set()
    with pytest.raises(DBAPIError):
        failed.result()
    assert first.submit(store.claim_webhook, "after-2", "/voice").result() is None
    for thread in (first, second):
        thread.shutdown()


@needs_postgresql
def test_a_kept_connection_ends_each_block_outside_any_transaction(stores):
    """A read through SQLAlchemy leaves no transaction of SQLAlchemy's behind; a block that
    leaves the database's transaction open (and a row locked) gives its connection up at once."""
    from sqlalchemy import text

    store, other = stores
    assert store.locked_until(BLATHERS) is None
    assert not store._held.kept.kept.connection.in_transaction()
    assert store.claim_webhook("token-1", "/voice") is None
    with store._writing_alone() as connection:
        driver = connection.connection.driver_connection
        driver.execute("BEGIN")
        driver.execute("SELECT token FROM webhook_answers WHERE token = 'token-1' FOR UPDATE")
    assert not store._kept  # given up: the pool rolled its transaction back
    with other.engine.begin() as connection:
        connection.execute(text("SET LOCAL lock_timeout = '2s'"))
        locked = text("SELECT token FROM webhook_answers WHERE token = 'token-1' FOR UPDATE")
        assert connection.execute(locked).scalar() == "token-1"


def test_prepared_statements_bind_what_sqlalchemy_would(stores):
    """`Prepared` builds each statement's values itself; they are the ones SQLAlchemy builds."""
    import gc

    from ivr.store.database import Prepared, _bind_values

    store, _ = stores
    prepared = [p for p in gc.get_objects() if isinstance(p, Prepared)]
    assert len(prepared) > 20
    checked = 0
    with store.engine.connect() as connection:
        for statement in prepared:
            plan = statement._plan(connection.dialect)
            if plan.binds is None:
                continue
            # Every key given, then none given: own values where the statement has them.
            given = {key: f"value of {key}" for _, key, _, _ in plan.binds}
            assert _bind_values(plan, given) == plan.compiled.construct_params(given)
            optional = {key: f"value of {key}" for _, key, required, _ in plan.binds if required}
            assert _bind_values(plan, optional) == plan.compiled.construct_params(optional)
            checked += 1
    assert checked > 20


def test_prepared_statements_return_their_rows_and_counts(stores):
    """`Prepared` knows from the statement whether it returns rows (the driver is not asked):
    a SELECT, an INSERT ... RETURNING and a CTE's final SELECT give rows, an UPDATE a count."""
    from sqlalchemy import insert, literal, update

    from ivr.store.database import Prepared

    store, _ = stores
    answers = WebhookAnswer
    add = Prepared(
        insert(answers)
        .values(token="t-1", path="/voice", answer=None, at=utcnow())
        .returning(answers.path)
    )
    settle = Prepared(update(answers).where(answers.token == "t-1").values(answer="<Response/>"))
    read = Prepared(select(answers.answer).where(answers.token == "t-1"))
    wrapped = select(literal("found").label("what")).cte("found")
    from_cte = Prepared(select(wrapped.c.what))
    with store.engine.begin() as connection:
        added = add.run(connection, {})
        settled = settle.run(connection, {})
        found = read.run(connection, {})
        from_a_cte = from_cte.run(connection, {})
    assert (added.rows, added.rowcount) == ([("/voice",)], 1)
    assert (settled.rows, settled.rowcount) == ([], 1)
    assert found.rows == [("<Response/>",)]
    assert from_a_cte.rows == [("found",)]


def test_prepared_statements_reuse_a_cursor_until_one_fails(stores):
    """Statements on one connection share its cursor; one that fails takes its cursor with it,
    and the next statement runs on a new one."""
    from sqlalchemy import bindparam, insert
    from sqlalchemy.exc import IntegrityError

    from ivr.store.database import _CURSOR, Prepared

    store, other = stores
    add = Prepared(
        insert(WebhookAnswer).values(
            token=bindparam("token"), path="/voice", answer=None, at=bindparam("at")
        )
    )

    def add_answer(token: str):
        with store._writing_alone() as connection:
            add.run(connection, {"token": token, "at": utcnow()})
            return connection.connection.info.get(_CURSOR)

    first = add_answer("token-1")
    assert add_answer("token-2") is first
    with pytest.raises(IntegrityError):
        add_answer("token-1")
    assert add_answer("token-3") is not first
    with other.engine.connect() as connection:
        kept = connection.scalars(select(WebhookAnswer.token).order_by(WebhookAnswer.token))
        assert list(kept) == ["token-1", "token-2", "token-3"]


def test_a_failed_write_leaves_nothing_open_for_the_next(stores):
    """SQLite's webhook writes share one kept connection: a write that fails part way rolls
    back all it did, and the next write, from any thread, starts clean and stands."""
    from sqlalchemy.exc import IntegrityError

    from ivr.store.models import CodeSend

    store, other = stores
    note = CallNote("CA" + "1" * 32, MABEL, "Mabel", "main")
    with pytest.raises(IntegrityError):
        # The send and its log row are written, then the code is refused (no hash).
        store.reserve_send(MABEL, 5, note, code=StoredCode(None, utcnow()))

    def sends() -> int:
        with other._session() as session:
            return session.scalar(select(func.count()).select_from(CodeSend))

    assert sends() == 0
    assert other.call_log() == []
    together([lambda: store.log_call(Outcome.WRONG_CODE, note)] * THREADS)
    assert store.reserve_send(MABEL, 5, note) is not None
    assert sends() == 1
    outcomes = sorted(entry.outcome for entry in other.call_log())
    assert outcomes == sorted([str(Outcome.WRONG_CODE)] * THREADS + [str(Outcome.CODE_SENT)])


def test_a_commit_that_fails_leaves_the_next_writers_free(stores):
    """A commit can fail where its statements did not (here a deferred foreign key; in
    production a full disk): the write is lost, and the next webhook writes, from this
    instance and the other, stand."""
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    store, other = stores
    with store.engine.begin() as connection:
        connection.execute(text("CREATE TABLE parents (id INTEGER PRIMARY KEY)"))
        connection.execute(
            text(
                "CREATE TABLE children (parent INTEGER REFERENCES parents (id) "
                "DEFERRABLE INITIALLY DEFERRED)"
            )
        )
    try:
        with pytest.raises(IntegrityError), store._writing() as connection:
            connection.execute(text("INSERT INTO children VALUES (42)"))  # refused at COMMIT

        note = CallNote("CA" + "1" * 32, MABEL, "Mabel", "main")
        store.log_call(Outcome.WRONG_CODE, note)
        other.log_call(Outcome.WRONG_CODE, note)
        assert store.reserve_send(MABEL, 5, note) is not None
        assert len(other.call_log()) == 3
        with other.engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM children")).scalar() == 0
    finally:
        with other.engine.begin() as connection:
            connection.execute(text("DROP TABLE children"))
            connection.execute(text("DROP TABLE parents"))


def test_dispose_lets_go_of_a_claim_this_thread_holds(stores):
    """Disposing a store (at shutdown, or a test's end) while this thread holds a webhook claim
    open neither hangs nor keeps the claim."""
    store, other = stores
    voice_claim(store, "token-1")
    store.dispose()
    # On SQLite the claim went with the transaction it was held in; PostgreSQL committed it.
    again = voice_claim(other, "token-1", hold=False)
    assert (again.seen is None) == (store.dialect == "sqlite")


@needs_postgresql
def test_one_trip_reuses_two_cursors_and_a_failed_step_undoes_them_all(stores):
    """`in_one_trip` returns the last step's rows; it keeps its two cursors on the connection
    from trip to trip, and a trip whose step fails - in the database, or on this side before
    it is sent - leaves nothing written, takes its cursors with it, and the next trip
    stands."""
    from sqlalchemy import bindparam, insert
    from sqlalchemy.exc import DataError, IntegrityError

    from ivr.store.database import _CURSOR, _PIPELINE_CURSOR, Prepared, in_one_trip

    store, other = stores
    add = Prepared(
        insert(WebhookAnswer)
        .values(token=bindparam("token"), path="/voice", answer=None, at=bindparam("at"))
        .returning(WebhookAnswer.token)
    )

    def trip(*tokens: str):
        steps = [(add, {"token": token, "at": utcnow()}) for token in tokens]
        with store._writing_alone() as connection:
            rows = in_one_trip(connection, steps)
            info = connection.connection.info
            return rows.rows, (info.get(_CURSOR), info.get(_PIPELINE_CURSOR))

    rows, cursors = trip("a-1", "a-2")
    assert rows == [("a-2",)]
    assert None not in cursors
    assert trip("b-1", "b-2") == ([("b-2",)], cursors)
    with pytest.raises(IntegrityError):
        trip("c-1", "a-1", "c-2")  # the second step's token is taken: c-1 goes too
    rows, after = trip("d-1")
    assert rows == [("d-1",)]
    assert set(after).isdisjoint(cursors)
    with pytest.raises(DataError):
        trip("e-1", "e\x00")  # a value the driver cannot send, after e-1 went out: e-1 goes too
    assert trip("f-1")[0] == [("f-1",)]
    with other.engine.connect() as connection:
        kept = connection.scalars(select(WebhookAnswer.token).order_by(WebhookAnswer.token))
        assert list(kept) == ["a-1", "a-2", "b-1", "b-2", "d-1", "f-1"]
