"""Failed attempts, lockouts, send caps and the built-in provider's pending codes."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import (
    DateTime,
    Integer,
    Select,
    String,
    and_,
    any_,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql

from ivr.store.database import Database, Prepared, in_one_trip
from ivr.store.models import (
    LINE,
    LOCKOUT_KINDS,
    Admin,
    CallLogEntry,
    CallNote,
    CodeSend,
    Guard,
    NumberGuard,
    OneTimeCode,
    Outcome,
    Participant,
    SendStatus,
    utcnow,
)
from ivr.store.webhooks import KeptAnswer, keep, keep_statement

HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class Lockout:
    phone: str
    locked_until: datetime
    kind: str  # a key of LOCKOUT_KINDS
    names: list[str]


@dataclass(frozen=True)
class StoredCode:
    """The built-in provider's code as stored: its keyed hash, and when it expires."""

    code_hash: str
    expires_at: datetime


# A time before any send: with it, no send reads as stuck.
NEVER = datetime(1970, 1, 1)


def claim_attempt_statement(insert, guard: Guard = NumberGuard, when=None):
    """The upsert behind `claim_attempt` (bind parameters phone, max_attempts, now), returning
    which attempt this is, or no row if none is left; `insert` is the dialect's (ON CONFLICT).

    With `when` (a SELECT's WHERE clause), it claims only if that holds: PostgreSQL's webhook
    claim uses it to claim a check with the caller's look-up, for a caller on the list.
    """
    table = guard.__table__
    if when is None:
        statement = insert(table).values(
            phone=bindparam("phone"), failures=1, checking=1, locked_until=None
        )
    else:
        row = select(
            bindparam("phone", type_=String()), literal(1), literal(1), literal(None, DateTime())
        ).where(when)
        statement = insert(table).from_select(
            ["phone", "failures", "checking", "locked_until"], row
        )
    return statement.on_conflict_do_update(
        index_elements=[table.c.phone],
        set_={"failures": table.c.failures + 1, "checking": table.c.checking + 1},
        where=and_(
            table.c.failures < bindparam("max_attempts"),
            or_(table.c.locked_until.is_(None), table.c.locked_until <= bindparam("now")),
        ),
    ).returning(table.c.failures)


def _claim_attempt(guard: Guard):
    """The statement behind `claim_attempt`, built once per dialect and guard."""
    return Prepared(lambda insert: claim_attempt_statement(insert, guard))


def _lock_row(guard: Guard):
    """An upsert that changes nothing but locks the number's guard row until commit."""
    table = guard.__table__
    return Prepared(
        lambda insert: (
            insert(table)
            .values(phone=bindparam("phone"), failures=0, checking=0, locked_until=None)
            .on_conflict_do_update(
                index_elements=[table.c.phone], set_={"failures": table.c.failures}
            )
        )
    )


def _guard_update(guard: Guard, **values) -> Prepared:
    return Prepared(_guard_update_statement(guard, **values))


def _guard_update_statement(guard: Guard, **values):
    table = guard.__table__
    return update(table).where(table.c.phone == bindparam("the_phone")).values(**values)


def _one_less(column):
    return case((column > 0, column - 1), else_=0)


def success_statement(guard: Guard = NumberGuard):
    """A success ends the window and clears the failures - unless other checks of the number are
    still in flight (a burst of guesses with the right code among them): then the count stays,
    so the burst still gets no more than its `max_attempts` checks. Bind parameter `the_phone`.
    """
    checking = guard.__table__.c.checking
    return _guard_update_statement(
        guard,
        failures=case((checking <= 1, 0), else_=guard.__table__.c.failures),
        checking=_one_less(checking),
    )


_GUARD_STATEMENTS = {
    guard: {
        "claim": _claim_attempt(guard),
        "lock_row": _lock_row(guard),
        "settled_failure": _guard_update(guard, checking=_one_less(guard.__table__.c.checking)),
        "lock": _guard_update(guard, failures=0, checking=0, locked_until=bindparam("until")),
        "success": Prepared(success_statement(guard)),
        "give_back": _guard_update(
            guard,
            failures=_one_less(guard.__table__.c.failures),
            checking=_one_less(guard.__table__.c.checking),
        ),
    }
    for guard in LOCKOUT_KINDS.values()
}

