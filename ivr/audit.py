"""The audit trail's words: who is acting, what the actions are called, how targets read.

Console views and `flask` commands call `record` after a change succeeded, so every change an
admin makes leaves exactly one row. The store only appends to the trail (ivr/store/audit.py).
"""

from __future__ import annotations

import json

from flask import g, has_request_context

from ivr.phones import international
from ivr.services import services

COMMAND_LINE = "command line"
# Every action the trail records, with what the console calls it.
ACTIONS: dict[str, str] = {
    "room.create": "Room created",
    "room.edit": "Room edited",
    "room.delete": "Room deleted",
    "room.hours": "Opening hours set",
    "participant.add": "Participant added",
    "participant.edit": "Participant edited",
    "participant.remove": "Participant removed",
    "participant.import": "Participants imported",
    "participant.invite": "App invitation sent",
    "admin.add": "Admin added",
    "admin.remove": "Admin removed",
    "admin.sign_in": "Signed in",
    "admin.sign_out": "Signed out",
    "admin.time_zone": "Time zone chosen",
    "lockout.unlock": "Number unlocked",
    "live.mute": "Caller muted",
    "live.unmute": "Caller unmuted",
    "live.remove": "Caller removed",
    "live.end": "Conference ended",
}


# A room's settings that are its opening hours: changed from the console's room form with the
# rest, they get a row of their own, so that filtering by "Opening hours set" finds them all.
HOURS_SETTINGS = ("time_zone", "opening_hours")


def record(
    action: str, target: str, changes: dict | None = None, *, actor: str | None = None
) -> None:
    """Append one row to the trail; the actor is the signed-in admin, else the command line.

    `changes` {} (an edit that changed nothing, as `changed` says) records nothing: a re-saved
    form is not a change. None is an action with nothing more to say.
    """
    if action not in ACTIONS:
        raise ValueError(f"not an audited action: {action}")
    if changes == {}:
        return
    services().store.record_audit(actor or current_actor(), action, target, changes)


def record_room_edit(target: str, changes: dict) -> None:
    """Record a room form's save: its hours as "room.hours", everything else as "room.edit"."""
    hours = {key: value for key, value in changes.items() if key in HOURS_SETTINGS}
    rest = {key: value for key, value in changes.items() if key not in HOURS_SETTINGS}
    record("room.edit", target, rest)
    record("room.hours", target, hours)


def record_new_rooms(before: set[str]) -> None:
    """Record the rooms a change made on the way (an import naming a room that did not exist)."""
    for room in services().store.rooms():
        if room.name not in before:
            record("room.create", f"room {room.name}", {"name": room.name})


def current_actor() -> str:
    admin = g.get("admin") if has_request_context() else None
    return admin_name(admin) if admin is not None else COMMAND_LINE


def room_names() -> set[str]:
    return {room.name for room in services().store.rooms()}


def admin_name(admin) -> str:
    return f"{admin.name} ({_number(admin.phone)})"


def person(name: str, phone: str, room: str | None = None) -> str:
    """How a participant reads as a target: "Blathers (+1 800-555-9876) in main"."""
    return f"{name} ({_number(phone)})" + (f" in {room}" if room else "")


def participant_values(participant) -> dict:
    """A participant row as the trail compares them (a row that keeps code_by has none)."""
    values = {"phone": participant.phone, "name": participant.name, "role": participant.role.value}
    if participant.code_by is not None:
        values["code_by"] = participant.code_by.value
    return values


def changed(old: dict, new: dict) -> dict:
    """Return {field: [old, new]} for the fields whose value changed."""
    return {key: [old.get(key), value] for key, value in new.items() if old.get(key) != value}


def _number(phone: str) -> str:
    try:
        return international(phone)
    except ValueError:
        return phone


def describe_changes(changes: str | None) -> list[str]:
    """Turn a row's stored changes into lines a person reads: "role: participant -> moderator"."""
    if not changes:
        return []
    lines = []
    for key, value in json.loads(changes).items():
        if isinstance(value, list) and len(value) == 2:
            old, new = ("(none)" if v is None else v for v in value)
            lines.append(f"{key}: {old} -> {new}")
        else:
            lines.append(f"{key}: {value}")
    return lines
