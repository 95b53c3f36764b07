"""Prompts in the room's language: the catalogues, the TwiML per room, and the codes' texts."""

from __future__ import annotations

import re
import shutil
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from ivr import languages, twiml
from ivr.i18n import load_catalogue
from ivr.languages import LANGUAGES, TRANSLATIONS, VOICES
from ivr.store import ParticipantRow, Role
from ivr.verification.builtin import code_text
from tests.conftest import (
    BLATHERS,
    LINE,
    STRANGER,
    call_params,
    said,
    signed_post,
    twiml_of,
    verbs,
)

ROOT = Path(__file__).resolve().parent.parent
BERLIN_LINE = "+18005550149"
PLACEHOLDER = re.compile(r"%\(\w+\)[sd]")
GERMAN = {
    "welcome": "Willkommen, Blathers. Bitte geben Sie den sechsstelligen Code ein, "
    "der an Ihr Gerät gesendet wurde.",
    "wrong": "Dieser Code ist nicht korrekt. Bitte versuchen Sie es noch einmal.",
    "again": "Ich habe keine Eingabe erhalten. Bitte geben Sie den sechsstelligen Code ein, "
    "der an Ihr Gerät gesendet wurde.",
    "correct": "Der Code ist korrekt. Sie werden jetzt mit der Konferenz verbunden.",
}
ENGLISH = {
    "welcome": "Welcome Blathers. Please enter the 6 digit code sent to your device.",
    "wrong": twiml.WRONG_CODE,
    "again": f"{twiml.NO_DIGITS} {twiml.ASK_FOR_CODE}",
    "correct": twiml.CORRECT,
}


def parsed(response) -> ET.Element:
    return ET.fromstring(response.to_xml())


def says(root: ET.Element) -> list[tuple[str, dict[str, str]]]:
    return [(element.text, element.attrib) for element in root.iter("Say")]


def spoken_in(language: str) -> dict[str, str]:
    return {"language": language, "voice": VOICES[language]}


# -- the catalogues ----------------------------------------------------------------------------


def extracted_messages() -> dict[str, str | None]:
    """Every msgid the code marks for the catalogues, with its plural msgid (None: none)."""
    found: dict[str, str | None] = {}
    keywords = {"N_": None, "Nn_": (1, 2)}
    method_map = [("**.py", "python")]
    for _, _, message, _, _ in extract_from_dir(ROOT / "ivr", method_map, keywords=keywords):
        singular, plural = message if isinstance(message, tuple) else (message, None)
        found[singular] = plural
    return found


def read_catalogue(path: Path):
    with path.open("rb") as po:
        return read_po(po)


def test_the_catalogues_are_the_shipped_languages():
    assert LANGUAGES == {
        "en-US": "English (US)",
        "de-DE": "Deutsch",
        "es-ES": "Español",
        "fr-FR": "Français",
    }
    assert set(VOICES) == set(LANGUAGES)


def test_the_template_holds_every_prompt_the_code_marks():
    template = read_catalogue(TRANSLATIONS / "messages.pot")
    in_template = {message.id[0] if message.pluralizable else message.id for message in template}
    code = extracted_messages()
    assert set(code) == in_template - {""}
    # The ones a caller hears most, for a reader of this test.
    assert {twiml.WRONG_CODE, twiml.LOCKED_OUT[0], twiml.OPENS_ON_WEEKDAY[0]} <= set(code)


@pytest.mark.parametrize("folder", ["de_DE", "es_ES", "fr_FR"])
def test_every_prompt_is_translated_with_its_placeholders_and_plural_forms(folder):
    catalogue = read_catalogue(TRANSLATIONS / folder / "LC_MESSAGES" / "messages.po")
    by_id = {m.id[0] if m.pluralizable else m.id: m for m in catalogue if m.id}
    for msgid, plural in extracted_messages().items():
        message = by_id.get(msgid)
        assert message is not None, f"{folder} lacks {msgid!r}"
        assert not message.fuzzy, f"{folder}: {msgid!r} is fuzzy"
        if plural is None:
            assert isinstance(message.string, str) and message.string, msgid
            forms = [message.string]
        else:
            assert message.pluralizable and message.id[1] == plural, msgid
            forms = list(message.string)
            assert len(forms) == catalogue.num_plurals, msgid
            assert all(forms), f"{folder}: a plural form of {msgid!r} is empty"
        wanted = sorted(PLACEHOLDER.findall(msgid))
        for form in forms:
            assert sorted(PLACEHOLDER.findall(form)) == wanted, (msgid, form)
    # Babel's own checks: python-format placeholders and plural counts.
    assert [problem for problem in catalogue.check()] == []


