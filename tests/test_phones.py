"""Caller IDs as Twilio delivers them."""

from __future__ import annotations

import pytest

from ivr.phones import caller_phone, e164_spelled, international, is_withheld, parse_phone


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+18005559876", "+18005559876"),
        (" +1 (800) 555-9876 ", "+18005559876"),
        ("+442071838750", "+442071838750"),
        ("18005559876", None),
        ("+1555", None),
        ("+1800555987612345", None),
        ("hello", None),
        ("", None),
    ],
)
def test_parse_phone(raw, expected):
    assert parse_phone(raw) == expected


@pytest.mark.parametrize(
    "raw", ["+266696687", "Anonymous", "ANONYMOUS", "Restricted", "Unknown", "private", "", None]
)
def test_withheld_caller_ids(raw):
    assert is_withheld(raw)
    assert caller_phone(raw) is None


@pytest.mark.parametrize("raw", ["client:alice", "sip:bob@example.com", "+1555", "12"])
def test_unusable_caller_ids(raw):
    assert not is_withheld(raw)
    assert caller_phone(raw) is None


def test_international_format():
    assert international("+18005559876") == "+1 800-555-9876"


@pytest.mark.parametrize(
    ("raw", "spelled"),
    [
        ("+18005559876", "+18005559876"),
        ("+4402079460000", "+4402079460000"),  # spelled so, though parsing drops the 0
        ("+15550100000", "+15550100000"),  # spelled so, though no such number exists
        ("+266696687", None),  # Twilio's withheld caller ID
        (" +18005559876", None),
        ("+08005559876", None),
        ("+1555", None),
        ("18005559876", None),
        ("client:alice", None),
        ("", None),
        (None, None),
    ],
)
def test_e164_spelled_passes_what_is_spelled_as_a_number_and_not_withheld(raw, spelled):
    assert e164_spelled(raw) == spelled
