"""Pure TwiML builders, checked apart from any request."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr import twiml
from ivr.languages import LANGUAGES
from ivr.store import CodeBy, Role


def parsed(response) -> ET.Element:
    return ET.fromstring(response.to_xml())


@pytest.mark.parametrize(
    ("role", "starts_and_ends"), [(Role.MODERATOR, "true"), (Role.PARTICIPANT, "false")]
)
def test_join_conference(role, starts_and_ends):
    root = parsed(
        twiml.join_conference(
            "board",
            "Mabel",
            role,
            "https://line.example.com/conference/events",
            "https://line.example.com/hold.mp3",
        )
    )
    assert [child.tag for child in root] == ["Say", "Dial"]
    conference = root.find("Dial/Conference")
    assert conference.text == "board"
    assert conference.attrib == {
        "startConferenceOnEnter": starts_and_ends,
        "endConferenceOnExit": starts_and_ends,
        "participantLabel": "Mabel",
        "statusCallback": "https://line.example.com/conference/events",
        "statusCallbackEvent": "start end join leave mute hold",
        "statusCallbackMethod": "POST",
        "waitUrl": "https://line.example.com/hold.mp3",
        "waitMethod": "GET",
    }


def test_read_code_aloud_reads_each_digit_twice():
    root = parsed(twiml.read_code_aloud("042917"))
    assert [child.tag for child in root] == ["Say", "Pause", "Say"]
    assert root[0].text == "Your code is 0, 4, 2, 9, 1, 7."
    assert root[2].text == "Again, your code is 0, 4, 2, 9, 1, 7."


@pytest.mark.parametrize(("minutes", "words"), [(1, "1 minute."), (10, "10 minutes.")])
def test_locked_out_says_the_time_left(minutes, words):
    root = parsed(twiml.locked_out(minutes))
    assert [child.tag for child in root] == ["Say", "Hangup"]
    assert f"locked for {words}" in root[0].text


@pytest.mark.parametrize(
    ("name", "taken", "label"),
    [
        ("Blathers", set(), "Blathers"),
        ("A/V desk", set(), "A-V desk"),
        ("Blathers", {"Blathers"}, "Blathers (9876)"),
        ("x" * 200, set(), "x" * 128),
        ("x" * 200, {"x" * 128}, "x" * 121 + " (9876)"),
    ],
)
def test_participant_labels_twilio_accepts(name, taken, label):
    assert twiml.participant_label(name, "+18005559876", taken) == label


# Names, labels and rooms: any text a database holds (no lone surrogates, see twiml.to_xml).
xml_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@given(name=xml_text, label=xml_text, room=xml_text)
def test_to_xml_gives_the_text_twilios_own_to_xml_gives(name, label, room):
    answers = [
        twiml.welcome(name, "/gather", "/gather?reprompt=1&by=app", CodeBy.APP),
        twiml.join_conference(
            room, label, Role.MODERATOR, "https://line.example.com/conference/events", None
        ),
        twiml.goodbye(twiml.UNKNOWN_NUMBER),
        twiml.empty(),
    ]
    for answer in answers:
        assert twiml.to_xml(answer) == answer.to_xml()


@given(name=xml_text, label=xml_text, room=xml_text, language=st.sampled_from(sorted(LANGUAGES)))
def test_answers_serialized_once_per_shape_are_the_answers_themselves(name, label, room, language):
    """The welcome and the join, kept per shape with the caller's words put in, are the text
    twilio's own to_xml gives for the whole answer, whatever the words (markup, quotes, tabs)."""
    for by in CodeBy:
        urls = ("/line/gather", f"/line/gather?reprompt=1&by={by.value}&lang={language}")
        assert twiml.welcome_xml(name, *urls, by, language) == (
            twiml.welcome(name, *urls, by, language).to_xml()
        )
    for role, music in ((Role.MODERATOR, None), (Role.PARTICIPANT, "https://x.example/a&b.mp3")):
        events = "https://line.example.com/conference/events"
        assert twiml.join_conference_xml(room, label, role, events, music, language) == (
            twiml.join_conference(room, label, role, events, music, language).to_xml()
        )


def test_an_answer_whose_shape_holds_the_slot_character_is_built_whole():
    odd = "/gather\ue000"
    assert twiml.welcome_xml("Ann", odd, odd) == twiml.welcome("Ann", odd, odd).to_xml()
    room = "room\ue000"
    assert twiml.join_conference_xml(room, "Ann", Role.PARTICIPANT, "https://x/e") == (
        twiml.join_conference(room, "Ann", Role.PARTICIPANT, "https://x/e").to_xml()
    )