def test_a_new_language_is_one_po_file(tmp_path):
    source = TRANSLATIONS / "fr_FR" / "LC_MESSAGES" / "messages.po"
    target = tmp_path / "fr_CA" / "LC_MESSAGES"
    target.mkdir(parents=True)
    shutil.copy(source, target / "messages.po")

    assert languages._catalogue_languages(tmp_path) == ["fr-CA"]
    catalogue = load_catalogue(target / "messages.po")
    assert catalogue.gettext(twiml.CORRECT) == (
        "Le code est correct. Nous vous connectons à la conférence."
    )


# -- the builders, in every language --------------------------------------------------------------

BERLIN = ZoneInfo("Europe/Berlin")
# Thursday 26 November 2026, 8:00 in Berlin.
NOW = datetime(2026, 11, 26, 8, 0, tzinfo=BERLIN)
TODAY = datetime(2026, 11, 26, 15, 0, tzinfo=BERLIN)
TOMORROW = datetime(2026, 11, 27, 9, 55, tzinfo=BERLIN)
MONDAY = datetime(2026, 11, 30, 9, 55, tzinfo=BERLIN)
# A week ahead: a weekday alone would be ambiguous.
DECEMBER_3 = datetime(2026, 12, 3, 15, 0, tzinfo=BERLIN)
OPENINGS = {
    "en-US": [
        "This meeting room opens today at 3:00 p.m., Berlin time. Goodbye.",
        "This meeting room opens tomorrow at 9:55 a.m., Berlin time. Goodbye.",
        "This meeting room opens on Monday at 9:55 a.m., Berlin time. Goodbye.",
        "This meeting room opens on Thursday, December 3 at 3:00 p.m., Berlin time. Goodbye.",
    ],
    "de-DE": [
        "Dieser Konferenzraum öffnet heute um 15:00 Uhr, Ortszeit Berlin. Auf Wiederhören.",
        "Dieser Konferenzraum öffnet morgen um 9:55 Uhr, Ortszeit Berlin. Auf Wiederhören.",
        "Dieser Konferenzraum öffnet am Montag um 9:55 Uhr, Ortszeit Berlin. Auf Wiederhören.",
        "Dieser Konferenzraum öffnet am Donnerstag, den 3. Dezember, um 15:00 Uhr, "
        "Ortszeit Berlin. Auf Wiederhören.",
    ],
    "es-ES": [
        "Esta sala de reuniones abre hoy a las 15:00, hora de Berlín. Adiós.",
        "Esta sala de reuniones abre mañana a las 9:55, hora de Berlín. Adiós.",
        "Esta sala de reuniones abre el lunes a las 9:55, hora de Berlín. Adiós.",
        "Esta sala de reuniones abre el jueves 3 de diciembre a las 15:00, hora de Berlín. Adiós.",
    ],
    "fr-FR": [
        "Cette salle de réunion ouvre aujourd'hui à 15 h 00, heure de Berlin. Au revoir.",
        "Cette salle de réunion ouvre demain à 9 h 55, heure de Berlin. Au revoir.",
        "Cette salle de réunion ouvre lundi à 9 h 55, heure de Berlin. Au revoir.",
        "Cette salle de réunion ouvre le jeudi 3 décembre à 15 h 00, heure de Berlin. Au revoir.",
    ],
}


@pytest.mark.parametrize("language", OPENINGS)
@pytest.mark.parametrize(("case", "opens_at"), enumerate([TODAY, TOMORROW, MONDAY, DECEMBER_3]))
def test_room_closed_says_when_it_opens(language, case, opens_at):
    root = parsed(twiml.room_closed(opens_at, NOW, "Europe/Berlin", language))

    assert verbs(root) == ["Say", "Hangup"]
    assert says(root) == [(OPENINGS[language][case], spoken_in(language))]


@pytest.mark.parametrize(
    ("language", "sentence"),
    [
        ("en-US", "This meeting room is closed. Goodbye."),
        ("de-DE", "Dieser Konferenzraum ist geschlossen. Auf Wiederhören."),
        ("es-ES", "Esta sala de reuniones está cerrada. Adiós."),
        ("fr-FR", "Cette salle de réunion est fermée. Au revoir."),
    ],
)
def test_room_closed_for_good(language, sentence):
    root = parsed(twiml.room_closed(None, NOW, "Europe/Berlin", language))
    assert verbs(root) == ["Say", "Hangup"]
    assert says(root) == [(sentence, spoken_in(language))]


