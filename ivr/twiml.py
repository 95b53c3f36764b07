"""Pure TwiML builders: every word the caller hears, and no request, database or clock.

What the caller hears lives in the message catalogues (ivr/translations): the constants below
are their English msgids, translated into the room's language where they are spoken. Every
builder takes that language (a key of ivr.languages.LANGUAGES) and sets it, with its voice, on
each <Say> and <Gather>.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime
from functools import lru_cache

from babel import Locale
from babel.dates import format_datetime, get_timezone_location
from twilio.twiml import TwiML
from twilio.twiml.voice_response import Dial, Gather, VoiceResponse

from ivr.i18n import N_, Nn_, translations
from ivr.languages import DEFAULT_LANGUAGE, voice_for
from ivr.store import CodeBy, Role

CODE_LENGTH = 6
GATHER_TIMEOUT_SECONDS = 10
# Re-prompts after a Gather that heard nothing, before the line says goodbye.
MAX_REPROMPTS = 3
CONFERENCE_EVENTS = "start end join leave mute hold"
MAX_LABEL = 128
XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'
# Stands in for the caller's own words in an answer serialized once per shape (`_shaped`): a
# private-use character, in no catalogue; an answer whose room or URL holds it is built whole.
_SLOT = "\ue000"
# Answer shapes kept per process: per room, language and way of sending codes, a few each.
_SHAPES = 512

WITHHELD = N_(
    "Sorry, this line does not accept calls from withheld numbers. "
    "Please call again with your caller ID shown. Goodbye."
)
INVALID_NUMBER = N_("Sorry, this line cannot accept calls from your number. Goodbye.")
UNKNOWN_NUMBER = N_("Sorry, I don't recognize the number you're calling from.")
WELCOME = N_("Welcome %(name)s.")
ASK_FOR_CODE = N_("Please enter the 6 digit code sent to your device.")
ASK_FOR_APP_CODE = N_("Please enter the 6 digit code from your authenticator app.")
ASK_FOR_WHATSAPP_CODE = N_("Please enter the 6 digit code we sent you on WhatsApp.")
# What a caller is asked for, by how their code reaches them.
ASK_FOR = {
    CodeBy.SMS: ASK_FOR_CODE,
    CodeBy.APP: ASK_FOR_APP_CODE,
    CodeBy.WHATSAPP: ASK_FOR_WHATSAPP_CODE,
}
NO_DIGITS = N_("I didn't receive any digits.")
NO_INPUT_GOODBYE = N_("I didn't receive a code. Goodbye.")
WRONG_CODE = N_("That code was incorrect. Please try again.")
USED_CODE = N_(
    "That code has been used already. Please wait for your app to show a new code, then enter it."
)
EXPIRED_CODE = N_("That code has expired. Please call again for a new code. Goodbye.")
SEND_LIMIT = N_(
    "Too many codes have been sent to this number. Please try again in an hour. Goodbye."
)
PROVIDER_FAULT = N_(
    "Sorry, we can't check codes right now. Please try again in a few minutes. Goodbye."
)
APPLICATION_FAULT = N_("Sorry, something went wrong on our side. Please try again later. Goodbye.")
CORRECT = N_("That was correct. Joining conference.")
LOCKED_OUT = Nn_(
    "Too many incorrect codes. This number is locked for %(num)d minute. "
    "Please try again later. Goodbye.",
    "Too many incorrect codes. This number is locked for %(num)d minutes. "
    "Please try again later. Goodbye.",
)
YOUR_CODE = N_("Your code is %(digits)s.")
YOUR_CODE_AGAIN = N_("Again, your code is %(digits)s.")

ROOM_IS_CLOSED = N_("This meeting room is closed. Goodbye.")
# Translators: this and the next three sentences take their plural form by the hour of the day
# (0-23), for languages whose words around a time change with it (Spanish: "a la 1:30", "a las
# 9:55"). %(place)s is "Berlin time" or "UTC time" below.
OPENS_TODAY = Nn_(
    "This meeting room opens today at %(time)s, %(place)s. Goodbye.",
    "This meeting room opens today at %(time)s, %(place)s. Goodbye.",
)
OPENS_TOMORROW = Nn_(
    "This meeting room opens tomorrow at %(time)s, %(place)s. Goodbye.",
    "This meeting room opens tomorrow at %(time)s, %(place)s. Goodbye.",
)
OPENS_ON_WEEKDAY = Nn_(
    "This meeting room opens on %(weekday)s at %(time)s, %(place)s. Goodbye.",
    "This meeting room opens on %(weekday)s at %(time)s, %(place)s. Goodbye.",
)
OPENS_ON_DATE = Nn_(
    "This meeting room opens on %(date)s at %(time)s, %(place)s. Goodbye.",
    "This meeting room opens on %(date)s at %(time)s, %(place)s. Goodbye.",
)
# Translators: a Unicode CLDR time pattern for an opening time as a person says it
# ("a" is the day period, spoken as the next two messages).
TIME_PATTERN = N_("h:mm a")
BEFORE_NOON = N_("a.m.")
AFTER_NOON = N_("p.m.")
# Translators: a Unicode CLDR date pattern for a date up to a year ahead, with its weekday.
DATE_PATTERN = N_("EEEE, MMMM d")
CITY_TIME = N_("%(city)s time")
UTC_TIME = N_("UTC time")
# Further ahead than this, a weekday alone would be ambiguous: say the date.
WEEKDAY_DAYS = 6
_QUOTED = re.compile(r"('[^']*')")

JOINED = N_("%(name)s has joined.")
LEFT = N_("%(name)s has left.")
NOBODY_WAITING = N_("Nobody else is here yet.")
WAITING = Nn_("%(num)d person is waiting.", "%(num)d people are waiting.")


def _say(parent: VoiceResponse | Gather, text: str, language: str) -> None:
    parent.say(text, voice=voice_for(language), language=language)


def goodbye(message: str, language: str = DEFAULT_LANGUAGE) -> VoiceResponse:
    """Say `message` (a msgid) in `language` and hang up."""
    return _goodbye(translations(language).gettext(message), language)


def _goodbye(text: str, language: str) -> VoiceResponse:
    response = VoiceResponse()
    _say(response, text, language)
    response.hangup()
    return response


def locked_out(minutes_left: int, language: str = DEFAULT_LANGUAGE) -> VoiceResponse:
    """Tell a locked-out caller how long the lockout lasts, and hang up."""
    text = translations(language).ngettext(*LOCKED_OUT, minutes_left) % {"num": minutes_left}
    return _goodbye(text, language)


def ask_for_code(
    message: str, gather_url: str, no_input_url: str, language: str = DEFAULT_LANGUAGE
) -> VoiceResponse:
    """Say `message` (a msgid) inside a six-digit Gather; with no digits, go to `no_input_url`."""
    return _gather(translations(language).gettext(message), gather_url, no_input_url, language)


def welcome(
    name: str,
    gather_url: str,
    no_input_url: str,
    code_by: CodeBy = CodeBy.SMS,
    language: str = DEFAULT_LANGUAGE,
) -> VoiceResponse:
    """Greet a listed caller by name and ask for the code, saying where it comes from."""
    _ = translations(language).gettext
    text = f"{_(WELCOME) % {'name': name}} {_(ASK_FOR[code_by])}"
    return _gather(text, gather_url, no_input_url, language)


def welcome_xml(
    name: str,
    gather_url: str,
    no_input_url: str,
    code_by: CodeBy = CodeBy.SMS,
    language: str = DEFAULT_LANGUAGE,
) -> str:
    """`to_xml(welcome(...))`, serialized once per prompt and language with the name put in.

    Every caller of a room hears the same welcome but for their name: building and serializing
    the TwiML of the welcome and the join took about 180 us of a call's 3.5 ms of CPU in one
    process, where putting the words into kept text takes a few.
    """
    if _SLOT in gather_url + no_input_url:
        return to_xml(welcome(name, gather_url, no_input_url, code_by, language))
    parts = _shaped(_welcome_shape, gather_url, no_input_url, code_by, language)
    return ET._escape_cdata(name).join(parts)


def _welcome_shape(gather_url: str, no_input_url: str, code_by: CodeBy, language: str) -> str:
    return to_xml(welcome(_SLOT, gather_url, no_input_url, code_by, language))


def ask_again(
    gather_url: str,
    no_input_url: str,
    code_by: CodeBy = CodeBy.SMS,
    language: str = DEFAULT_LANGUAGE,
) -> VoiceResponse:
    """Ask again for the code after a Gather that heard nothing."""
    _ = translations(language).gettext
    return _gather(f"{_(NO_DIGITS)} {_(ASK_FOR[code_by])}", gather_url, no_input_url, language)


def _gather(text: str, gather_url: str, no_input_url: str, language: str) -> VoiceResponse:
    response = VoiceResponse()
    gather = Gather(
        num_digits=CODE_LENGTH,
        action=gather_url,
        method="POST",
        timeout=GATHER_TIMEOUT_SECONDS,
        language=language,
    )
    _say(gather, text, language)
    response.append(gather)
    response.redirect(no_input_url, method="POST")
    return response


def join_conference(
    room: str,
    label: str,
    role: Role,
    events_url: str,
    hold_music_url: str | None = None,
    language: str = DEFAULT_LANGUAGE,
) -> VoiceResponse:
    """Put the caller into the room's conference; a moderator starts and ends it."""
    is_moderator = role == Role.MODERATOR
    response = VoiceResponse()
    _say(response, translations(language).gettext(CORRECT), language)
    dial = Dial()
    dial.conference(
        room,
        start_conference_on_enter=is_moderator,
        end_conference_on_exit=is_moderator,
        participant_label=label,
        status_callback=events_url,
        status_callback_event=CONFERENCE_EVENTS,
        status_callback_method="POST",
        wait_url=hold_music_url,
        # Hold music is usually a static file, and static hosts refuse Twilio's default POST.
        wait_method="GET" if hold_music_url else None,
    )
    response.append(dial)
    return response


