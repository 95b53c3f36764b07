"""Participant rows from people: one number, or a CSV file of phone,name,role[,room[,code_by]].

Shared by the command line and the admin console, so both accept and refuse the same input.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from ivr.phones import parse_phone
from ivr.store import DEFAULT_ROOM_NAME, CodeBy, ParticipantRow, Role

CSV_COLUMNS = ["phone", "name", "role", "room", "code_by"]
CODE_BY_NAMES = {CodeBy.SMS: "SMS", CodeBy.WHATSAPP: "WhatsApp", CodeBy.APP: "Authenticator app"}
WHATSAPP_NEEDS_VERIFY = "whatsapp codes need Twilio Verify: set VERIFY_SERVICE_SID"
MAX_NAME_LENGTH = 100
# A spreadsheet runs a cell that starts with one of these as a formula (OWASP, CSV injection):
# exports put a ' before it, which spreadsheets take as "this is text", and imports take it off.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_ESCAPED = (*FORMULA_STARTS, "'")


class RosterError(ValueError):
    """Input that cannot become a participant; the message names the problem."""


def phone_from_text(raw: str) -> str:
    """Return `raw` in E.164 form or raise RosterError."""
    phone = parse_phone(raw)
    if phone is None:
        raise RosterError(
            f"{raw.strip()!r} is not a valid phone number: use international format, "
            "e.g. +18005559876"
        )
    return phone


def participant(
    phone: str,
    name: str,
    role: str = "",
    room: str = "",
    code_by: str | None = None,
    *,
    whatsapp_allowed: bool = False,
) -> ParticipantRow:
    """Return a validated row; blank role means participant, blank room the default room.

    `code_by` None keeps the stored method; blank means sms. WhatsApp is refused unless
    `whatsapp_allowed` (the line sends codes with Verify).
    """
    clean_name = " ".join(name.split())
    if not clean_name:
        raise RosterError("the name is empty")
    if len(clean_name) > MAX_NAME_LENGTH:
        raise RosterError(f"the name is longer than {MAX_NAME_LENGTH} characters")
    role_text = role.strip().lower() or Role.PARTICIPANT
    if role_text not in {r.value for r in Role}:
        raise RosterError(f"role {role.strip()!r} is not moderator or participant")
    room_name = " ".join(room.split()) or DEFAULT_ROOM_NAME
    method = _code_by(code_by, whatsapp_allowed)
    return ParticipantRow(phone_from_text(phone), clean_name, Role(role_text), room_name, method)


def _code_by(text: str | None, whatsapp_allowed: bool) -> CodeBy | None:
    if text is None:
        return None
    name = text.strip().lower() or CodeBy.SMS
    if name not in {c.value for c in CodeBy}:
        raise RosterError(f"code_by {text.strip()!r} is not sms, whatsapp or app")
    if name == CodeBy.WHATSAPP and not whatsapp_allowed:
        raise RosterError(WHATSAPP_NEEDS_VERIFY)
    return CodeBy(name)


def read_csv(text: str, *, whatsapp_allowed: bool = False) -> list[ParticipantRow]:
    """Parse a whole CSV file; raise RosterError naming the first bad row.

    A file without the code_by column leaves everyone's method as it is stored.
    """
    rows: list[ParticipantRow] = []
    seen: dict[tuple[str, str], int] = {}
    for line_number, raw_cells in enumerate(csv.reader(io.StringIO(text)), start=1):
        cells = [_from_text_cell(cell) for cell in raw_cells]
        if not any(cell.strip() for cell in cells):
            continue
        if line_number == 1 and cells[0].strip().lower() == "phone":
            continue
        if not 2 <= len(cells) <= len(CSV_COLUMNS):
            raise RosterError(
                f"row {line_number}: expected phone,name,role[,room[,code_by]], "
                f"got {len(cells)} columns"
            )
        try:
            row = participant(*cells, whatsapp_allowed=whatsapp_allowed)
        except RosterError as error:
            raise RosterError(f"row {line_number}: {error}") from None
        key = (row.room, row.phone)
        if key in seen:
            raise RosterError(
                f"row {line_number}: {row.phone} is already on row {seen[key]} for room {row.room}"
            )
        seen[key] = line_number
        rows.append(row)
    if not rows:
        raise RosterError("the file has no participants")
    return rows


def write_csv(rows: Iterable[ParticipantRow], handle: io.TextIOBase) -> None:
    """Write rows in the format read_csv reads, every cell safe to open in a spreadsheet."""
    writer = csv.writer(handle, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        code_by = (row.code_by or CodeBy.SMS).value
        cells = (row.phone, row.name, row.role.value, row.room, code_by)
        writer.writerow([text_cell(cell) for cell in cells])


def text_cell(cell: str) -> str:
    # A cell that starts with ' gets one more, so that import gives back exactly what was stored.
    return f"'{cell}" if cell.startswith(_ESCAPED) else cell


def _from_text_cell(cell: str) -> str:
    return cell[1:] if cell.startswith("'") and cell[1:].startswith(_ESCAPED) else cell
