"""The call log: what happened on each call, newest first."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, insert, select

from ivr.store.database import Database, anywhere, digits_only
from ivr.store.guards import success_update
from ivr.store.models import CallLogEntry, CallNote, CodeSend, NumberGuard, Outcome

# Outcomes after which a call is still waiting for the caller's digits.
_AT_THE_PROMPT = {Outcome.CODE_SENT, Outcome.WRONG_CODE}


@dataclass(frozen=True)
class CallLogPage:
    entries: list[CallLogEntry]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


class CallLogStore(Database):
    """The call log."""

    def log_call(self, outcome: Outcome, note: CallNote) -> None:
        with self._writing() as connection:
            connection.execute(insert(CallLogEntry).values(note.row(outcome)))

    def record_join(self, outcome: Outcome, note: CallNote) -> None:
        """Log a caller let in by a claimed check, and settle the claim as a success."""
        with self._writing() as connection:
            if note.phone:
                connection.execute(success_update(NumberGuard, note.phone))
            connection.execute(insert(CallLogEntry).values(note.row(outcome)))

    def log_hang_up(self, call_sid: str, phone: str | None) -> CallNote | None:
        """Log "hung up" for a call that ended at the code prompt; return the row's note if so.

        A call that was sent a code and has no outcome after it but wrong codes hung up while
        the line waited for digits; every other call already has its ending in the log.
        """
        with self._session.begin() as session:
            reached_prompt = session.scalar(
                select(func.count()).select_from(CodeSend).where(CodeSend.call_sid == call_sid)
            )
            entries = list(
                session.scalars(
                    select(CallLogEntry)
                    .where(CallLogEntry.call_sid == call_sid)
                    .order_by(CallLogEntry.id)
                )
            )
            if not reached_prompt or any(e.outcome not in _AT_THE_PROMPT for e in entries):
                return None
            last = entries[-1] if entries else None
            note = CallNote(
                call_sid, phone, last.name if last else None, last.room if last else None
            )
            session.add(CallLogEntry(**note.row(Outcome.HUNG_UP)))
            return note

    def call_log(self, limit: int = 100) -> list[CallLogEntry]:
        with self._session() as session:
            return list(
                session.scalars(select(CallLogEntry).order_by(CallLogEntry.id.desc()).limit(limit))
            )

    def call_log_page(
        self,
        *,
        room: str | None = None,
        phone: str | None = None,
        outcome: str | None = None,
        page: int = 1,
        per_page: int = 50,
    ) -> CallLogPage:
        """Return one page of the call log, newest first, filtered by exact room and outcome.

        `phone` matches any part of the number's digits, so "555 9876" finds +18005559876.
        """
        conditions = []
        if room:
            conditions.append(CallLogEntry.room == room)
        if outcome:
            conditions.append(CallLogEntry.outcome == outcome)
        if phone:
            # Withheld callers are logged as typed ("anonymous"); numbers match by digits.
            needle = digits_only(phone) or phone.strip().lower()
            conditions.append(func.lower(CallLogEntry.phone).like(anywhere(needle), escape="\\"))
        page = max(1, page)
        with self._session() as session:
            total = session.scalar(
                select(func.count()).select_from(CallLogEntry).where(*conditions)
            )
            entries = list(
                session.scalars(
                    select(CallLogEntry)
                    .where(*conditions)
                    .order_by(CallLogEntry.id.desc())
                    .offset((page - 1) * per_page)
                    .limit(per_page)
                )
            )
        return CallLogPage(entries, total, page, per_page)

    def logged_rooms(self) -> list[str]:
        """Return every room name the call log mentions, for filtering."""
        stmt = (
            select(CallLogEntry.room)
            .where(CallLogEntry.room.is_not(None))
            .distinct()
            .order_by(CallLogEntry.room)
        )
        with self._session() as session:
            return list(session.scalars(stmt))
