"""IANA time zones, as people choose them and as times are shown in them."""

from __future__ import annotations

from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

UTC_NAME = "UTC"


def zone(name: str | None) -> ZoneInfo:
    """Return the zone called `name`; UTC for None or a name this machine does not know."""
    try:
        return ZoneInfo(name or UTC_NAME)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(UTC_NAME)


def is_zone(name: str) -> bool:
    return name in _names()


@cache
def choices() -> list[tuple[str, str]]:
    """Every zone, UTC first, then by name ("Europe/Berlin"), for a select."""
    return [(UTC_NAME, UTC_NAME)] + [(name, name) for name in sorted(_names()) if name != UTC_NAME]


@cache
def _names() -> frozenset[str]:
    # Legacy aliases ("US/Pacific", "CET") are left out: people pick a place.
    return frozenset(
        name
        for name in available_timezones()
        if "/" in name and not name.startswith(("Etc/", "SystemV/", "US/", "posix/", "right/"))
    ) | {UTC_NAME}