_sends = CodeSend.__table__
_call_log = CallLogEntry.__table__
_SENDS_OF = and_(_sends.c.phone == bindparam("phone"), _sends.c.purpose == bindparam("purpose"))
# Sends older than an hour no longer count; they are swept by about one reservation in this many.
SWEEP_SENDS_EVERY = 200
_FORGET_OLD_SENDS = Prepared(delete(_sends).where(_sends.c.sent_at <= bindparam("hour_ago")))


def _new_send_under_cap():
    """Insert a started send unless `per_hour` sends for the number and purpose are recent.

    Counting and inserting are one statement (returning the new id, or no row at the cap);
    the caller holds the number's guard row lock, so no other reservation counts in between.
    """
    recent = (
        select(func.count())
        .select_from(_sends)
        .where(_SENDS_OF, _sends.c.sent_at > bindparam("hour_ago"))
        .scalar_subquery()
    )
    values = select(
        bindparam("phone", type_=String()),
        bindparam("purpose", type_=String()),
        bindparam("call_sid", type_=String()),
        bindparam("now", type_=DateTime()),
        literal(SendStatus.STARTED.value, String()),
    ).where(recent < bindparam("per_hour"))
    return Prepared(
        insert(_sends)
        .from_select(["phone", "purpose", "call_sid", "sent_at", "status"], values)
        .returning(_sends.c.id)
    )


_NEW_SEND = _new_send_under_cap()


def _new_send_logged_and_kept(with_code: bool):
    """PostgreSQL: `_NEW_SEND`, its "code sent" call log row, the webhook's kept answer and
    `with_code` the built-in provider's code, in one statement (data-modifying CTEs): one
    round trip instead of four.

    The log row, the answer and the code are written only if the send was reserved (a row
    came back). Run after the number's row lock, in the same transaction, as `_NEW_SEND` is:
    the statement starts after the lock is held, so its count sees every send committed
    before it.
    """
    new_send = _NEW_SEND.statement.cte("new_send")
    logged = insert(_call_log).from_select(
        ["at", "call_sid", "phone", "name", "room", "outcome"],
        select(
            bindparam("now", type_=DateTime()),
            bindparam("call_sid", type_=String()),
            bindparam("log_phone", type_=String()),
            bindparam("log_name", type_=String()),
            bindparam("log_room", type_=String()),
            literal(str(Outcome.CODE_SENT), String()),
        ).select_from(new_send),
    )
    kept = keep_statement().where(select(new_send.c.id).exists())
    ctes = [logged.cte("logged"), kept.cte("kept")]
    if with_code:
        ctes.append(_put_code_statement(postgresql.insert, new_send).cte("code"))
    return Prepared(select(new_send.c.id).add_cte(*ctes))


_SEND_DONE = Prepared(
    update(_sends)
    .where(_sends.c.id == bindparam("send_id"), _sends.c.status == SendStatus.STARTED.value)
    .values(status=SendStatus.SENT.value)
)
# PostgreSQL: a group of sends in one statement, one round trip (bind parameter send_ids).
_SENDS_DONE = Prepared(
    update(_sends)
    .where(
        _sends.c.id == any_(bindparam("send_ids", type_=postgresql.ARRAY(Integer()))),
        _sends.c.status == SendStatus.STARTED.value,
    )
    .values(status=SendStatus.SENT.value)
)
# The built-in provider's codes: one per number and purpose, stored as a keyed hash.
_codes = OneTimeCode.__table__
_THIS_CODE = and_(_codes.c.phone == bindparam("phone"), _codes.c.purpose == bindparam("purpose"))


