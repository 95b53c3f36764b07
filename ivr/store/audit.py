"""The audit trail: what admins changed, newest first. The app only ever appends to it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, insert, or_, select

from ivr.store.database import Database, Paged, anywhere, digits_only
from ivr.store.models import AuditEntry, utcnow


@dataclass(frozen=True)
class AuditPage(Paged):
    entries: list[AuditEntry]
    total: int
    page: int
    per_page: int


class AuditStore(Database):
    """Appends to the audit trail and reads it; there is deliberately no update or delete."""

    def record_audit(
        self, actor: str, action: str, target: str, changes: dict | None = None
    ) -> None:
        row = {
            "at": utcnow(),
            "actor": actor[:200],
            "action": action,
            "target": target[:200],
            "changes": json.dumps(changes, ensure_ascii=False, default=str) if changes else None,
        }
        with self._writing() as connection:
            connection.execute(insert(AuditEntry).values(row))

    def audit_page(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        since: datetime | None = None,
        page: int = 1,
        per_page: int = 50,
    ) -> AuditPage:
        """Return one page of the trail, newest first: exact actor and action, any part of
        the target (case-insensitive), from `since` on."""
        conditions = []
        if actor:
            conditions.append(AuditEntry.actor == actor)
        if action:
            conditions.append(AuditEntry.action == action)
        if target:
            needle = target.strip().lower()
            matches = [func.lower(AuditEntry.target).like(anywhere(needle), escape="\\")]
            digits = digits_only(needle)
            if len(digits) >= 4:
                # Targets show numbers as "+1 800-555-9876"; "5559876" or "+18005559876" finds it.
                bare = func.replace(func.replace(AuditEntry.target, " ", ""), "-", "")
                matches.append(bare.like(anywhere(digits), escape="\\"))
            conditions.append(or_(*matches))
        if since:
            conditions.append(AuditEntry.at >= since)
        page = max(1, page)
        with self._session() as session:
            total = session.scalar(select(func.count()).select_from(AuditEntry).where(*conditions))
            entries = list(
                session.scalars(
                    select(AuditEntry)
                    .where(*conditions)
                    .order_by(AuditEntry.id.desc())
                    .offset((page - 1) * per_page)
                    .limit(per_page)
                )
            )
        return AuditPage(entries, total, page, per_page)

    def audit_actors(self) -> list[str]:
        """Everyone the trail names, for filtering."""
        stmt = select(AuditEntry.actor).distinct().order_by(AuditEntry.actor)
        with self._session() as session:
            return list(session.scalars(stmt))
