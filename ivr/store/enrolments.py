"""Authenticator app enrolments: the pending invitation, its confirmation, and each code's step."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, or_, select, update

from ivr.store.database import Database
from ivr.store.models import CodeBy, Enrolment, Participant, Room


@dataclass(frozen=True)
class PendingEnrolment:
    """An invitation still open: whom it is for and the secret their app should get."""

    participant_id: int
    phone: str
    name: str
    room: str
    app_secret: str  # encrypted (ivr.authenticator)
    expires_at: datetime


class EnrolmentStore(Database):
    def invite(
        self, phone: str, room: str, token_hash: str, app_secret: str, expires_at: datetime
    ) -> str | None:
        """Open an invitation for `phone` in `room`, closing any earlier one it had.

        Return the participant's name, or None if they are not in that room. Their method does
        not change until they confirm: an invitation nobody opens leaves the line as it was.
        """
        with self._session.begin() as session:
            participant = session.scalar(
                select(Participant).join(Room).where(Room.name == room, Participant.phone == phone)
            )
            if participant is None:
                return None
            session.execute(delete(Enrolment).where(Enrolment.participant_id == participant.id))
            session.add(
                Enrolment(
                    token_hash=token_hash,
                    participant_id=participant.id,
                    app_secret=app_secret,
                    expires_at=expires_at,
                )
            )
            return participant.name

    def pending_enrolment(self, token_hash: str, now: datetime) -> PendingEnrolment | None:
        """Return the open invitation with this token, or None if unknown, used or expired."""
        stmt = (
            select(
                Participant.id,
                Participant.phone,
                Participant.name,
                Room.name,
                Enrolment.app_secret,
                Enrolment.expires_at,
            )
            .select_from(Enrolment)
            .join(Participant, Participant.id == Enrolment.participant_id)
            .join(Room, Room.id == Participant.room_id)
            .where(Enrolment.token_hash == token_hash, Enrolment.expires_at > now)
        )
        with self.engine.connect() as connection:
            row = connection.execute(stmt).first()
        return PendingEnrolment(*row) if row is not None else None

    def finish_enrolment(self, token_hash: str, step: int, now: datetime) -> bool:
        """Give the invited participant the app, with `step` already used; close the invitation.

        Return False if the invitation is gone (used by a confirmation racing this one, or
        expired): the token is taken by a delete, so only one confirmation can win.
        """
        with self._session.begin() as session:
            enrolment = session.execute(
                delete(Enrolment)
                .where(Enrolment.token_hash == token_hash, Enrolment.expires_at > now)
                .returning(Enrolment.participant_id, Enrolment.app_secret)
            ).first()
            if enrolment is None:
                return False
            participant_id, app_secret = enrolment
            session.execute(
                update(Participant)
                .where(Participant.id == participant_id)
                .values(code_by=CodeBy.APP, app_secret=app_secret, app_last_step=step)
            )
            return True

    def accept_app_step(self, participant_id: int, step: int) -> bool:
        """Mark `step` used by this participant's app; False if it (or a later one) was used.

        One conditional update, so two calls racing with the same code cannot both win.
        """
        stmt = (
            update(Participant)
            .where(
                Participant.id == participant_id,
                Participant.code_by == CodeBy.APP,
                or_(Participant.app_last_step.is_(None), Participant.app_last_step < step),
            )
            .values(app_last_step=step)
        )
        with self._writing() as connection:
            return connection.execute(stmt).rowcount == 1

    def app_secret_of(self, phone: str, room: str | None = None) -> str | None:
        """Return the encrypted app secret of `phone` (in `room`, or its first room with one)."""
        stmt = (
            select(Participant.app_secret)
            .join(Room)
            .where(
                Participant.phone == phone,
                Participant.code_by == CodeBy.APP,
                Participant.app_secret.is_not(None),
            )
            .order_by(Room.id)
            .limit(1)
        )
        if room is not None:
            stmt = stmt.where(Room.name == room)
        with self.engine.connect() as connection:
            return connection.scalar(stmt)