def _put_code_statement(insert, new_send=None):
    """The upsert that stores a number's code for a purpose, replacing its earlier one (bind
    parameters phone, purpose, code_hash, expires_at); with `new_send` (a CTE), only if it
    returned a row."""
    columns = {
        "phone": bindparam("phone", type_=String()),
        "purpose": bindparam("purpose", type_=String()),
        "code_hash": bindparam("code_hash", type_=String()),
        "expires_at": bindparam("expires_at", type_=DateTime()),
    }
    if new_send is None:
        statement = insert(_codes).values(columns)
    else:
        row = select(*columns.values()).where(select(new_send.c.id).exists())
        statement = insert(_codes).from_select(list(columns), row)
    return statement.on_conflict_do_update(
        index_elements=[_codes.c.phone, _codes.c.purpose],
        set_={"code_hash": bindparam("code_hash"), "expires_at": bindparam("expires_at")},
    )


_PUT_CODE = Prepared(_put_code_statement)
_NEW_SEND_LOGGED_AND_KEPT = {
    with_code: _new_send_logged_and_kept(with_code) for with_code in (False, True)
}
_PENDING_CODE = Prepared(select(_codes.c.code_hash, _codes.c.expires_at).where(_THIS_CODE))
_CONSUME_CODE = Prepared(
    delete(_codes).where(
        _THIS_CODE,
        _codes.c.code_hash == bindparam("code_hash"),
        _codes.c.expires_at > bindparam("now"),
    )
)
LOG_CALL_STATEMENT = insert(_call_log).values(
    {name: bindparam(name) for name in ("at", "call_sid", "phone", "name", "room", "outcome")}
)
LOG_CALL = Prepared(LOG_CALL_STATEMENT)


