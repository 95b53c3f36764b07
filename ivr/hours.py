"""A room's opening hours: parse them, write them in one canonical form, and ask them the time.

The syntax, one window per line (what Room.opening_hours stores, in canonical form):

    mon-fri 09:55-11:00          weekly: days (mon tue wed thu fri sat sun), ranges and lists
    mon,wed,fri 14:00-15:00
    2026-12-03 15:00-16:30       one-off: an ISO date

Times are 24-hour HH:MM wall-clock times in the room's time zone, so a 09:55 window opens at
09:55 whether daylight saving time is on or off. A window ends after it starts, on the same day
(24:00 may end one). A one-off window adds to the weekly ones of its day. No windows at all: the
room is always open. Pure: no Flask, no database, no clock of its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEFAULT_ZONE = "UTC"
# A weekly window opens again within a week; a day more covers a DST change's shifted hour.
WEEKLY_HORIZON_DAYS = 8
MIDNIGHT = timedelta(hours=24)
# Files in the zone database that are not zones of a place.
NOT_ZONES = frozenset({"localtime", "posixrules"})
_TIME = re.compile(r"([0-9]{1,2}):([0-9]{2})")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class HoursError(ValueError):
    """Opening hours or a time zone that cannot be used; the message names the bad bit.

    `line` is the 1-based line of the hours text it is on, when parsed from several lines.
    """

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


@dataclass(frozen=True)
class Window:
    """One opening: on some weekdays every week (0 = Monday), or on one date; [start, end)."""

    start: timedelta  # since midnight, wall clock
    end: timedelta
    weekdays: frozenset[int] = frozenset()
    on: date | None = None

    def applies_on(self, day: date) -> bool:
        return day == self.on if self.on is not None else day.weekday() in self.weekdays

    def text(self) -> str:
        """Return the window in canonical form, e.g. "mon-fri 09:55-11:00"."""
        when = self.on.isoformat() if self.on is not None else _days_text(self.weekdays)
        return f"{when} {_clock(self.start)}-{_clock(self.end)}"

    def sort_key(self) -> tuple:
        # Weekly windows first, by their first day; then one-off windows by date.
        if self.on is None:
            return (0, min(self.weekdays), date.min, self.start, self.end, sorted(self.weekdays))
        return (1, 0, self.on, self.start, self.end, [])


@dataclass(frozen=True)
class OpeningHours:
    """A room's windows in its time zone."""

    zone: ZoneInfo
    windows: tuple[Window, ...]

    def is_open(self, at: datetime) -> bool:
        """Return whether a window is open at `at` (an aware datetime)."""
        local = at.astimezone(self.zone)
        since_midnight = local.replace(tzinfo=None) - datetime.combine(local.date(), time())
        return any(
            w.applies_on(local.date()) and w.start <= since_midnight < w.end for w in self.windows
        )

    def next_opening(self, at: datetime) -> datetime | None:
        """Return when a window next opens, at `at` or later, in the room's zone; None: never."""
        local = at.astimezone(self.zone)
        today = local.date()
        days = {today + timedelta(days=n) for n in range(WEEKLY_HORIZON_DAYS)}
        days |= {w.on for w in self.windows if w.on is not None and w.on >= today}
        openings = [
            self._wall_clock(day, w.start)
            for day in days
            for w in self.windows
            if w.applies_on(day)
        ]
        later = [opening for opening in openings if opening >= at]
        return min(later) if later else None

    def text(self) -> str:
        return "\n".join(w.text() for w in self.windows)

    def _wall_clock(self, day: date, since_midnight: timedelta) -> datetime:
        """Return `day` at a wall-clock time in the zone (a time DST skips reads as after it)."""
        naive = datetime.combine(day, time()) + since_midnight
        return naive.replace(tzinfo=self.zone).astimezone(UTC).astimezone(self.zone)


def zone(name: str | None) -> ZoneInfo:
    """Return the IANA time zone `name` (None: UTC); raise HoursError naming an unknown one."""
    key = DEFAULT_ZONE if name is None else name
    if key not in zone_names():
        hint = _zone_names_by_case().get(key.strip().lower())
        suggestion = f" (did you mean {hint!r}?)" if hint else ""
        raise HoursError(f"unknown zone {name!r}{suggestion}")
    return ZoneInfo(key)


