"""The console's CSV of calls: one row per call, every cell safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import timedelta

from ivr.roster import text_cell
from ivr.store import CallSummary

CALL_COLUMNS = [
    "started_utc",
    "phone",
    "name",
    "room",
    "outcome",
    "seconds_to_join",
    "seconds_in_conference",
    "call_sid",
]


def write_calls_csv(calls: Iterable[CallSummary], handle: io.TextIOBase) -> None:
    writer = csv.writer(handle, lineterminator="\n")
    writer.writerow(CALL_COLUMNS)
    for call in calls:
        cells = (
            call.started.strftime("%Y-%m-%d %H:%M:%S"),
            call.phone or "",
            call.name or "",
            call.room or "",
            call.outcome,
            _seconds(call.answer_to_join),
            _seconds(call.in_conference),
            call.call_sid,
        )
        # Names and withheld "numbers" come from outside; a leading "=" must not run.
        writer.writerow([text_cell(cell) for cell in cells])


def _seconds(value: timedelta | None) -> str:
    return "" if value is None else f"{value.total_seconds():.1f}"
