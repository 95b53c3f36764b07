"""Rooms and their participants, and who a caller is on the line they dialled."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import Integer, and_, bindparam, delete, func, literal, or_, select, true
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from ivr.store.database import Database, Prepared, anywhere, digits_only
from ivr.store.guards import LATEST_SEND, NEVER, claim_attempt_in, claim_attempt_statement
from ivr.store.live import labelled_in
from ivr.store.models import (
    DEFAULT_ROOM_NAME,
    CodeBy,
    ConferenceMember,
    NumberGuard,
    Participant,
    Role,
    Room,
    SendStatus,
    utcnow,
)
from ivr.store.webhooks import (
    ANSWER_OF,
    SeenBefore,
    claim,
    claim_statement,
    sweep_now_and_then,
)

log = logging.getLogger(__name__)

# What a room says about its meetings, apart from its name, line and music (see Room).
MEETING_SETTINGS = frozenset(
    {"time_zone", "opening_hours", "moderators_anytime", "announce_names", "language"}
)


class Conflict(ValueError):
    """A change would break a uniqueness rule; the message names what is taken."""


class NotEnrolled(ValueError):
    """A participant would get codes from an authenticator app they never set up."""


def _caller_at_line():
    """The query behind `caller_at_line`: bind parameters phone, line, call_sid, stuck_before."""
    phone = bindparam("phone")
    line = bindparam("line")
    room_id = (
        select(Room.id)
        .where(or_(Room.line_number == line, Room.line_number.is_(None)))
        .order_by(Room.line_number.is_(None), Room.id)
        .limit(1)
        .scalar_subquery()
    )
    return (
        select(
            Room.name,
            Room.hold_music_url,
            Participant.name,
            Participant.role,
            NumberGuard.locked_until,
            LATEST_SEND.scalar_subquery(),
            Participant.code_by,
            Participant.id,
            Participant.app_secret,
            Room.time_zone,
            Room.opening_hours,
            Room.moderators_anytime,
            Room.language,
        )
        .select_from(Room)
        .outerjoin(Participant, and_(Participant.room_id == Room.id, Participant.phone == phone))
        .outerjoin(NumberGuard, NumberGuard.phone == phone)
        .where(Room.id == room_id)
    )


_CALLER_AT_LINE = Prepared(_caller_at_line())
CALLER_COLUMNS = len(_CALLER_AT_LINE.statement.selected_columns)
# SQLite: `caller_at_line`, then the labels live in the room's conference as one JSON array -
# one statement and one value, where reading them apart took a statement more and a row each
# (two hundred in an all-hands).
_CALLER_WITH_LABELS = Prepared(
    _caller_at_line().add_columns(
        select(func.json_group_array(ConferenceMember.label))
        .where(labelled_in(Room.name))
        .scalar_subquery()
    )
)


def _claim_and_find(with_live_labels: bool, claiming_a_check: bool):
    """PostgreSQL: a webhook's claim and its caller look-up in one statement, one round trip.

    Returns one row: whether this request won the claim, the answer kept for the token if it
    was claimed before (as committed when the statement began), the code check claimed if
    asked (NULL if none was), then `caller_at_line`'s columns (all NULL when no room answers
    the line), then if asked the labels live in the room's conference (an array, NULL for
    none). Bind parameters: token, path, at, those of `caller_at_line`, and to claim a check
    max_attempts and now.

    The check is claimed only by the request that won the webhook claim, for a caller on the
    dialled line's list; its upsert locks the number's guard row and decides on its latest
    version, as `claim_attempt` alone does.
    """
    claimed = claim_statement(postgresql.insert).cte("claimed")
    won = select(func.count()).select_from(claimed).scalar_subquery()
    answered = ANSWER_OF.scalar_subquery()
    caller = _caller_at_line().cte("caller")
    attempt = literal(None, Integer())
    ctes = []
    if claiming_a_check:
        listed = and_(
            select(claimed.c.token).exists(),
            select(caller.c.id).where(caller.c.id.is_not(None)).exists(),
        )
        check = claim_attempt_statement(postgresql.insert, when=listed).cte("check")
        ctes.append(check)
        attempt = select(check.c.failures).scalar_subquery()
    columns = [won, answered, attempt, *caller.c]
    if with_live_labels:
        labels = select(func.array_agg(ConferenceMember.label)).where(labelled_in(caller.c.name))
        columns.append(labels.scalar_subquery())
    one_row = select(literal(1).label("one")).subquery("one_row")
    return select(*columns).select_from(one_row.outerjoin(caller, true())).add_cte(*ctes)


_CLAIM_AND_FIND = {
    (labels, check): Prepared(_claim_and_find(labels, check))
    for labels in (False, True)
    for check in (False, True)
}


@dataclass(frozen=True)
class Claimed:
    """A webhook claim: `seen` if it was claimed before (a retry), else the caller found."""

    seen: SeenBefore | None
    caller: CallerAtLine | None = None
    looked_up: bool = False  # False: the caller is still to be looked up
    # A code check claimed with the look-up (`CallerLookup.claiming_a_check`): which attempt
    # it is, or None if none was left (or the caller is not on the list).
    attempt: int | None = None
    attempt_claimed: bool = False  # False: the check is still to be claimed, if it is one


@dataclass(frozen=True)
class CallerLookup:
    """Whom `caller_at_line` looks for: a number, on a dialled line, on a call."""

    phone: str
    line: str | None
    call_sid: str | None = None
    # A send still unfinished at this time reads as STUCK.
    stuck_before: datetime | None = None
    # Also read the labels live in the room's conference (/gather: for the caller's own label).
    with_live_labels: bool = False
    # Also claim a code check for a caller on the list, allowing this many in a window
    # (/gather with digits: see `GuardStore.claim_attempt`); None claims nothing.
    claiming_a_check: int | None = None


@dataclass(frozen=True)
class CallerAtLine:
    """Who a caller is on the dialled line: the room, and their entry in it if any."""

    room: str
    hold_music_url: str | None
    name: str | None
    role: Role | None
    locked_until: datetime | None
    send_status: SendStatus | None = None
    code_by: CodeBy = CodeBy.SMS
    participant_id: int | None = None
    app_secret: str | None = None  # encrypted (ivr.authenticator); only with code_by "app"
    # The room's meeting settings (see Room).
    time_zone: str | None = None
    opening_hours: str | None = None
    moderators_anytime: bool = True
    language: str = "en-US"
    # The participant labels in the room's conference, if the look-up was asked for them.
    live_labels: frozenset[str] | None = None


@dataclass(frozen=True)
class ParticipantRow:
    phone: str
    name: str
    role: Role
    room: str = DEFAULT_ROOM_NAME
    # How they get codes. None on a row to store: keep what is stored (sms for someone new).
    code_by: CodeBy | None = None


class RoomStore(Database):
    """Rooms, participants, and the caller lookup every webhook starts with."""

    def is_empty(self) -> bool:
        with self._session() as session:
            return session.scalar(select(func.count()).select_from(Participant)) == 0

    def seed(self, rows: Iterable[ParticipantRow]) -> int:
        """Load `rows` if no participant exists yet; return how many were loaded."""
        rows = list(rows)
        if not rows or not self.is_empty():
            return 0
        return self.import_participants(rows)

    def ensure_default_room(self) -> None:
        """Create the default room, with no line number, when there are no rooms at all."""
        with self._session.begin() as session:
            if session.scalar(select(func.count()).select_from(Room)) == 0:
                self._room(session, DEFAULT_ROOM_NAME)

    def rooms(self) -> list[Room]:
        with self._session() as session:
            return list(session.scalars(select(Room).order_by(Room.name)))

    def room_sizes(self) -> dict[str, int]:
        """Return how many participants each room has, by room name."""
        stmt = (
            select(Room.name, func.count(Participant.id)).outerjoin(Participant).group_by(Room.name)
        )
        with self._session() as session:
            return {name: count for name, count in session.execute(stmt)}

    def room(self, room_id: int) -> Room | None:
        with self._session() as session:
            return session.get(Room, room_id)

    def create_room(self, name: str, line_number: str | None, hold_music_url: str | None) -> Room:
        """Add a room; raise Conflict if its name or line number is taken."""
        room = Room(name=name, line_number=line_number, hold_music_url=hold_music_url)
        with self._unique_room(name, line_number):
            with self._session.begin() as session:
                session.add(room)
        return room

    def update_room(
        self, room_id: int, name: str, line_number: str | None, hold_music_url: str | None
    ) -> bool:
        """Change a room; return False if it is gone, raise Conflict if a value is taken."""
        with self._unique_room(name, line_number, room_id):
            with self._session.begin() as session:
                room = session.get(Room, room_id)
                if room is None:
                    return False
                room.name, room.line_number = name, line_number
                room.hold_music_url = hold_music_url
        return True

    def room_named(self, name: str) -> Room | None:
        with self._session() as session:
            return session.scalar(select(Room).where(Room.name == name))

    def update_meeting(self, room_id: int, **values) -> bool:
        """Change a room's meeting settings (MEETING_SETTINGS); return False if it is gone.

        Values are stored as given: callers check them first (ivr.hours for hours and zones).
        """
        unknown = set(values) - MEETING_SETTINGS
        if unknown:
            raise TypeError(f"not a meeting setting: {', '.join(sorted(unknown))}")
        with self._session.begin() as session:
            room = session.get(Room, room_id)
            if room is None:
                return False
            for key, value in values.items():
                setattr(room, key, value)
        return True

    def delete_room(self, room_id: int) -> bool:
        """Delete a room and its participants; return whether it existed."""
        with self._session.begin() as session:
            return session.execute(delete(Room).where(Room.id == room_id)).rowcount > 0

    def add_participant(self, row: ParticipantRow) -> None:
        """Add a participant to a room, or update their name and role if already there."""
        self.import_participants([row])

    def import_participants(self, rows: Iterable[ParticipantRow]) -> int:
        """Add or update every row in one transaction: all of them, or none.

        Raise NotEnrolled if a row asks for "app" for someone with no authenticator app.
        """
        count = 0
        with self._session.begin() as session:
            rooms: dict[str, Room] = {}
            for row in rows:
                room = rooms.get(row.room) or self._room(session, row.room)
                rooms[row.room] = room
                existing = session.scalar(
                    select(Participant).where(
                        Participant.room_id == room.id, Participant.phone == row.phone
                    )
                )
                if existing is None:
                    existing = Participant(
                        room_id=room.id, phone=row.phone, name=row.name, role=row.role
                    )
                    session.add(existing)
                else:
                    existing.name, existing.role = row.name, row.role
                _set_code_by(existing, row.code_by)
                session.flush()
                count += 1
        return count

    def participants(
        self, room: str | None = None, search: str | None = None
    ) -> list[ParticipantRow]:
        """List participants, of one room if given, whose name or number contains `search`."""
        stmt = select(
            Participant.phone, Participant.name, Participant.role, Room.name, Participant.code_by
        ).join(Room)
        if room is not None:
            stmt = stmt.where(Room.name == room)
        if search:
            matches = [func.lower(Participant.name).like(anywhere(search.lower()), escape="\\")]
            digits = digits_only(search)
            if digits:
                matches.append(Participant.phone.like(anywhere(digits), escape="\\"))
            stmt = stmt.where(or_(*matches))
        stmt = stmt.order_by(Room.name, Participant.role, Participant.name, Participant.phone)
        with self._session() as session:
            return [
                ParticipantRow(p, n, Role(r), rm, CodeBy(c))
                for p, n, r, rm, c in session.execute(stmt)
            ]

    def update_participant(self, old_phone: str, row: ParticipantRow) -> bool:
        """Replace `old_phone`'s entry in `row.room` with `row`; return False if it is gone.

        Raise Conflict if the new number is already listed in the room, NotEnrolled if the row
        asks for "app" for someone with no authenticator app.
        """
        try:
            with self._session.begin() as session:
                entry = session.scalar(
                    select(Participant)
                    .join(Room)
                    .where(Room.name == row.room, Participant.phone == old_phone)
                )
                if entry is None:
                    return False
                entry.phone, entry.name, entry.role = row.phone, row.name, row.role
                _set_code_by(entry, row.code_by)
        except IntegrityError:
            raise Conflict(f"{row.phone} is already in room {row.room}") from None
        return True

    def remove_participant(self, phone: str, room: str | None = None) -> int:
        """Remove a number from one room, or from every room; return how many rows went."""
        stmt = delete(Participant).where(Participant.phone == phone)
        if room is not None:
            stmt = stmt.where(Participant.room_id.in_(select(Room.id).where(Room.name == room)))
        with self._session.begin() as session:
            return session.execute(stmt).rowcount

    def unreachable_rooms(self) -> list[str]:
        """Return rooms no call can reach: without a line number, and not the fallback room."""
        with self.engine.connect() as connection:
            lineless = list(
                connection.scalars(
                    select(Room.name).where(Room.line_number.is_(None)).order_by(Room.id)
                )
            )
        # Calls to a number no room claims go to the first room without a line number.
        return lineless[1:]

    def caller_at_line(
        self,
        phone: str,
        line: str | None,
        call_sid: str | None = None,
        stuck_before: datetime | None = None,
    ) -> CallerAtLine | None:
        """Find the dialled line's room, the caller in it, their guard and this call's code send.

        One query. The room is the one whose line number was dialled, else the room without a
        line number. Returns None when there is no such room. A send still unfinished at
        `stuck_before` reads as STUCK.
        """
        with self._reading() as connection:
            return _find_caller(connection, CallerLookup(phone, line, call_sid, stuck_before))

    def claim_webhook_finding(
        self, token: str, path: str, lookup: CallerLookup, hold: bool = False
    ) -> Claimed:
        """Claim a webhook's idempotency token and find its caller, on one connection.

        What /voice and /gather need before they act, in one trip to the database: one
        transaction on SQLite, one statement on PostgreSQL (`_claim_and_find`). With
        `lookup.with_live_labels` the labels in the caller's conference come too, and with
        `lookup.claiming_a_check` a code check is claimed for a caller on the list (one whose
        entry was found; settle it as `claim_attempt` says). A retry acts on nothing, so for
        one (SeenBefore) no caller is looked up and no check claimed.

        With `hold`, SQLite's transaction stays open for this thread's next write to join and
        commit (see `_held_open`; `commit_held` if it may not come): /voice's next write comes
        before it waits on anything. A retry holds nothing.
        """
        if self.dialect == "postgresql":
            return self._claim_and_find(token, path, lookup)
        with self._held_open(hold) as connection:
            claimed = _claim_then_find(connection, token, path, lookup)
        if claimed.seen is not None:
            self.commit_held()  # a retry acts on nothing: no write of its own to wait for
        return claimed

    def _claim_and_find(self, token: str, path: str, lookup: CallerLookup) -> Claimed:
        """`claim_webhook_finding` on PostgreSQL: one statement, so claim and look-up stand or
        fail together (a failure claims nothing, and the caller hears an apology)."""
        now = utcnow()
        with self._writing_alone() as connection:
            sweep_now_and_then(connection, now)
            claiming = lookup.claiming_a_check is not None
            statement = _CLAIM_AND_FIND[lookup.with_live_labels, claiming]
            values = {"token": token, "path": path, "at": now, **_lookup_values(lookup)}
            if claiming:
                values.update(max_attempts=lookup.claiming_a_check, now=now)
            row = statement.run(connection, values).first()
        won, answer, attempt = row[0], row[1], row[2]
        columns = row[3 : 3 + CALLER_COLUMNS]
        if not won:
            return Claimed(SeenBefore(answer))
        if columns[0] is None:
            return Claimed(None, None, True, None, attempt_claimed=claiming)
        try:
            caller = _caller_from(columns)
        except ValueError:
            # A row the line cannot read: the view looks again, and fails; it never gets to
            # settle the check claimed here, so give it back now.
            if attempt is not None:
                self.give_back_attempt(lookup.phone)
            raise
        if lookup.with_live_labels:
            caller = replace(caller, live_labels=frozenset(row[-1] or ()))
        return Claimed(None, caller, True, attempt, attempt_claimed=claiming)

    @contextmanager
    def _unique_room(self, name: str, line_number: str | None, room_id: int | None = None):
        """Turn a taken room name or line number into Conflict, naming which one."""
        try:
            yield
        except IntegrityError:
            with self._session() as session:
                others = select(Room).where(Room.id != room_id) if room_id else select(Room)
                if session.scalar(others.where(Room.name == name)) is not None:
                    raise Conflict(f"a room named {name!r} already exists") from None
                if line_number and session.scalar(others.where(Room.line_number == line_number)):
                    raise Conflict(f"{line_number} is already the line of another room") from None
            raise

    @staticmethod
    def _room(session, name: str) -> Room:
        room = session.scalar(select(Room).where(Room.name == name))
        if room is None:
            room = Room(name=name)
            session.add(room)
            session.flush()
        return room


def _claim_then_find(connection, token: str, path: str, lookup: CallerLookup) -> Claimed:
    """`claim_webhook_finding` on SQLite, inside the caller's transaction."""
    seen = claim(connection, token, path)
    if seen is not None:
        return Claimed(seen)
    try:
        caller = _find_caller(connection, lookup)
        if lookup.claiming_a_check is None:
            return Claimed(None, caller, looked_up=True)
        attempt = None
        if caller is not None and caller.participant_id is not None:
            attempt = claim_attempt_in(connection, lookup.phone, lookup.claiming_a_check)
        return Claimed(None, caller, True, attempt, attempt_claimed=True)
    except SQLAlchemyError:
        # The claim stands: the view looks again, and what it answers (an apology if the
        # database is gone) is kept for Twilio's retries.
        log.warning("caller look-up with the webhook claim failed; the view looks again")
        return Claimed(None)