def join_conference_xml(
    room: str,
    label: str,
    role: Role,
    events_url: str,
    hold_music_url: str | None = None,
    language: str = DEFAULT_LANGUAGE,
) -> str:
    """`to_xml(join_conference(...))`, serialized once per room, role and language with the
    caller's label put in (see `welcome_xml`)."""
    if _SLOT in room + events_url + (hold_music_url or ""):
        return to_xml(join_conference(room, label, role, events_url, hold_music_url, language))
    parts = _shaped(_join_shape, room, role, events_url, hold_music_url, language)
    return ET._escape_attrib(label).join(parts)


def _join_shape(
    room: str, role: Role, events_url: str, hold_music_url: str | None, language: str
) -> str:
    return to_xml(join_conference(room, _SLOT, role, events_url, hold_music_url, language))


@lru_cache(maxsize=_SHAPES)
def _shaped(shape, *args) -> tuple[str, ...]:
    """Return the answer `shape(*args)` makes around _SLOT, cut where the caller's words go.

    Joined with those words escaped as ElementTree escapes them there (its own functions for
    text and for an attribute, private to it but unchanged for years; tests/test_twiml.py
    checks the result against twilio's own `to_xml`), the answer is the text the whole answer
    built with them serializes to: XML escaping replaces character by character, whatever
    surrounds them.
    """
    return tuple(shape(*args).split(_SLOT))


