"""Phone numbers: E.164 normalisation and the caller IDs Twilio uses for a withheld number."""

from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers

# Every webhook parses its From and To: the line's own number every time, and each caller's
# twice or more in a call. Parsing is ~25 us of CPU; a cache of the last numbers seen makes
# most of them a look-up. Long text is not kept (no number is that long).
PARSED_NUMBERS = 4096
LONGEST_CACHED = 40

# How Twilio spells a caller's number in From: E.164, a plus and up to 15 digits.
E164_SPELLING = re.compile(r"\+[1-9][0-9]{6,14}")

# What Twilio puts in From when the caller hides their number: "+266696687" spells ANONYMOUS on
# a keypad; carriers also pass words through.
WITHHELD_CALLER_IDS = {
    "",
    "+266696687",
    "266696687",
    "anonymous",
    "private",
    "restricted",
    "unknown",
    "unavailable",
    "blocked",
}


def parse_phone(raw: str) -> str | None:
    """Return `raw` as an E.164 number, or None if it is not a valid international number."""
    if len(raw) > LONGEST_CACHED:
        return _parse_phone(raw)
    return _cached_parse_phone(raw)


def _parse_phone(raw: str) -> str | None:
    text = raw.strip()
    if not text.startswith("+"):
        return None
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


_cached_parse_phone = lru_cache(maxsize=PARSED_NUMBERS)(_parse_phone)


def is_withheld(raw: str | None) -> bool:
    """Return whether a caller ID says the number was hidden."""
    return (raw or "").strip().lower() in WITHHELD_CALLER_IDS


def caller_phone(raw: str | None) -> str | None:
    """Return the caller's E.164 number, or None for withheld, client:, sip: or invalid IDs."""
    if is_withheld(raw):
        return None
    text = (raw or "").strip()
    if text.lower().startswith(("client:", "sip:")):
        return None
    return parse_phone(text)


def e164_spelled(raw: str | None) -> str | None:
    """Return `raw` if it is spelled as an E.164 number and is not a withheld caller ID.

    Unchecked: the number may not exist. Good for looking a caller up on the list, whose
    numbers were all checked when they were added; `caller_phone` says what it really is.
    """
    if raw is None or not E164_SPELLING.fullmatch(raw) or is_withheld(raw):
        return None
    return raw


def international(phone: str) -> str:
    """Format an E.164 number for people: +1 800-555-9876."""
    number = phonenumbers.parse(phone, None)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
