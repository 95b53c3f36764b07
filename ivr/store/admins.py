"""Who may sign in to the admin console."""

from __future__ import annotations

from sqlalchemy import delete, select, update

from ivr.store.database import Database
from ivr.store.models import Admin, utcnow


class AdminStore(Database):
    """Admins of the console."""

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

    def set_admin_time_zone(self, admin_id: int, time_zone: str) -> None:
        with self._session.begin() as session:
            session.execute(update(Admin).where(Admin.id == admin_id).values(time_zone=time_zone))
