"""Pure TwiML builders: every word the caller hears, and no request, database or clock."""

from __future__ import annotations

from datetime import datetime

from twilio.twiml.voice_response import Dial, Gather, VoiceResponse

from ivr.store import CodeBy, Role

CODE_LENGTH = 6
GATHER_TIMEOUT_SECONDS = 10
# Re-prompts after a Gather that heard nothing, before the line says goodbye.
MAX_REPROMPTS = 3
CONFERENCE_EVENTS = "start end join leave mute hold"
MAX_LABEL = 128

WITHHELD = (
    "Sorry, this line does not accept calls from withheld numbers. "
    "Please call again with your caller ID shown. Goodbye."
)
INVALID_NUMBER = "Sorry, this line cannot accept calls from your number. Goodbye."
UNKNOWN_NUMBER = "Sorry, I don't recognize the number you're calling from."
ASK_FOR_CODE = "Please enter the 6 digit code sent to your device."
ASK_FOR_APP_CODE = "Please enter the 6 digit code from your authenticator app."
ASK_FOR_WHATSAPP_CODE = "Please enter the 6 digit code we sent you on WhatsApp."
# What a caller is asked for, by how their code reaches them.
ASK_FOR = {
    CodeBy.SMS: ASK_FOR_CODE,
    CodeBy.APP: ASK_FOR_APP_CODE,
    CodeBy.WHATSAPP: ASK_FOR_WHATSAPP_CODE,
}
NO_DIGITS = "I didn't receive any digits."
NO_INPUT_GOODBYE = "I didn't receive a code. Goodbye."
WRONG_CODE = "That code was incorrect. Please try again."
USED_CODE = (
    "That code has been used already. Please wait for your app to show a new code, then enter it."
)
EXPIRED_CODE = "That code has expired. Please call again for a new code. Goodbye."
SEND_LIMIT = "Too many codes have been sent to this number. Please try again in an hour. Goodbye."
PROVIDER_FAULT = (
    "Sorry, we can't check codes right now. Please try again in a few minutes. Goodbye."
)
APPLICATION_FAULT = "Sorry, something went wrong on our side. Please try again later. Goodbye."
CORRECT = "That was correct. Joining conference."
ROOM_CLOSED = "This meeting room is closed. Goodbye."
# Openings this many days ahead or fewer are named by weekday alone ("on Monday").
DAYS_NAMED_BY_WEEKDAY = 6
# Not strftime's %A and %B: those follow the server's locale, and this sentence is English.
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
UTC_NAMES = {"UTC", "UCT", "Universal", "Zulu", "GMT", "Greenwich"}


def goodbye(message: str) -> VoiceResponse:
    """Say `message` and hang up."""
    response = VoiceResponse()
    response.say(message)
    response.hangup()
    return response


def locked_out(minutes_left: int) -> VoiceResponse:
    """Tell a locked-out caller how long the lockout lasts, and hang up."""
    minutes = "1 minute" if minutes_left == 1 else f"{minutes_left} minutes"
    return goodbye(
        "Too many incorrect codes. This number is locked for "
        f"{minutes}. Please try again later. Goodbye."
    )


def room_closed(
    opens_at: datetime | None, now: datetime, zone_name: str, language: str = "en-US"
) -> VoiceResponse:
    """Tell a caller outside the room's hours when it next opens, in its zone, and hang up.

    `opens_at` and `now` are aware datetimes in the room's zone; None: it never opens again.
    Only English is spoken here (`language` is for the room's catalogue).
    """
    if opens_at is None:
        return goodbye(ROOM_CLOSED)
    place = zone_place(zone_name)
    return goodbye(
        f"This meeting room opens {_day_words(opens_at, now)} at {_clock_words(opens_at)}, "
        f"{place} time. Goodbye."
    )


