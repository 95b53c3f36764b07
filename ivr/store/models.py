"""The tables: every model the line stores, and the values its columns hold.

Times are naive UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import true as sa_true
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

DEFAULT_ROOM_NAME = "main"


def utcnow() -> datetime:
    """Return the current time as naive UTC, the form every column stores."""
    return datetime.now(UTC).replace(tzinfo=None)


class Role(StrEnum):
    MODERATOR = "moderator"
    PARTICIPANT = "participant"


class CodeBy(StrEnum):
    """How a participant gets their code for the line."""

    SMS = "sms"  # a text message to the number they call from
    WHATSAPP = "whatsapp"  # a WhatsApp message, through Verify
    APP = "app"  # an authenticator app (TOTP); set only by self-enrolment


class Outcome(StrEnum):
    """What happened on a call, as the call log records it."""

    CODE_SENT = "code sent"
    APP_CODE_ASKED = "asked for app code"
    JOINED_MODERATOR = "joined as moderator"
    JOINED_PARTICIPANT = "joined as participant"
    WRONG_CODE = "wrong code"
    USED_CODE = "used code"
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
    ROOM_CLOSED = "room closed"
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
    # IANA time zone the opening hours are in (zoneinfo); None reads as UTC.
    time_zone: Mapped[str | None] = mapped_column(String(64))
    # When the room takes calls, one window per line in ivr.hours' syntax ("mon-fri 09:55-11:00",
    # "2026-12-03 15:00-16:30"); None: always open. Kept as text so that /voice reads it with
    # the rest of the caller's row, in one query.
    opening_hours: Mapped[str | None] = mapped_column(Text)
    # Moderators may call outside the opening hours, to open early.
    moderators_anytime: Mapped[bool] = mapped_column(
        Boolean, default=True, server_default=sa_true()
    )
    # The others hear "Blathers has joined." / "Blathers has left."
    announce_names: Mapped[bool] = mapped_column(Boolean, default=True, server_default=sa_true())
    # The language of every prompt in this room (a catalogue in ivr/translations).
    language: Mapped[str] = mapped_column(String(16), default="en-US", server_default="en-US")

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
    code_by: Mapped[str] = mapped_column(String(16), default=CodeBy.SMS, server_default="sms")
    # The authenticator app's TOTP secret, encrypted with a key derived from SECRET_KEY
    # (ivr.authenticator): a database dump alone gives no codes. Set only with code_by "app".
    app_secret: Mapped[str | None] = mapped_column(Text)
    # The last 30-second time step accepted from the app: each code is good once.
    app_last_step: Mapped[int | None] = mapped_column(BigInteger)

    room: Mapped[Room] = relationship(back_populates="participants")


class Enrolment(Base):
    """A pending invitation to set up an authenticator app, sent to the participant by SMS.

    The link's token is the credential, so only its hash is kept. The secret is made when the
    invitation is sent and moves to the participant when they confirm a code from their app.
    """

    __tablename__ = "enrolments"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    participant_id: Mapped[int] = mapped_column(
        ForeignKey("participants.id", ondelete="CASCADE"), index=True
    )
    app_secret: Mapped[str] = mapped_column(Text)  # encrypted like Participant.app_secret
    expires_at: Mapped[datetime] = mapped_column(DateTime)


class NumberGuard(Base):
    """Failed code entries and the lockout they earn, per caller number."""

    __tablename__ = "number_guards"

    phone: Mapped[str] = mapped_column(String(20), primary_key=True)
    # Attempts claimed in this window: settled failures and checks still in flight.
    failures: Mapped[int] = mapped_column(Integer, default=0)
    # Of those, the checks still in flight (claimed, not yet settled).
    checking: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(DateTime)


class SendStatus(StrEnum):
    STARTED = "started"  # handed to a sender thread
    SENT = "sent"  # the provider took it
    FAILED = "failed"  # the provider was down, slow or refusing
    REFUSED = "refused"  # the provider will send no more codes to this number for now
    # Never stored: read for a send STARTED so long ago that its sender must have died.
    STUCK = "stuck"


class SignInGuard(Base):
    """Failed admin sign-in codes and their lockout, per number.

    Kept apart from NumberGuard so that someone guessing at the console cannot lock a
    participant out of the phone line.
    """

    __tablename__ = "sign_in_guards"

    phone: Mapped[str] = mapped_column(String(20), primary_key=True)
    # Attempts claimed in this window: settled failures and checks still in flight.
    failures: Mapped[int] = mapped_column(Integer, default=0)
    # Of those, the checks still in flight (claimed, not yet settled).
    checking: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
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
    # The IANA zone the console shows this admin's times in; None reads as UTC.
    time_zone: Mapped[str | None] = mapped_column(String(64))


class AuditEntry(Base):
    """One change an admin made, through the console or the command line.

    Append-only for the app: the store inserts and reads these, and nothing else. The actor is
    kept as text, not a key, so that removing an admin keeps what they did.
    """

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, index=True)
    # "Tom Nook (+1 800-555-0111)", or "command line".
    actor: Mapped[str] = mapped_column(String(200), index=True)
    action: Mapped[str] = mapped_column(String(40), index=True)  # e.g. "participant.edit"
    target: Mapped[str] = mapped_column(String(200), index=True)  # e.g. "Blathers (+1 ...) in main"
    # What changed, as JSON: {"field": [old, new]} for edits, or a few facts ("rows": 12).
    changes: Mapped[str | None] = mapped_column(Text)


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


class WebhookAnswer(Base):
    """A webhook request Twilio may send again (same I-Twilio-Idempotency-Token), and our answer.

    Claimed before the request is answered, so that a retry arriving on any instance while the
    first is still being answered changes nothing either; the answer is kept for replaying.
    """

    __tablename__ = "webhook_answers"

    token: Mapped[str] = mapped_column(String(128), primary_key=True)
    path: Mapped[str] = mapped_column(String(100))
    answer: Mapped[str | None] = mapped_column(Text)  # None while the first is being answered
    at: Mapped[datetime] = mapped_column(DateTime, index=True)
