"""Failed attempts, lockouts, send caps and the built-in provider's pending codes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, case, delete, func, insert, select, update

from ivr.store.calls import CallNote
from ivr.store.database import Database
from ivr.store.models import (
    LINE,
    LOCKOUT_KINDS,
    Admin,
    CallLogEntry,
    CodeSend,
    Guard,
    NumberGuard,
    OneTimeCode,
    Outcome,
    Participant,
    SendStatus,
    utcnow,
)


@dataclass(frozen=True)
class Lockout:
    phone: str
    locked_until: datetime
    kind: str  # a key of LOCKOUT_KINDS
    names: list[str]


@dataclass(frozen=True)
class Failure:
    locked_until: datetime | None  # when the number's lockout ends, if it is locked now
    new_lockout: bool  # whether this failure is the one that locked it


class GuardStore(Database):
    """What keeps a number from guessing codes or pumping sends, shared by every instance."""

    def locked_until(self, phone: str, guard: Guard = NumberGuard) -> datetime | None:
        """Return when the number's lockout ends, or None if it is not locked now."""
        with self.engine.connect() as connection:
            until = connection.scalar(select(guard.locked_until).where(guard.phone == phone))
        return until if until is not None and until > utcnow() else None

    def record_failure(
        self, phone: str, max_attempts: int, lockout_seconds: int, guard: Guard = NumberGuard
    ) -> datetime | None:
        """Count a failed entry; at `max_attempts` lock the number and return when it ends."""
        return self.count_failure(phone, max_attempts, lockout_seconds, guard).locked_until

    def count_failure(
        self, phone: str, max_attempts: int, lockout_seconds: int, guard: Guard = NumberGuard
    ) -> Failure:
        """Count a failed entry as record_failure does; also say whether it started the lockout."""
        now = utcnow()
        until = now + timedelta(seconds=lockout_seconds)
        reaching = guard.failures + 1 >= max_attempts
        first_locks = max_attempts <= 1
        stmt = (
            self._insert(guard)
            .values(
                phone=phone,
                failures=0 if first_locks else 1,
                locked_until=until if first_locks else None,
            )
            .on_conflict_do_update(
                index_elements=[guard.phone],
                set_={
                    # A lockout starts a fresh count for when it ends.
                    "failures": case((reaching, 0), else_=guard.failures + 1),
                    "locked_until": case((reaching, until), else_=guard.locked_until),
                },
            )
            .returning(guard.locked_until, guard.failures)
        )
        with self._writing() as connection:
            locked_until, failures = connection.execute(stmt).one()
        if locked_until is None or locked_until <= now:
            return Failure(None, new_lockout=False)
        # Only the statement that locks sets the count to 0 with a lockout ahead; a failure
        # racing in on a number another request just locked counts 1 or more.
        return Failure(locked_until, new_lockout=failures == 0)

    def clear_failures(self, phone: str, guard: Guard = NumberGuard) -> None:
        with self._session.begin() as session:
            session.execute(update(guard).where(guard.phone == phone).values(failures=0))

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
        self, phone: str, per_hour: int, note: CallNote | None = None, *, purpose: str = LINE
    ) -> int | None:
        """Record a code send unless `per_hour` went out for `purpose` in the last hour.

        Return the send's id. With a `note`, the send belongs to that call and the call log
        says "code sent" in the same transaction. The number's guard row for the purpose (a key
        of LOCKOUT_KINDS) is locked first, so concurrent sends on any instance queue up behind
        each other and the cap cannot be overshot.
        """
        now = utcnow()
        guard = LOCKOUT_KINDS[purpose]
        lock_row = (
            self._insert(guard)
            .values(phone=phone, failures=0)
            .on_conflict_do_update(
                index_elements=[guard.phone],
                set_={"failures": guard.failures},
            )
        )
        this_purpose = and_(CodeSend.phone == phone, CodeSend.purpose == purpose)
        with self._writing() as connection:
            connection.execute(lock_row)
            connection.execute(
                delete(CodeSend).where(this_purpose, CodeSend.sent_at <= now - timedelta(hours=1))
            )
            sent = connection.scalar(select(func.count()).select_from(CodeSend).where(this_purpose))
            if sent >= per_hour:
                return None
            send_id = connection.execute(
                insert(CodeSend)
                .values(
                    phone=phone,
                    sent_at=now,
                    call_sid=note.call_sid if note else None,
                    status=SendStatus.STARTED,
                    purpose=purpose,
                )
                .returning(CodeSend.id)
            ).scalar_one()
            if note is not None:
                connection.execute(insert(CallLogEntry).values(note.row(Outcome.CODE_SENT)))
            return send_id

    def send_failed(
        self, send_id: int, status: SendStatus, outcome: Outcome, note: CallNote
    ) -> None:
        """Record that a send did not go out: its status, and the call's "code sent" row."""
        with self._writing() as connection:
            connection.execute(update(CodeSend).where(CodeSend.id == send_id).values(status=status))
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

    def send_status(self, call_sid: str) -> SendStatus | None:
        """Return how the call's latest code send went, if it had one."""
        with self.engine.connect() as connection:
            status = connection.scalar(
                select(CodeSend.status)
                .where(CodeSend.call_sid == call_sid)
                .order_by(CodeSend.id.desc())
                .limit(1)
            )
        return SendStatus(status) if status else None

    def put_code(
        self, phone: str, code_hash: str, expires_at: datetime, purpose: str = LINE
    ) -> None:
        """Store a number's code hash for `purpose`, replacing its earlier code for it."""
        stmt = (
            self._insert(OneTimeCode)
            .values(phone=phone, purpose=purpose, code_hash=code_hash, expires_at=expires_at)
            .on_conflict_do_update(
                index_elements=[OneTimeCode.phone, OneTimeCode.purpose],
                set_={"code_hash": code_hash, "expires_at": expires_at},
            )
        )
        with self._writing() as connection:
            connection.execute(stmt)

    def pending_code(self, phone: str, purpose: str = LINE) -> tuple[str, datetime] | None:
        """Return the number's stored code hash and expiry for `purpose`, if any."""
        with self.engine.connect() as connection:
            row = connection.execute(
                select(OneTimeCode.code_hash, OneTimeCode.expires_at).where(
                    OneTimeCode.phone == phone, OneTimeCode.purpose == purpose
                )
            ).first()
        return (row[0], row[1]) if row else None

    def consume_code(self, phone: str, code_hash: str, purpose: str = LINE) -> bool:
        """Delete the number's code for `purpose` if it is still this one; one caller wins."""
        with self._writing() as connection:
            result = connection.execute(
                delete(OneTimeCode).where(
                    OneTimeCode.phone == phone,
                    OneTimeCode.purpose == purpose,
                    OneTimeCode.code_hash == code_hash,
                    OneTimeCode.expires_at > utcnow(),
                )
            )
            return result.rowcount == 1
