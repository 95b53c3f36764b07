"""The database: the only package that issues SQL. One module per aggregate, one `Store`.

Each method of `Store` is one transaction (on SQLite, /voice's webhook claim leaves its open
for the request's next write: `Database._held_open`). Webhooks and pages ask `Store` by what
they need (`caller_at_line`, `claim_attempt`, `log_call`, ...); the modules say where each lives:
rooms.py (rooms, participants, the caller lookup), guards.py (failures, lockouts, send caps,
codes), enrolments.py (authenticator apps), calls.py (the call log), live.py (conference
members), admins.py, audit.py (the audit trail, append-only), webhooks.py (Twilio's retries),
and models.py (tables).
"""

from __future__ import annotations

from ivr.store.admins import AdminStore
from ivr.store.audit import AuditPage, AuditStore
from ivr.store.calls import (
    CALL_OUTCOMES,
    CallLogStore,
    CallNote,
    CallsPage,
    CallSummary,
)
from ivr.store.enrolments import EnrolmentStore, PendingEnrolment
from ivr.store.guards import GuardStore, Lockout, StoredCode
from ivr.store.live import AnnouncedCaller, LiveStore
from ivr.store.models import (
    DEFAULT_ROOM_NAME,
    LINE,
    LOCKOUT_KINDS,
    Admin,
    AuditEntry,
    Base,
    CallLogEntry,
    CodeBy,
    CodeSend,
    ConferenceMember,
    Enrolment,
    Guard,
    NumberGuard,
    OneTimeCode,
    Outcome,
    Participant,
    Role,
    Room,
    SendStatus,
    SignInGuard,
    utcnow,
)
from ivr.store.rooms import (
    MEETING_SETTINGS,
    CallerAtLine,
    CallerLookup,
    Claimed,
    Conflict,
    NotEnrolled,
    ParticipantRow,
    RoomStore,
)
from ivr.store.webhooks import KeptAnswer, SeenBefore, WebhookStore


class Store(
    RoomStore,
    GuardStore,
    CallLogStore,
    LiveStore,
    AdminStore,
    WebhookStore,
    EnrolmentStore,
    AuditStore,
):
    """The line's database; each method is one transaction."""


__all__ = [
    "CALL_OUTCOMES",
    "AnnouncedCaller",
    "DEFAULT_ROOM_NAME",
    "LINE",
    "LOCKOUT_KINDS",
    "MEETING_SETTINGS",
    "Admin",
    "AuditEntry",
    "AuditPage",
    "Base",
    "CallLogEntry",
    "CallNote",
    "CallerAtLine",
    "CallerLookup",
    "Claimed",
    "CallsPage",
    "CallSummary",
    "CodeBy",
    "CodeSend",
    "ConferenceMember",
    "Conflict",
    "Enrolment",
    "Guard",
    "Lockout",
    "NotEnrolled",
    "NumberGuard",
    "OneTimeCode",
    "Outcome",
    "Participant",
    "ParticipantRow",
    "PendingEnrolment",
    "Role",
    "Room",
    "SendStatus",
    "SignInGuard",
    "StoredCode",
    "SeenBefore",
    "KeptAnswer",
    "Store",
    "utcnow",
]