@pytest.mark.parametrize(
    ("zone", "language", "sentence"),
    [
        # The zone's city, in the caller's language.
        ("Europe/Vienna", "de-DE", "öffnet morgen um 9:55 Uhr, Ortszeit Wien."),
        ("America/New_York", "es-ES", "abre mañana a las 9:55, hora de Nueva York."),
        ("UTC", "en-US", "opens tomorrow at 9:55 a.m., UTC time."),
        ("UTC", "fr-FR", "ouvre demain à 9 h 55, heure UTC."),
        ("Etc/GMT+5", "en-US", "opens tomorrow at 9:55 a.m., UTC-5 time."),
    ],
)
def test_room_closed_names_the_zone(zone, language, sentence):
    tz = ZoneInfo(zone)
    opens_at = datetime(2026, 11, 27, 9, 55, tzinfo=tz)
    root = parsed(
        twiml.room_closed(opens_at, datetime(2026, 11, 26, 9, 0, tzinfo=tz), zone, language)
    )
    assert sentence in root[0].text


def test_spanish_says_a_la_una():
    opens_at = datetime(2026, 11, 27, 1, 30, tzinfo=BERLIN)
    root = parsed(twiml.room_closed(opens_at, NOW, "Europe/Berlin", "es-ES"))
    assert root[0].text == "Esta sala de reuniones abre mañana a la 1:30, hora de Berlín. Adiós."


@pytest.mark.parametrize(
    ("language", "joined", "left", "waiting"),
    [
        (
            "en-US",
            "Blathers has joined.",
            "Blathers has left.",
            ["Nobody else is here yet.", "1 person is waiting.", "2 people are waiting."],
        ),
        (
            "de-DE",
            "Blathers ist der Konferenz beigetreten.",
            "Blathers hat die Konferenz verlassen.",
            ["Außer Ihnen ist noch niemand da.", "1 Person wartet.", "2 Personen warten."],
        ),
        (
            "es-ES",
            "Blathers se ha unido a la conferencia.",
            "Blathers ha salido de la conferencia.",
            [
                "Todavía no hay nadie más.",
                "1 persona está esperando.",
                "2 personas están esperando.",
            ],
        ),
        (
            "fr-FR",
            "Blathers a rejoint la conférence.",
            "Blathers a quitté la conférence.",
            [
                "Il n'y a encore personne d'autre.",
                "1 personne attend.",
                "2 personnes attendent.",
            ],
        ),
    ],
)
def test_announcements(language, joined, left, waiting):
    voice = spoken_in(language)
    assert says(parsed(twiml.announce_joined("Blathers", language))) == [(joined, voice)]
    assert says(parsed(twiml.announce_left("Blathers", language))) == [(left, voice)]
    for count, sentence in enumerate(waiting):
        root = parsed(twiml.announce_waiting(count, language))
        assert verbs(root) == ["Say"]
        assert says(root) == [(sentence, voice)]


@pytest.mark.parametrize(
    ("language", "first", "again"),
    [
        ("en-US", "Your code is 0, 4, 2, 9, 1, 7.", "Again, your code is 0, 4, 2, 9, 1, 7."),
        (
            "de-DE",
            "Ihr Code lautet 0, 4, 2, 9, 1, 7.",
            "Noch einmal: Ihr Code lautet 0, 4, 2, 9, 1, 7.",
        ),
        ("es-ES", "Su código es 0, 4, 2, 9, 1, 7.", "Se lo repito: su código es 0, 4, 2, 9, 1, 7."),
        (
            "fr-FR",
            "Votre code est 0, 4, 2, 9, 1, 7.",
            "Je répète, votre code est 0, 4, 2, 9, 1, 7.",
        ),
    ],
)
def test_read_code_aloud_digit_by_digit(language, first, again):
    root = parsed(twiml.read_code_aloud("042917", language))
    assert verbs(root) == ["Say", "Pause", "Say"]
    assert says(root) == [(first, spoken_in(language)), (again, spoken_in(language))]


@pytest.mark.parametrize(
    ("language", "one", "many"),
    [
        ("en-US", "locked for 1 minute.", "locked for 10 minutes."),
        ("de-DE", "für 1 Minute gesperrt.", "für 10 Minuten gesperrt."),
        ("es-ES", "durante 1 minuto.", "durante 10 minutos."),
        ("fr-FR", "pendant 1 minute.", "pendant 10 minutes."),
    ],
)
def test_locked_out_minutes_take_plural_forms(language, one, many):
    assert one in parsed(twiml.locked_out(1, language))[0].text
    assert many in parsed(twiml.locked_out(10, language))[0].text


