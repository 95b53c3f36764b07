"""Who is in each conference right now, as Twilio's conference events tell it."""

from __future__ import annotations

from dataclasses import dataclass, replace

from sqlalchemy import Connection, and_, bindparam, delete, exists, func, insert, select, update

from ivr.store.database import Database, Prepared
from ivr.store.models import CallLogEntry, ConferenceMember, Outcome, Room, utcnow

_JOINED = (Outcome.JOINED_MODERATOR, Outcome.JOINED_PARTICIPANT)


@dataclass(frozen=True)
class AnnouncedCaller:
    """Who a conference announcement is about, as the line let them in, and their room's wishes."""

    name: str
    moderator: bool
    room: str
    language: str
    announce_names: bool
    # Callers in the conference apart from this one: whoever would hear the announcement.
    others: int = 0
    # A moderator has left, so the conference is ending (moderators end it on exit): the
    # leaves that follow are Twilio emptying it, with nobody left to tell.
    ending: bool = False
    # The caller is in the conference now (a join may be read after its leave).
    present: bool = False


def labelled_in(room):
    """Who is in `room`'s conference now under a participant label."""
    return and_(
        ConferenceMember.room == room,
        ConferenceMember.label.is_not(None),
        ConferenceMember.left_at.is_(None),
    )


_LIVE_LABELS = Prepared(select(ConferenceMember.label).where(labelled_in(bindparam("room"))))


def live_labels_on(connection, room: str) -> set[str]:
    """Return the participant labels in the room's conference now, read on `connection`."""
    return {row[0] for row in _LIVE_LABELS.run(connection, {"room": room}).rows}


class LiveStore(Database):
    """Conference members, for the console's live view and participant labels."""

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

    def live_callers(self) -> dict[str, int]:
        """Return how many callers are in each room's conference now; every room, 0 included."""
        in_conference = (
            select(ConferenceMember.room, func.count())
            .where(ConferenceMember.left_at.is_(None))
            .group_by(ConferenceMember.room)
        )
        with self.engine.connect() as connection:
            counts = {name: 0 for name in connection.scalars(select(Room.name))}
            counts.update({room: count for room, count in connection.execute(in_conference)})
        return counts

    def live_labels(self, room: str) -> set[str]:
        """Return the participant labels in the room's conference now."""
        with self._reading() as connection:
            return live_labels_on(connection, room)

    def announced_caller(self, call_sid: str) -> AnnouncedCaller | None:
        """Return the caller the line let in on `call_sid` (their listed name, not the number).

        None if the line let no one in on that call, or their room is gone.
        """
        with self.engine.connect() as connection:
            return _announced_caller(connection, call_sid)

    def conference_news(self, call_sid: str, conference_sid: str) -> AnnouncedCaller | None:
        """Return announced_caller(call_sid), with who else is in the conference now."""
        others = (
            select(func.count())
            .select_from(ConferenceMember)
            .where(
                ConferenceMember.conference_sid == conference_sid,
                ConferenceMember.call_sid != call_sid,
                ConferenceMember.left_at.is_(None),
            )
        )
        present = exists().where(
            ConferenceMember.call_sid == call_sid,
            ConferenceMember.conference_sid == conference_sid,
            ConferenceMember.left_at.is_(None),
        )
        moderator_left = exists().where(
            ConferenceMember.conference_sid == conference_sid,
            ConferenceMember.left_at.is_not(None),
            CallLogEntry.call_sid == ConferenceMember.call_sid,
            CallLogEntry.outcome == Outcome.JOINED_MODERATOR,
        )
        with self.engine.connect() as connection:
            caller = _announced_caller(connection, call_sid)
            if caller is None:
                return None
            return replace(
                caller,
                others=connection.scalar(others) or 0,
                ending=bool(connection.scalar(select(moderator_left))),
                present=bool(connection.scalar(select(present))),
            )

    def live_member(self, call_sid: str) -> ConferenceMember | None:
        with self._session() as session:
            member = session.get(ConferenceMember, call_sid)
        return member if member is not None and member.left_at is None else None


def _announced_caller(connection: Connection, call_sid: str) -> AnnouncedCaller | None:
    # The join row /gather wrote: the name from the list, where the conference events' rows
    # carry the participant label (which may end in digits of the number).
    joined = connection.execute(
        select(
            CallLogEntry.name,
            CallLogEntry.outcome,
            Room.name.label("room"),
            Room.language,
            Room.announce_names,
        )
        .join(Room, Room.name == CallLogEntry.room)
        .where(CallLogEntry.call_sid == call_sid, CallLogEntry.outcome.in_(_JOINED))
        .order_by(CallLogEntry.id.desc())
        .limit(1)
    ).first()
    if joined is None or not joined.name:
        return None
    return AnnouncedCaller(
        name=joined.name,
        moderator=joined.outcome == Outcome.JOINED_MODERATOR,
        room=joined.room,
        language=joined.language,
        announce_names=joined.announce_names,
    )