def zone_place(zone_name: str) -> str:
    """Return how a zone is named aloud: its city ("America/New_York": "New York")."""
    area, _, city = zone_name.rpartition("/")
    if not area or area == "Etc":
        # No city to name: "UTC", "Etc/GMT+5" (whose sign a listener would read backwards).
        return "UTC" if city in UTC_NAMES else zone_name
    return city.replace("_", " ")


def _day_words(opens_at: datetime, now: datetime) -> str:
    days_ahead = (opens_at.date() - now.date()).days
    if days_ahead == 0:
        return "today"
    if days_ahead == 1:
        return "tomorrow"
    if days_ahead <= DAYS_NAMED_BY_WEEKDAY:
        return f"on {WEEKDAYS[opens_at.weekday()]}"
    return f"on {WEEKDAYS[opens_at.weekday()]}, {MONTHS[opens_at.month - 1]} {opens_at.day}"


def _clock_words(at: datetime) -> str:
    """Return "3:00 p.m.", "9:55 a.m.", "12:30 a.m." for half past midnight."""
    hour = at.hour % 12 or 12
    return f"{hour}:{at.minute:02d} {'a.m.' if at.hour < 12 else 'p.m.'}"


def ask_for_code(message: str, gather_url: str, no_input_url: str) -> VoiceResponse:
    """Say `message` inside a six-digit Gather; with no digits, go on to `no_input_url`."""
    response = VoiceResponse()
    gather = Gather(
        num_digits=CODE_LENGTH, action=gather_url, method="POST", timeout=GATHER_TIMEOUT_SECONDS
    )
    gather.say(message)
    response.append(gather)
    response.redirect(no_input_url, method="POST")
    return response


def welcome(
    name: str, gather_url: str, no_input_url: str, code_by: CodeBy = CodeBy.SMS
) -> VoiceResponse:
    """Greet a listed caller by name and ask for the code, saying where it comes from."""
    return ask_for_code(f"Welcome {name}. {ASK_FOR[code_by]}", gather_url, no_input_url)


def join_conference(
    room: str,
    label: str,
    role: Role,
    events_url: str,
    hold_music_url: str | None = None,
) -> VoiceResponse:
    """Put the caller into the room's conference; a moderator starts and ends it."""
    is_moderator = role == Role.MODERATOR
    response = VoiceResponse()
    response.say(CORRECT)
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


def participant_label(name: str, phone: str, taken: set[str]) -> str:
    """Return a label Twilio accepts: no "/", at most 128 characters, unique in the conference."""
    label = name.replace("/", "-")[:MAX_LABEL]
    if label in taken:
        # Two Alexes, or a redial while the old call leg is still up.
        suffix = f" ({phone[-4:]})"
        label = label[: MAX_LABEL - len(suffix)] + suffix
    return label


def read_code_aloud(code: str) -> VoiceResponse:
    """Read a code digit by digit, twice, for a code delivered by a voice call."""
    digits = ", ".join(code)
    response = VoiceResponse()
    response.say(f"Your code is {digits}.")
    response.pause(length=1)
    response.say(f"Again, your code is {digits}.")
    return response


def announce_joined(name: str, language: str = "en-US") -> VoiceResponse:
    """Tell a conference that `name` has come in."""
    return _announcement(f"{name} has joined.", language)


def announce_left(name: str, language: str = "en-US") -> VoiceResponse:
    """Tell a conference that `name` has gone."""
    return _announcement(f"{name} has left.", language)


def announce_waiting(count: int, language: str = "en-US") -> VoiceResponse:
    """Tell a moderator who has just joined how many callers are in the conference already."""
    if count <= 0:
        return _announcement("Nobody else is here yet.", language)
    if count == 1:
        return _announcement("1 person is waiting.", language)
    return _announcement(f"{count} people are waiting.", language)


def _announcement(text: str, language: str) -> VoiceResponse:
    # Twilio plays an announcement's <Say> and <Play> only: nothing else goes in.
    response = VoiceResponse()
    response.say(text, language=language)
    return response


def empty() -> VoiceResponse:
    return VoiceResponse()
