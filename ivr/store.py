"""The database: models and every SQL statement the line issues.

Counters that several workers or instances share (failed attempts, lockouts, codes sent) are
changed by single atomic statements or under a row lock, never read-modify-written in Python.
Times are naive UTC.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    and_,
    case,
    create_engine,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, sessionmaker

DEFAULT_ROOM_NAME = "main"


class Conflict(ValueError):
    """A change would break a uniqueness rule; the message names what is taken."""


def utcnow() -> datetime:
    """Return the current time as naive UTC, the form every column stores."""
    return datetime.now(UTC).replace(tzinfo=None)


class Role(StrEnum):
    MODERATOR = "moderator"
    PARTICIPANT = "participant"


class Outcome(StrEnum):
    """What happened on a call, as the call log records it."""

    CODE_SENT = "code sent"
    JOINED_MODERATOR = "joined as moderator"
    JOINED_PARTICIPANT = "joined as participant"
    WRONG_CODE = "wrong code"
    EXPIRED_CODE = "expired code"
    LOCKED_OUT = "locked out"
    SEND_LIMIT = "send limit reached"
    UNKNOWN_NUMBER = "unknown number"
    WITHHELD_NUMBER = "withheld number"
    INVALID_NUMBER = "invalid number"
    PROVIDER_ERROR = "provider error"
    NO_INPUT = "no input"
    HUNG_UP = "hung up"
    APPLICATION_ERROR = "application error"
    CONFERENCE_START = "conference started"
    CONFERENCE_END = "conference ended"
    CONFERENCE_JOIN = "entered conference"
    CONFERENCE_LEAVE = "left conference"


class Base(DeclarativeBase):
    pass


class Room(Base):
    __tablename__ = "rooms"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    # The number callers dial for this room; the room without one takes every other line.
    line_number: Mapped[str | None] = mapped_column(String(20), unique=True)
    hold_music_url: Mapped[str | None] = mapped_column(String(500))

    participants: Mapped[list[Participant]] = relationship(
        back_populates="room", cascade="all, delete-orphan", passive_deletes=True
    )


class Participant(Base):
    __tablename__ = "participants"
    __table_args__ = (UniqueConstraint("room_id", "phone"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    room_id: Mapped[int] = mapped_column(ForeignKey("rooms.id", ondelete="CASCADE"), index=True)
    phone: Mapped[str] = mapped_column(String(20), index=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(20), default=Role.PARTICIPANT)

    room: Mapped[Room] = relationship(back_populates="participants")


class NumberGuard(Base):
    """Failed code entries and the lockout they earn, per caller number."""

    __tablename__ = "number_guards"

    phone: Mapped[str] = mapped_column(String(20), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime)


class SendStatus(StrEnum):
    STARTED = "started"  # handed to the provider; nothing more is written when it goes out
    FAILED = "failed"  # the provider was down, slow or refusing
    REFUSED = "refused"  # the provider will send no more codes to this number for now


class SignInGuard(Base):
    """Failed admin sign-in codes and their lockout, per number.

    Kept apart from NumberGuard so that someone guessing at the console cannot lock a
    participant out of the phone line.
    """

    __tablename__ = "sign_in_guards"

    phone: Mapped[str] = mapped_column(String(20), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime)


Guard = type[NumberGuard] | type[SignInGuard]
# What a lockout keeps a number from: calling the line, or signing in to the console. Codes and
# code sends are kept apart by the same names, as their purpose (ivr.verification.LINE, SIGN_IN).
LOCKOUT_KINDS: dict[str, Guard] = {"line": NumberGuard, "sign-in": SignInGuard}
# The purpose of codes and sends when none is given: the phone line's.
LINE = "line"


class CodeSend(Base):
    """One code sent to a number for a purpose; the last hour of these caps further sends.

    Codes are sent after /voice has answered, so the call's next webhook reads here whether
    its code went out. Each purpose has its own cap, so console sign-ins cannot use up a
    caller's codes.
    """

    __tablename__ = "code_sends"

    id: Mapped[int] = mapped_column(primary_key=True)
    phone: Mapped[str] = mapped_column(String(20), index=True)
    sent_at: Mapped[datetime] = mapped_column(DateTime)
    call_sid: Mapped[str | None] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), default=SendStatus.STARTED)
    purpose: Mapped[str] = mapped_column(String(16), default=LINE)


class OneTimeCode(Base):
    """The built-in provider's pending code for a number and purpose: a keyed hash only."""

    __tablename__ = "one_time_codes"

    phone: Mapped[str] = mapped_column(String(20), primary_key=True)
    # A number has one pending code per purpose: a console sign-in never replaces a caller's.
    purpose: Mapped[str] = mapped_column(String(16), primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(DateTime)


class CallLogEntry(Base):
    __tablename__ = "call_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, index=True)
    # Indexed: conference events find a call's caller by its SID.
    call_sid: Mapped[str | None] = mapped_column(String(64), index=True)
    phone: Mapped[str | None] = mapped_column(String(40), index=True)
    name: Mapped[str | None] = mapped_column(String(100))
    room: Mapped[str | None] = mapped_column(String(100))
    outcome: Mapped[str] = mapped_column(String(40))


# Outcomes after which a call is still waiting for the caller's digits.
_AT_THE_PROMPT = {Outcome.CODE_SENT, Outcome.WRONG_CODE}


@dataclass(frozen=True)
class CallNote:
    """Who and where a call log row is about."""

    call_sid: str | None = None
    phone: str | None = None
    name: str | None = None
    room: str | None = None

    def row(self, outcome: Outcome) -> dict:
        """Return the values of a call log row with this outcome, stamped now."""
        return {
            "at": utcnow(),
            "call_sid": self.call_sid,
            "phone": self.phone,
            "name": self.name,
            "room": self.room,
            "outcome": str(outcome),
        }


class Admin(Base):
    """Someone who may sign in to the admin console."""

    __tablename__ = "admins"

    id: Mapped[int] = mapped_column(primary_key=True)
    phone: Mapped[str] = mapped_column(String(20), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    # Sessions that began before this were ended by a sign-out, wherever their cookie went.
    signed_out_at: Mapped[datetime | None] = mapped_column(DateTime)


class ConferenceMember(Base):
    """A call in a conference right now, as Twilio's conference events tell it."""

    __tablename__ = "conference_members"

    call_sid: Mapped[str] = mapped_column(String(64), primary_key=True)
    conference_sid: Mapped[str] = mapped_column(String(64), index=True)
    room: Mapped[str] = mapped_column(String(100))
    label: Mapped[str | None] = mapped_column(String(100))
    phone: Mapped[str | None] = mapped_column(String(40))
    muted: Mapped[bool] = mapped_column(Boolean, default=False)
    joined_at: Mapped[datetime] = mapped_column(DateTime)
    # Kept after a leave until the conference ends: Twilio's events for one call can arrive out
    # of order on different workers, and a late join must not bring the caller back.
    left_at: Mapped[datetime | None] = mapped_column(DateTime)


@dataclass(frozen=True)
class CallLogPage:
    entries: list[CallLogEntry]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


@dataclass(frozen=True)
class Lockout:
    phone: str
    locked_until: datetime
    kind: str  # a key of LOCKOUT_KINDS
    names: list[str]


@dataclass(frozen=True)
class CallerAtLine:
    """Who a caller is on the dialled line: the room, and their entry in it if any."""

    room: str
    hold_music_url: str | None
    name: str | None
    role: Role | None
    locked_until: datetime | None
    failures: int = 0
    send_status: SendStatus | None = None


@dataclass(frozen=True)
class ParticipantRow:
    phone: str
    name: str
    role: Role
    room: str = DEFAULT_ROOM_NAME


class Store:
    """The line's database; each method is one transaction."""

    def __init__(self, url: str) -> None:
        self.engine = _make_engine(url)
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite lets one writer in at a time and makes the others back off in sleeps of up to
        # 100 ms; a lock queues this process's writers without them. PostgreSQL locks rows.
        self._write_lock = threading.Lock() if url.startswith("sqlite") else nullcontext()

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        """Open a write transaction on the webhook path."""
        with self._write_lock, self.engine.begin() as connection:
            yield connection

    def create_schema(self) -> None:
        """Create missing tables; existing tables and their rows are kept."""
        Base.metadata.create_all(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()

    def ping(self) -> None:
        """Run a trivial query; raise if the database cannot be reached."""
        with self.engine.connect() as connection:
            connection.execute(select(1))

    # -- rooms and participants -------------------------------------------------------------

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

    def delete_room(self, room_id: int) -> bool:
        """Delete a room and its participants; return whether it existed."""
        with self._session.begin() as session:
            return session.execute(delete(Room).where(Room.id == room_id)).rowcount > 0

    def add_participant(self, row: ParticipantRow) -> None:
        """Add a participant to a room, or update their name and role if already there."""
        self.import_participants([row])

    def import_participants(self, rows: Iterable[ParticipantRow]) -> int:
        """Add or update every row in one transaction: all of them, or none."""
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
                    session.add(
                        Participant(room_id=room.id, phone=row.phone, name=row.name, role=row.role)
                    )
                else:
                    existing.name, existing.role = row.name, row.role
                session.flush()
                count += 1
        return count

    def participants(
        self, room: str | None = None, search: str | None = None
    ) -> list[ParticipantRow]:
        """List participants, of one room if given, whose name or number contains `search`."""
        stmt = select(Participant.phone, Participant.name, Participant.role, Room.name).join(Room)
        if room is not None:
            stmt = stmt.where(Room.name == room)
        if search:
            matches = [func.lower(Participant.name).like(_contains(search.lower()), escape="\\")]
            digits = _digits(search)
            if digits:
                matches.append(Participant.phone.like(_contains(digits), escape="\\"))
            stmt = stmt.where(or_(*matches))
        stmt = stmt.order_by(Room.name, Participant.role, Participant.name, Participant.phone)
        with self._session() as session:
            return [ParticipantRow(p, n, Role(r), rm) for p, n, r, rm in session.execute(stmt)]

    def update_participant(self, old_phone: str, row: ParticipantRow) -> bool:
        """Replace `old_phone`'s entry in `row.room` with `row`; return False if it is gone.

        Raise Conflict if the new number is already listed in the room.
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
        self, phone: str, line: str | None, call_sid: str | None = None
    ) -> CallerAtLine | None:
        """Find the dialled line's room, the caller in it, their guard and this call's code send.

        One query. The room is the one whose line number was dialled, else the room without a
        line number. Returns None when there is no such room.
        """
        room_id = (
            select(Room.id)
            .where(or_(Room.line_number == line, Room.line_number.is_(None)))
            .order_by(Room.line_number.is_(None), Room.id)
            .limit(1)
            .scalar_subquery()
        )
        send_status = (
            select(CodeSend.status)
            .where(CodeSend.call_sid == call_sid)
            .order_by(CodeSend.id.desc())
            .limit(1)
            .scalar_subquery()
        )
        stmt = (
            select(
                Room.name,
                Room.hold_music_url,
                Participant.name,
                Participant.role,
                NumberGuard.locked_until,
                NumberGuard.failures,
                send_status,
            )
            .select_from(Room)
            .outerjoin(
                Participant, and_(Participant.room_id == Room.id, Participant.phone == phone)
            )
            .outerjoin(NumberGuard, NumberGuard.phone == phone)
            .where(Room.id == room_id)
        )
        with self.engine.connect() as connection:
            row = connection.execute(stmt).first()
        if row is None:
            return None
        room, music, name, role, locked_until, failures, status = row
        return CallerAtLine(
            room,
            music,
            name,
            Role(role) if role else None,
            locked_until,
            failures or 0,
            SendStatus(status) if status else None,
        )

    # -- failed attempts, lockouts and send caps ----------------------------------------------

    def locked_until(self, phone: str, guard: Guard = NumberGuard) -> datetime | None:
        """Return when the number's lockout ends, or None if it is not locked now."""
        with self.engine.connect() as connection:
            until = connection.scalar(select(guard.locked_until).where(guard.phone == phone))
        return until if until is not None and until > utcnow() else None

    def record_failure(
        self, phone: str, max_attempts: int, lockout_seconds: int, guard: Guard = NumberGuard
    ) -> datetime | None:
        """Count a failed entry; at `max_attempts` lock the number and return when it ends."""
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
            .returning(guard.locked_until)
        )
        with self._writing() as connection:
            locked_until = connection.execute(stmt).scalar_one()
        return locked_until if locked_until is not None and locked_until > now else None

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

    # -- built-in one-time codes --------------------------------------------------------------

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

    # -- call log -----------------------------------------------------------------------------

    def log_call(self, outcome: Outcome, note: CallNote) -> None:
        with self._writing() as connection:
            connection.execute(insert(CallLogEntry).values(note.row(outcome)))

    def record_join(self, outcome: Outcome, note: CallNote, clear_failures: bool) -> None:
        """Log a caller let in and, if they had failed before, forget their failures."""
        with self._writing() as connection:
            if clear_failures and note.phone:
                connection.execute(
                    update(NumberGuard).where(NumberGuard.phone == note.phone).values(failures=0)
                )
            connection.execute(insert(CallLogEntry).values(note.row(outcome)))

    def log_hang_up(self, call_sid: str, phone: str | None) -> bool:
        """Log "hung up" for a call that ended at the code prompt; return whether it did.

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
                return False
            last = entries[-1] if entries else None
            note = CallNote(
                call_sid, phone, last.name if last else None, last.room if last else None
            )
            session.add(CallLogEntry(**note.row(Outcome.HUNG_UP)))
            return True

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
            needle = _digits(phone) or phone.strip().lower()
            conditions.append(func.lower(CallLogEntry.phone).like(_contains(needle), escape="\\"))
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

    # -- live conferences ---------------------------------------------------------------------

    def member_joined(
        self, conference_sid: str, room: str, call_sid: str, label: str | None, muted: bool
    ) -> str | None:
        """Record a call entering a conference; return the caller's number if the log has it."""
        with self._session.begin() as session:
            phone = session.scalar(
                select(CallLogEntry.phone)
                .where(CallLogEntry.call_sid == call_sid, CallLogEntry.phone.is_not(None))
                .order_by(CallLogEntry.id.desc())
                .limit(1)
            )
            values = {
                "conference_sid": conference_sid,
                "room": room,
                "label": label,
                "phone": phone,
                "muted": muted,
            }
            session.execute(
                self._insert(ConferenceMember)
                .values(call_sid=call_sid, joined_at=utcnow(), **values)
                .on_conflict_do_update(
                    index_elements=[ConferenceMember.call_sid],
                    set_=values,
                    where=ConferenceMember.left_at.is_(None),
                )
            )
        return phone

    def member_left(
        self, call_sid: str, conference_sid: str | None = None, room: str | None = None
    ) -> str | None:
        """Mark a call as gone from its conference; return its number if it was known.

        A leave that arrives before its join leaves a mark too, so the join is ignored.
        """
        now = utcnow()
        with self._session.begin() as session:
            phone = session.scalar(
                update(ConferenceMember)
                .where(ConferenceMember.call_sid == call_sid)
                .values(left_at=now)
                .returning(ConferenceMember.phone)
            )
            known = session.scalar(
                select(func.count())
                .select_from(ConferenceMember)
                .where(ConferenceMember.call_sid == call_sid)
            )
            if not known and conference_sid and room:
                session.execute(
                    insert(ConferenceMember).values(
                        call_sid=call_sid,
                        conference_sid=conference_sid,
                        room=room,
                        joined_at=now,
                        left_at=now,
                    )
                )
            return phone

    def member_muted(self, call_sid: str, muted: bool) -> None:
        with self._session.begin() as session:
            session.execute(
                update(ConferenceMember)
                .where(ConferenceMember.call_sid == call_sid)
                .values(muted=muted)
            )

    def conference_started(self, conference_sid: str, room: str) -> None:
        """Drop members left over from an earlier conference in the same room."""
        with self._session.begin() as session:
            session.execute(
                delete(ConferenceMember).where(
                    ConferenceMember.room == room,
                    ConferenceMember.conference_sid != conference_sid,
                )
            )

    def conference_ended(self, conference_sid: str) -> None:
        with self._session.begin() as session:
            session.execute(
                delete(ConferenceMember).where(ConferenceMember.conference_sid == conference_sid)
            )

    def live_members(self) -> list[ConferenceMember]:
        """Return everyone in a conference now, by room and time of joining."""
        stmt = (
            select(ConferenceMember)
            .where(ConferenceMember.left_at.is_(None))
            .order_by(ConferenceMember.room, ConferenceMember.joined_at, ConferenceMember.call_sid)
        )
        with self._session() as session:
            return list(session.scalars(stmt))

    def live_labels(self, room: str) -> set[str]:
        """Return the participant labels in the room's conference now."""
        with self.engine.connect() as connection:
            return set(
                connection.scalars(
                    select(ConferenceMember.label).where(
                        ConferenceMember.room == room,
                        ConferenceMember.label.is_not(None),
                        ConferenceMember.left_at.is_(None),
                    )
                )
            )

    def live_member(self, call_sid: str) -> ConferenceMember | None:
        with self._session() as session:
            member = session.get(ConferenceMember, call_sid)
        return member if member is not None and member.left_at is None else None

    # -- admins -------------------------------------------------------------------------------

    def add_admin(self, phone: str, name: str) -> bool:
        """Add an admin, or rename them; return True if they are new."""
        with self._session.begin() as session:
            admin = session.scalar(select(Admin).where(Admin.phone == phone))
            if admin is not None:
                admin.name = name
                return False
            session.add(Admin(phone=phone, name=name))
            return True

    def admins(self) -> list[Admin]:
        with self._session() as session:
            return list(session.scalars(select(Admin).order_by(Admin.name, Admin.phone)))

    def admin_by_phone(self, phone: str) -> Admin | None:
        with self._session() as session:
            return session.scalar(select(Admin).where(Admin.phone == phone))

    def admin(self, admin_id: int) -> Admin | None:
        with self._session() as session:
            return session.get(Admin, admin_id)

    def remove_admin(self, phone: str) -> bool:
        with self._session.begin() as session:
            return session.execute(delete(Admin).where(Admin.phone == phone)).rowcount > 0

    def end_admin_sessions(self, admin_id: int) -> None:
        """Make every session of this admin that began until now invalid."""
        with self._session.begin() as session:
            session.execute(
                update(Admin).where(Admin.id == admin_id).values(signed_out_at=utcnow())
            )

    # -- helpers ------------------------------------------------------------------------------

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

    def _insert(self, model: type[Base]):
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(model)

    @staticmethod
    def _room(session, name: str) -> Room:
        room = session.scalar(select(Room).where(Room.name == name))
        if room is None:
            room = Room(name=name)
            session.add(room)
            session.flush()
        return room


def _contains(text: str) -> str:
    """Return a LIKE pattern matching `text` literally anywhere (escape character \\)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _digits(text: str) -> str:
    return "".join(character for character in text if character in "0123456789")


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 15})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # No pre-ping: it would add a round trip to every checkout on the webhook path. After a
    # database restart SQLAlchemy notices the first broken connection and drops the whole pool;
    # only the requests in flight then fail, and their callers hear an apology.
    return create_engine(url, pool_size=10, max_overflow=20, pool_recycle=1800)


def _sqlite_pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    # Under WAL this stays consistent; only a power cut can lose the last commits.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