def participant_label(name: str, phone: str, taken: set[str]) -> str:
    """Return a label Twilio accepts: no "/", at most 128 characters, unique in the conference."""
    label = name.replace("/", "-")[:MAX_LABEL]
    if label in taken:
        # Two Alexes, or a redial while the old call leg is still up.
        suffix = f" ({phone[-4:]})"
        label = label[: MAX_LABEL - len(suffix)] + suffix
    return label


def read_code_aloud(code: str, language: str = DEFAULT_LANGUAGE) -> VoiceResponse:
    """Read a code digit by digit, twice, for a code delivered by a voice call."""
    _ = translations(language).gettext
    # One digit at a time: "4, 0, 1", never "four hundred and one".
    digits = {"digits": ", ".join(code)}
    response = VoiceResponse()
    _say(response, _(YOUR_CODE) % digits, language)
    response.pause(length=1)
    _say(response, _(YOUR_CODE_AGAIN) % digits, language)
    return response


def room_closed(
    opens_at: datetime | None, now: datetime, zone_name: str, language: str = DEFAULT_LANGUAGE
) -> VoiceResponse:
    """Tell a caller when the room next opens (None: not again), in its zone, and hang up.

    `opens_at` and `now` are aware datetimes in the room's zone `zone_name`.
    """
    catalogue = translations(language)
    if opens_at is None:
        return _goodbye(catalogue.gettext(ROOM_IS_CLOSED), language)
    locale = Locale.parse(language, sep="-")
    values = {
        "time": _clock_time(opens_at, language),
        "place": _zone_place(opens_at, zone_name, language),
        "weekday": format_datetime(opens_at, "EEEE", locale=locale),
        "date": format_datetime(opens_at, catalogue.gettext(DATE_PATTERN), locale=locale),
    }
    days = (opens_at.date() - now.date()).days
    if days == 0:
        sentence = OPENS_TODAY
    elif days == 1:
        sentence = OPENS_TOMORROW
    elif 1 < days <= WEEKDAY_DAYS:
        sentence = OPENS_ON_WEEKDAY
    else:
        sentence = OPENS_ON_DATE
    return _goodbye(catalogue.ngettext(*sentence, opens_at.hour) % values, language)