def test_the_line_code_text_is_in_the_rooms_language():
    assert code_text("401991") == "Your code is 401991"
    assert code_text("401991", language="de-DE") == "Ihr Code lautet 401991"
    assert code_text("401991", language="es-ES") == "Su código es 401991"
    assert code_text("401991", language="fr-FR") == "Votre code est 401991"
    # The console's sign-in texts are for admins and stay English.
    assert code_text("401991", "sign-in", "de-DE") == "Your admin console sign-in code is 401991"


# -- the webhooks, per room -----------------------------------------------------------------------


@pytest.fixture
def berlin(app):
    """A German room on its own line, with Blathers on its list too."""
    store = app.extensions["ivr"].store
    room = store.create_room("berlin", BERLIN_LINE, None)
    store.update_meeting(room.id, language="de-DE", time_zone="Europe/Berlin")
    store.add_participant(ParticipantRow(BLATHERS, "Blathers", Role.PARTICIPANT, room="berlin"))
    return app


def post(client, path, caller, **params):
    return twiml_of(signed_post(client, path, call_params(caller, **params)))


@pytest.mark.parametrize(
    ("line", "language", "words", "lang_arg"),
    [(LINE, "en-US", ENGLISH, ""), (BERLIN_LINE, "de-DE", GERMAN, "&lang=de-DE")],
)
def test_each_room_speaks_its_language(
    berlin, client, fake_twilio, line, language, words, lang_arg
):
    welcome = post(client, "/voice", BLATHERS, to=line)
    berlin.extensions["ivr"].sender.wait_idle()

    assert verbs(welcome) == ["Gather", "Redirect"]
    assert welcome.find("Gather").attrib == {
        "action": "/gather",
        "method": "POST",
        "numDigits": "6",
        "timeout": "10",
        "language": language,
    }
    assert says(welcome) == [(words["welcome"], spoken_in(language))]
    # The re-prompt does not look the caller up: the language rides in our own URL.
    no_input_url = welcome.find("Redirect").text
    assert no_input_url == f"/gather?reprompt=1{lang_arg}"

    again = post(client, no_input_url, BLATHERS, to=line)
    assert again.find("Gather").attrib["language"] == language
    assert says(again) == [(words["again"], spoken_in(language))]
    assert again.find("Redirect").text == f"/gather?reprompt=2{lang_arg}"

    code = fake_twilio.code_for(BLATHERS)
    wrong = post(client, "/gather", BLATHERS, to=line, Digits=f"{(int(code) + 1) % 10**6:06d}")
    assert wrong.find("Gather").attrib["language"] == language
    assert says(wrong) == [(words["wrong"], spoken_in(language))]

    joined = post(client, "/gather", BLATHERS, to=line, Digits=code)
    assert verbs(joined) == ["Say", "Dial"]
    assert says(joined) == [(words["correct"], spoken_in(language))]
    assert joined.find("Dial/Conference").text == ("main" if line == LINE else "berlin")


def test_the_code_goes_out_in_the_rooms_language(berlin, client, fake_twilio, provider):
    post(client, "/voice", BLATHERS, to=BERLIN_LINE)
    berlin.extensions["ivr"].sender.wait_idle()

    if provider == "verify":
        [send] = fake_twilio.sent("verify-send")
        assert send == {"To": BLATHERS, "Channel": "sms", "Locale": "de"}
    else:
        [message] = fake_twilio.sent("message")
        code = fake_twilio.code_for(BLATHERS)
        assert message["Body"] == f"Ihr Code lautet {code}"


def test_a_stranger_is_refused_in_the_rooms_language(berlin, client, fake_twilio):
    root = post(client, "/voice", STRANGER, to=BERLIN_LINE)
    assert verbs(root) == ["Say", "Hangup"]
    assert says(root) == [
        ("Die Nummer, von der Sie anrufen, ist uns leider nicht bekannt.", spoken_in("de-DE"))
    ]
    assert fake_twilio.requests == []


def test_a_withheld_number_hears_english_before_the_room_is_known(berlin, client, fake_twilio):
    root = post(client, "/voice", "Anonymous", to=BERLIN_LINE)
    assert said(root) == [twiml.WITHHELD]
    assert root.find("Say").attrib == spoken_in("en-US")


@pytest.mark.parametrize("lang", ["xx-XX", "de", "de_DE", ""])
def test_a_reprompt_language_that_is_not_ours_speaks_english(berlin, client, lang):
    root = post(client, f"/gather?reprompt=1&lang={lang}", BLATHERS, to=BERLIN_LINE)
    assert root.find("Gather").attrib["language"] == "en-US"
    assert said(root) == [f"{twiml.NO_DIGITS} {twiml.ASK_FOR_CODE}"]
    assert root.find("Redirect").text == "/gather?reprompt=2"