def window(text: str) -> Window:
    """Parse one window, e.g. "mon-fri 09:55-11:00" or "2026-12-03 15:00-16:30"."""
    parts = text.split(None, 1)
    if len(parts) != 2:
        example = "'mon-fri 09:55-11:00' or '2026-12-03 15:00-16:30'"
        raise HoursError(f"not a window: {text.strip()!r} (write it like {example})")
    when, times = parts[0].lower(), "".join(parts[1].split())
    start_text, dash, end_text = times.partition("-")
    if not dash:
        raise HoursError(f"bad times {parts[1].strip()!r} (write them like '09:55-11:00')")
    start, end = _time_of_day(start_text), _time_of_day(end_text, end=True)
    if end < start:
        raise HoursError(f"ends before it starts: {_clock(start)}-{_clock(end)}")
    if end == start:
        raise HoursError(f"ends as it starts: {_clock(start)}-{_clock(end)}")
    if when[:1].isdigit():
        return Window(start, end, on=_date(when))
    return Window(start, end, weekdays=_weekdays(when))


def parse(text: str | None) -> tuple[Window, ...]:
    """Parse hours text, one window per line (blank lines skipped); canonical order, no repeats.

    Raise HoursError with `line` set to the line of the first bad window.
    """
    windows = set()
    for number, line in enumerate((text or "").splitlines(), start=1):
        if line.strip():
            try:
                windows.add(window(line))
            except HoursError as error:
                raise HoursError(str(error), line=number) from None
    return tuple(sorted(windows, key=Window.sort_key))


def canonical(lines: Iterable[str]) -> str | None:
    """Return windows in the form Room.opening_hours stores; None for no windows (always open)."""
    windows = parse("\n".join(lines))
    return "\n".join(w.text() for w in windows) or None


@lru_cache(maxsize=512)
def schedule(zone_name: str | None, hours: str | None) -> OpeningHours | None:
    """Return a room's opening hours, or None when it has none (always open).

    Cached per text: /voice asks on every call, and the text changes rarely.
    """
    windows = parse(hours)
    if not windows:
        return None
    return OpeningHours(zone(zone_name), windows)


def lines(hours: str | None) -> list[str]:
    """Return stored hours as their lines, for lists and tables."""
    return [line for line in (hours or "").splitlines() if line.strip()]


def _time_of_day(text: str, *, end: bool = False) -> timedelta:
    match = _TIME.fullmatch(text)
    if match is None:
        raise HoursError(f"bad time {text!r} (use 24-hour HH:MM)")
    hours, minutes = int(match[1]), int(match[2])
    if end and (hours, minutes) == (24, 0):
        return MIDNIGHT
    if hours > 23 or minutes > 59:
        raise HoursError(f"bad time {text!r} (use 24-hour HH:MM)")
    return timedelta(hours=hours, minutes=minutes)


# Meetings are not planned further ahead than this; later dates overflow time zone arithmetic.
LAST_YEAR = 2999


def _date(text: str) -> date:
    try:
        if not _DATE.fullmatch(text):
            raise ValueError
        day = date.fromisoformat(text)
    except ValueError:
        raise HoursError(f"bad date {text!r} (use YYYY-MM-DD)") from None
    if day.year > LAST_YEAR:
        raise HoursError(f"date too far ahead: {text!r} (the last year is {LAST_YEAR})")
    return day


def _weekdays(text: str) -> frozenset[int]:
    days: set[int] = set()
    for item in text.split(","):
        first, dash, last = item.partition("-")
        start = _day(first)
        if not dash:
            days.add(start)
            continue
        stop = _day(last)
        # A range may wrap past Sunday: fri-mon is fri, sat, sun, mon.
        days.update((start + n) % 7 for n in range((stop - start) % 7 + 1))
    return frozenset(days)


def _day(text: str) -> int:
    try:
        return DAYS.index(text)
    except ValueError:
        raise HoursError(f"unknown day {text!r} (use {' '.join(DAYS)})") from None


def _days_text(weekdays: frozenset[int]) -> str:
    """Return weekdays as runs: three days or more in a row as a range ("mon-fri,sun")."""
    runs: list[list[int]] = []
    for day in sorted(weekdays):
        if runs and runs[-1][-1] == day - 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    parts = []
    for run in runs:
        if len(run) >= 3:
            parts.append(f"{DAYS[run[0]]}-{DAYS[run[-1]]}")
        else:
            parts.extend(DAYS[day] for day in run)
    return ",".join(parts)


def _clock(since_midnight: timedelta) -> str:
    minutes = int(since_midnight.total_seconds()) // 60
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@lru_cache(maxsize=1)
def zone_names() -> frozenset[str]:
    """Return every IANA zone name (read once: the list is read from disk)."""
    # Not the system's own "localtime" (a link to whatever zone the server is set to): a room's
    # hours must not move with the server.
    return frozenset(available_timezones()) - NOT_ZONES


@lru_cache(maxsize=1)
def _zone_names_by_case() -> dict[str, str]:
    return {name.lower(): name for name in zone_names()}