def _find_caller(connection, lookup: CallerLookup) -> CallerAtLine | None:
    """Run the `caller_at_line` query on `connection`, with the room's live labels if the
    look-up asks for them (SQLite; PostgreSQL reads them in `_claim_and_find`)."""
    if not lookup.with_live_labels:
        row = _CALLER_AT_LINE.run(connection, _lookup_values(lookup)).first()
        return None if row is None else _caller_from(row)
    row = _CALLER_WITH_LABELS.run(connection, _lookup_values(lookup)).first()
    if row is None:
        return None
    caller = _caller_from(row[:CALLER_COLUMNS])
    return replace(caller, live_labels=frozenset(json.loads(row[CALLER_COLUMNS])))


def _lookup_values(lookup: CallerLookup) -> dict:
    return {
        "phone": lookup.phone,
        "line": lookup.line,
        "call_sid": lookup.call_sid,
        "stuck_before": lookup.stuck_before or NEVER,
    }


def _caller_from(row) -> CallerAtLine:
    """Return the caller described by a row of the `caller_at_line` query."""
    (room, music, name, role, locked_until, status, code_by, participant_id, secret) = row[:9]
    return CallerAtLine(
        room,
        music,
        name,
        Role(role) if role else None,
        locked_until,
        SendStatus(status) if status else None,
        CodeBy(code_by) if code_by else CodeBy.SMS,
        participant_id,
        secret,
        *row[9:],
    )


def _set_code_by(entry: Participant, code_by: CodeBy | None) -> None:
    """Give `entry` the method `code_by` asks for; leaving the app deletes its secret.

    "app" is only ever kept, never granted: an app is set up by the participant's enrolment.
    """
    if code_by is None or code_by == entry.code_by:
        return
    if code_by == CodeBy.APP:
        raise NotEnrolled(
            f"{entry.phone} has no authenticator app: send them an invitation to enrol instead"
        )
    entry.code_by = code_by
    entry.app_secret = entry.app_last_step = None
