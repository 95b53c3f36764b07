"""Who is in each conference right now, as Twilio's conference events tell it."""

from __future__ import annotations

from sqlalchemy import delete, func, insert, select, update

from ivr.store.database import Database
from ivr.store.models import CallLogEntry, ConferenceMember, Room, utcnow


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
