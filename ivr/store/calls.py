"""The call log: what happened on each call, newest first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, func, select
from sqlalchemy.orm import aliased

from ivr.store.database import Database, Paged, Prepared, anywhere, digits_only
from ivr.store.guards import LOG_CALL, LOG_CALL_STATEMENT, settle_success, success_statement
from ivr.store.models import CallLogEntry, CallNote, CodeSend, Outcome
from ivr.store.webhooks import KeptAnswer, keep, keep_statement

# Outcomes after which a call is still waiting for the caller's digits.
_AT_THE_PROMPT = {Outcome.CODE_SENT, Outcome.WRONG_CODE}
# What Twilio's conference events add to a call; the call's own outcome is the last row before.
CONFERENCE_EVENTS = {
    Outcome.CONFERENCE_START,
    Outcome.CONFERENCE_END,
    Outcome.CONFERENCE_JOIN,
    Outcome.CONFERENCE_LEAVE,
}
JOINED = {Outcome.JOINED_MODERATOR, Outcome.JOINED_PARTICIPANT}
# How a call can end, for filtering calls by outcome.
CALL_OUTCOMES = [outcome for outcome in Outcome if outcome not in CONFERENCE_EVENTS]
# PostgreSQL: `record_join`'s three writes in one statement (data-modifying CTEs), one round
# trip instead of five (BEGIN, three statements, COMMIT). A NULL phone or token matches no row.
_JOIN_IN_ONE = Prepared(
    keep_statement().add_cte(success_statement().cte("settled"), LOG_CALL_STATEMENT.cte("logged"))
)


@dataclass(frozen=True)
class CallSummary:
    """One call, from its call log rows: who, where, when, and how it ended."""

    call_sid: str
    started: datetime  # the first row: /voice answering
    phone: str | None
    name: str | None
    room: str | None
    outcome: str  # the last outcome the line decided (conference events aside)
    answer_to_join: timedelta | None  # from answering to being let in
    in_conference: timedelta | None  # from entering the conference to leaving it, when known
    events: int


@dataclass(frozen=True)
class CallsPage(Paged):
    calls: list[CallSummary]
    total: int
    page: int
    per_page: int


class CallLogStore(Database):
    """The call log."""

    def log_call(self, outcome: Outcome, note: CallNote) -> None:
        with self._writing_alone() as connection:
            LOG_CALL.run(connection, note.row(outcome))

    def record_join(
        self, outcome: Outcome, note: CallNote, answer: KeptAnswer | None = None
    ) -> None:
        """Log a caller let in by a claimed check, settle the claim as a success, keep `answer`."""
        if self.dialect == "postgresql":
            join = {
                **note.row(outcome),
                "the_phone": note.phone,
                "the_token": answer.token if answer else None,
                "answer": answer.answer if answer else None,
            }
            with self._writing_alone() as connection:
                _JOIN_IN_ONE.run(connection, join)
            return
        with self._writing() as connection:
            if note.phone:
                settle_success(connection, note.phone)
            LOG_CALL.run(connection, note.row(outcome))
            keep(connection, answer)

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

    def calls_page(
        self,
        *,
        room: str | None = None,
        phone: str | None = None,
        outcome: str | None = None,
        call_sid: str | None = None,
        page: int = 1,
        per_page: int | None = 50,
    ) -> CallsPage:
        """Return one page of calls, newest first: one summary per call SID in the call log.

        Filters apply to each call's final row: its room, its number (any part of the digits,
        so "555 9876" finds +18005559876) and its outcome. `per_page` None returns every
        matching call.
        """
        log = CallLogEntry
        calls = (
            select(
                log.call_sid,
                func.min(log.at).label("started"),
                _first_time_of(JOINED).label("joined"),
                _first_time_of([Outcome.CONFERENCE_JOIN]).label("entered"),
                func.max(case((log.outcome == Outcome.CONFERENCE_LEAVE, log.at))).label("left"),
                func.coalesce(
                    func.max(case((log.outcome.not_in(CONFERENCE_EVENTS), log.id))),
                    func.max(log.id),
                ).label("final_id"),
                func.count().label("events"),
            )
            .where(log.call_sid == call_sid if call_sid else log.call_sid.is_not(None))
            .group_by(log.call_sid)
            .subquery()
        )
        final = aliased(CallLogEntry)
        conditions = _matching(final, room, phone, outcome)
        joined = (
            select(calls, final.phone, final.name, final.room, final.outcome)
            .join(final, final.id == calls.c.final_id)
            .where(*conditions)
        )
        page = max(1, page)
        stmt = joined.order_by(calls.c.started.desc(), calls.c.final_id.desc())
        if per_page is not None:
            stmt = stmt.offset((page - 1) * per_page).limit(per_page)
        with self.engine.connect() as connection:
            total = connection.scalar(select(func.count()).select_from(joined.subquery()))
            rows = connection.execute(stmt).all()
        summaries = [
            CallSummary(
                call_sid=row.call_sid,
                started=row.started,
                phone=row.phone,
                name=row.name,
                room=row.room,
                outcome=row.outcome,
                answer_to_join=row.joined - row.started if row.joined else None,
                # Twilio's leave can reach us before its join: then the time is not known.
                in_conference=(
                    row.left - row.entered
                    if row.left and row.entered and row.left >= row.entered
                    else None
                ),
                events=row.events,
            )
            for row in rows
        ]
        return CallsPage(summaries, total, page, per_page or max(1, total))

    def call_events(self, call_sid: str) -> list[CallLogEntry]:
        """Return a call's rows in the order they happened."""
        stmt = (
            select(CallLogEntry).where(CallLogEntry.call_sid == call_sid).order_by(CallLogEntry.id)
        )
        with self._session() as session:
            return list(session.scalars(stmt))

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


def _first_time_of(outcomes):
    """The time of a call's first row with one of `outcomes` (NULL if none), in a GROUP BY."""
    return func.min(case((CallLogEntry.outcome.in_(list(outcomes)), CallLogEntry.at)))


def _matching(rows, room: str | None, phone: str | None, outcome: str | None) -> list:
    """Conditions on call log `rows`: exact room and outcome, any part of the number's digits."""
    conditions = []
    if room:
        conditions.append(rows.room == room)
    if outcome:
        conditions.append(rows.outcome == outcome)
    if phone:
        # Withheld callers are logged as typed ("anonymous"); numbers match by digits.
        needle = digits_only(phone) or phone.strip().lower()
        conditions.append(func.lower(rows.phone).like(anywhere(needle), escape="\\"))
    return conditions