class GuardStore(Database):
    """What keeps a number from guessing codes or pumping sends, shared by every instance."""

    def locked_until(self, phone: str, guard: Guard = NumberGuard) -> datetime | None:
        """Return when the number's lockout ends, or None if it is not locked now."""
        with self._reading() as connection:
            until = connection.scalar(select(guard.locked_until).where(guard.phone == phone))
        return until if until is not None and until > utcnow() else None

    def claim_attempt(
        self, phone: str, max_attempts: int, guard: Guard = NumberGuard
    ) -> int | None:
        """Claim one code check for the number before it is made; return None if none is left.

        Returns which of the window's attempts this is (1 to `max_attempts`). One statement, so
        however many requests race on however many instances, at most `max_attempts` checks are
        claimed in a window, which a lockout or a success ends. Settle every claim with
        `fail_attempt`, `succeed_attempt` (or `record_join`) or `give_back_attempt`.
        """
        with self._writing_alone() as connection:
            return claim_attempt_in(connection, phone, max_attempts, guard)

    def fail_attempt(
        self,
        phone: str,
        attempt: int,
        max_attempts: int,
        lockout_seconds: int,
        guard: Guard = NumberGuard,
    ) -> datetime | None:
        """Settle a claimed check that failed; the last one locks the number. Return until when."""
        statements = _GUARD_STATEMENTS[guard]
        if attempt < max_attempts:
            # The claim already counts as a failure; it is no longer in flight.
            with self._writing_alone() as connection:
                statements["settled_failure"].run(connection, {"the_phone": phone})
            return None
        until = utcnow() + timedelta(seconds=lockout_seconds)
        with self._writing_alone() as connection:
            # A lockout ends the window: a fresh count for when it ends.
            statements["lock"].run(connection, {"the_phone": phone, "until": until})
        return until

    def succeed_attempt(self, phone: str, guard: Guard = NumberGuard) -> None:
        """Settle a claimed check that succeeded (see `_success`)."""
        with self._writing_alone() as connection:
            settle_success(connection, phone, guard)

    def give_back_attempt(self, phone: str, guard: Guard = NumberGuard) -> None:
        """Return a claimed attempt whose code was never checked (the provider failed)."""
        with self._writing_alone() as connection:
            _GUARD_STATEMENTS[guard]["give_back"].run(connection, {"the_phone": phone})

    def unlock(self, phone: str, guard: Guard = NumberGuard) -> bool:
        """End a number's lockout and forget its failures; return whether it was locked."""
        with self._session.begin() as session:
            result = session.execute(
                update(guard)
                .where(guard.phone == phone, guard.locked_until > utcnow())
                .values(failures=0, locked_until=None)
            )
            return result.rowcount > 0

    def lockouts(self) -> list[Lockout]:
        """Return the numbers locked now, from the line and the console, soonest ending first."""
        now = utcnow()
        found: dict[tuple[str, str], Lockout] = {}
        with self._session() as session:
            for kind, guard in LOCKOUT_KINDS.items():
                stmt = (
                    select(guard.phone, guard.locked_until, Participant.name, Admin.name)
                    .outerjoin(Participant, Participant.phone == guard.phone)
                    .outerjoin(Admin, Admin.phone == guard.phone)
                    .where(guard.locked_until > now)
                )
                for phone, until, participant_name, admin_name in session.execute(stmt):
                    lockout = found.setdefault((kind, phone), Lockout(phone, until, kind, []))
                    for name in (participant_name, admin_name):
                        if name and name not in lockout.names:
                            lockout.names.append(name)
        return sorted(found.values(), key=lambda lockout: (lockout.locked_until, lockout.phone))

    def reserve_send(
        self,
        phone: str,
        per_hour: int,
        note: CallNote | None = None,
        *,
        purpose: str = LINE,
        answer: KeptAnswer | None = None,
        code: StoredCode | None = None,
    ) -> int | None:
        """Record a code send unless `per_hour` went out for `purpose` in the last hour.

        Return the send's id. With a `note`, the send belongs to that call and the call log
        says "code sent" in the same transaction, and a webhook's `answer` is kept in it if the
        send is reserved; so is `code`, the built-in provider's code for the send (as
        `put_code` stores it). The number's guard row for the purpose (a key of LOCKOUT_KINDS) is
        locked first, so concurrent sends on any instance queue up behind each other and the cap
        cannot be overshot.
        """
        now = utcnow()
        lock_row = _GUARD_STATEMENTS[LOCKOUT_KINDS[purpose]]["lock_row"]
        send = {
            "phone": phone,
            "purpose": purpose,
            "call_sid": note.call_sid if note else None,
            "now": now,
            "hour_ago": now - HOUR,
            "per_hour": per_hour,
        }
        sweep = random.randrange(SWEEP_SENDS_EVERY) == 0
        if note is not None and self.dialect == "postgresql":
            logged_and_kept = {
                **send,
                "log_phone": note.phone,
                "log_name": note.name,
                "log_room": note.room,
                "the_token": answer.token if answer else None,
                "answer": answer.answer if answer else None,
            }
            if code is not None:
                logged_and_kept.update(code_hash=code.code_hash, expires_at=code.expires_at)
            steps = [(lock_row, {"phone": phone})]
            if sweep:
                steps.append((_FORGET_OLD_SENDS, {"hour_ago": now - HOUR}))
            steps.append((_NEW_SEND_LOGGED_AND_KEPT[code is not None], logged_and_kept))
            # The lock, the sweep and the send in one round trip instead of four or five.
            with self._writing_alone() as connection:
                return in_one_trip(connection, steps).scalar()
        # A webhook claim this thread holds open took SQLite's write lock with its first
        # statement (see `_held_open`): the count below already reads the latest rows.
        joining_a_claim = self.holds_a_claim()
        with self._writing() as connection:
            if not joining_a_claim:
                lock_row.run(connection, {"phone": phone})
            if sweep:
                _FORGET_OLD_SENDS.run(connection, {"hour_ago": now - HOUR})
            send_id = _NEW_SEND.run(connection, send).scalar()
            if send_id is None:
                return None
            if note is not None:
                LOG_CALL.run(connection, note.row(Outcome.CODE_SENT))
            keep(connection, answer)
            if code is not None:
                stored = {"code_hash": code.code_hash, "expires_at": code.expires_at}
                _PUT_CODE.run(connection, {"phone": phone, "purpose": purpose, **stored})
            return send_id

    def sends_done(self, send_ids: list[int]) -> None:
        """Record that the provider took these sends (what tells a slow send from a stuck one).

        One transaction on SQLite; one statement on PostgreSQL.
        """
        with self._writing_alone() as connection:
            if self.dialect == "postgresql":
                _SENDS_DONE.run(connection, {"send_ids": list(send_ids)})
                return
            for send_id in send_ids:
                _SEND_DONE.run(connection, {"send_id": send_id})

    def send_failed(
        self, send_id: int, status: SendStatus, outcome: Outcome, note: CallNote
    ) -> None:
        """Record that a send did not go out: its status, and the call's "code sent" row."""
        self._record_unsent(CodeSend.id == send_id, status, outcome, note)

    def send_stuck(self, note: CallNote) -> None:
        """Record that the call's send never finished: failed, and "provider error" in the log."""
        unfinished = and_(CodeSend.call_sid == note.call_sid, CodeSend.status == SendStatus.STARTED)
        self._record_unsent(unfinished, SendStatus.FAILED, Outcome.PROVIDER_ERROR, note)

    def _record_unsent(self, sends, status: SendStatus, outcome: Outcome, note: CallNote) -> None:
        with self._writing() as connection:
            connection.execute(update(CodeSend).where(sends).values(status=status))
            changed = connection.execute(
                update(CallLogEntry)
                .where(
                    CallLogEntry.call_sid == note.call_sid,
                    CallLogEntry.outcome == str(Outcome.CODE_SENT),
                )
                .values(outcome=str(outcome))
            ).rowcount
            if not changed:
                connection.execute(insert(CallLogEntry).values(note.row(outcome)))

    def send_status(self, call_sid: str, stuck_before: datetime | None = None) -> SendStatus | None:
        """Return how the call's latest code send went, if it had one (see `_latest_send`)."""
        stuck = {"call_sid": call_sid, "stuck_before": stuck_before or NEVER}
        with self._reading() as connection:
            status = _LATEST_SEND.run(connection, stuck).scalar()
        return SendStatus(status) if status else None

    def put_code(
        self, phone: str, code_hash: str, expires_at: datetime, purpose: str = LINE
    ) -> None:
        """Store a number's code hash for `purpose`, replacing its earlier code for it."""
        code = {
            "phone": phone,
            "purpose": purpose,
            "code_hash": code_hash,
            "expires_at": expires_at,
        }
        with self._writing_alone() as connection:
            _PUT_CODE.run(connection, code)

    def pending_code(self, phone: str, purpose: str = LINE) -> tuple[str, datetime] | None:
        """Return the number's stored code hash and expiry for `purpose`, if any."""
        with self._reading() as connection:
            row = _PENDING_CODE.run(connection, {"phone": phone, "purpose": purpose}).first()
        return (row[0], row[1]) if row else None

    def consume_code(self, phone: str, code_hash: str, purpose: str = LINE) -> bool:
        """Delete the number's code for `purpose` if it is this one, unexpired; one caller wins."""
        code = {"phone": phone, "purpose": purpose, "code_hash": code_hash, "now": utcnow()}
        with self._writing_alone() as connection:
            return _CONSUME_CODE.run(connection, code).rowcount == 1


