"""The zone each admin reads the console's times in (rooms' zones are ivr.hours')."""

from __future__ import annotations

from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ivr.hours import zone_names

UTC_NAME = "UTC"


def zone(name: str | None) -> ZoneInfo:
    """Return the zone called `name`; UTC for None or a name this machine does not know."""
    try:
        return ZoneInfo(name or UTC_NAME)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(UTC_NAME)


@cache
def choices() -> list[tuple[str, str]]:
    """Every place's zone, UTC first, then by name ("Europe/Berlin"), for a select.

    Legacy aliases ("US/Pacific", "CET", "Etc/GMT+5") are left out: people pick a place.
    """
    places = sorted(
        name
        for name in zone_names()
        if "/" in name and not name.startswith(("Etc/", "SystemV/", "US/", "posix/", "right/"))
    )
    return [(UTC_NAME, UTC_NAME)] + [(name, name) for name in places]