def _clock_time(at: datetime, language: str) -> str:
    """Return `at`'s time of day as a person says it ("3:00 p.m.", "15:00 Uhr", "15 h 00")."""
    catalogue = translations(language)
    pattern = catalogue.gettext(TIME_PATTERN)
    # CLDR's day period is "PM" in American English; a person says "p.m.".
    period = catalogue.gettext(BEFORE_NOON if at.hour < 12 else AFTER_NOON).replace("'", "''")
    pattern = "".join(
        part if part.startswith("'") else part.replace("a", f"'{period}'")
        for part in _QUOTED.split(pattern)
    )
    return format_datetime(at, pattern, locale=Locale.parse(language, sep="-"))


def _zone_place(at: datetime, zone_name: str, language: str) -> str:
    """Return whose clock a time is on: "Berlin time", localised; UTC zones say "UTC time"."""
    catalogue = translations(language)
    offset = at.utcoffset()
    # Zones named after a place have a city ("Europe/Vienna"); "UTC", "GMT", "Etc/..." have not.
    if "/" not in zone_name or zone_name.startswith("Etc/"):
        if not offset:
            return catalogue.gettext(UTC_TIME)
        # A fixed offset with no city (Etc/GMT+5 is UTC-5): name the offset.
        hours, rest = divmod(int(offset.total_seconds()) // 60, 60)
        city = f"UTC{hours:+d}" + (f":{rest:02d}" if rest else "")
    else:
        city = get_timezone_location(zone_name, Locale.parse(language, sep="-"), return_city=True)
        # Babel knows no city for some old names ("America/Argentina/Buenos_Aires") and gives
        # back the path: the place is its last part.
        city = city.rpartition("/")[2]
    return catalogue.gettext(CITY_TIME) % {"city": city}


def announce_joined(name: str, language: str = DEFAULT_LANGUAGE) -> VoiceResponse:
    """Tell the conference who joined it."""
    return _announce(translations(language).gettext(JOINED) % {"name": name}, language)


def announce_left(name: str, language: str = DEFAULT_LANGUAGE) -> VoiceResponse:
    """Tell the conference who left it."""
    return _announce(translations(language).gettext(LEFT) % {"name": name}, language)


def announce_waiting(count: int, language: str = DEFAULT_LANGUAGE) -> VoiceResponse:
    """Tell a moderator joining how many others are waiting in the conference."""
    catalogue = translations(language)
    if count == 0:
        return _announce(catalogue.gettext(NOBODY_WAITING), language)
    return _announce(catalogue.ngettext(*WAITING, count) % {"num": count}, language)


def _announce(text: str, language: str) -> VoiceResponse:
    # Twilio plays an announcement's <Say> and <Play> only: nothing else goes in.
    response = VoiceResponse()
    _say(response, text, language)
    return response


def empty() -> VoiceResponse:
    return VoiceResponse()


def to_xml(response: TwiML) -> str:
    """Return `response` as the text its own `to_xml()` returns, made in less than half the CPU.

    twiml's `to_xml` has ElementTree encode to UTF-8 bytes, through a text wrapper that every
    tag, attribute and text passes, then decodes them again; serialized to a str, the same
    tree gives the same text. (But for a lone surrogate, which no database the line uses can
    hold: twiml writes it as a character reference XML does not allow, this leaves it in
    the text, which cannot be sent - the caller then hears the line's apology.)
    """
    return XML_DECLARATION + ET.tostring(response.xml(), encoding="unicode")