def claim_attempt_in(
    connection, phone: str, max_attempts: int, guard: Guard = NumberGuard
) -> int | None:
    """`claim_attempt` inside the caller's transaction."""
    values = {"phone": phone, "max_attempts": max_attempts, "now": utcnow()}
    return _GUARD_STATEMENTS[guard]["claim"].run(connection, values).scalar()


def settle_success(connection, phone: str, guard: Guard = NumberGuard) -> None:
    """Settle a successful claimed check inside the caller's transaction (see `_success`)."""
    _GUARD_STATEMENTS[guard]["success"].run(connection, {"the_phone": phone})


def _latest_send() -> Select:
    """The status of the call's latest send (bind parameters `call_sid`, `stuck_before`).

    A send still STARTED at `stuck_before` reads as STUCK: its sender died or hangs, and the
    caller must not wait for a code that will never come.
    """
    stuck = and_(
        _sends.c.status == SendStatus.STARTED.value,
        _sends.c.sent_at <= bindparam("stuck_before"),
    )
    status = case((stuck, SendStatus.STUCK.value), else_=_sends.c.status)
    return (
        select(status)
        .where(_sends.c.call_sid == bindparam("call_sid"))
        .order_by(_sends.c.id.desc())
        .limit(1)
    )


LATEST_SEND = _latest_send()
_LATEST_SEND = Prepared(LATEST_SEND)
