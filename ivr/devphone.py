"""The dev phone: plays Twilio's part so the whole line can be tried without a Twilio account.

It signs each webhook request as Twilio would, reads the TwiML back (Say, Pause, Gather,
Redirect, Hangup, Reject, Dial/Conference), and emulates a moderated conference, posting its
status callbacks to /conference/events. The terminal phone (`flask --app ivr call`) and the
browser phone (/dev/phone, local mode only) share this engine.
"""

from __future__ import annotations

import itertools
import secrets
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

import requests
from flask import Flask
from twilio.request_validator import RequestValidator

from ivr import twiml
from ivr.announcements import LocalAnnouncements
from ivr.authenticator import SecretUnreadable, current_code
from ivr.i18n import translations
from ivr.languages import DEFAULT_LANGUAGE

LOCAL_LINE = "+18005550100"
# The account the dev phone's requests say they come from, as Twilio's carry theirs.
ACCOUNT_SID = "AC" + "0" * 32


class LineError(Exception):
    """The line answered something a phone cannot play: a status other than 200, or not TwiML."""


class Transport(Protocol):
    def post(self, url: str, params: dict[str, str]) -> str:
        """POST signed form data to the line; return the TwiML text."""


class InProcess:
    """Call the app's webhooks directly, as Twilio would over HTTP, signed."""

    def __init__(self, app: Flask) -> None:
        self._app = app
        self._client = app.test_client()
        self._validator = RequestValidator(app.config["SIGNING_TOKEN"])
        self._base = app.config["PUBLIC_BASE_URL"] or "http://localhost"

    def post(self, url: str, params: dict[str, str]) -> str:
        path = _path_of(url)
        signature = self._validator.compute_signature(self._base + path, params)
        response = self._client.post(path, data=params, headers={"X-Twilio-Signature": signature})
        # Like Twilio, the phone gets the text while the greeting plays, not a beat later.
        self._app.extensions["ivr"].sender.wait_idle(timeout=10)
        return _twiml_text(response.status_code, response.mimetype, response.get_data(as_text=True))


class OverHttp:
    """Call a running server's webhooks over HTTP, signed with the same token it checks."""

    def __init__(self, base_url: str, token: str, public_base_url: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._validator = RequestValidator(token)
        self._signed_base = public_base_url or self.base_url
        self._session = requests.Session()

    def post(self, url: str, params: dict[str, str]) -> str:
        path = _path_of(url)
        signature = self._validator.compute_signature(self._signed_base + path, params)
        response = self._session.post(
            self.base_url + path, data=params, headers={"X-Twilio-Signature": signature}, timeout=20
        )
        mimetype = response.headers.get("Content-Type", "").split(";")[0]
        return _twiml_text(response.status_code, mimetype, response.text)

    def outbox(self, phone: str) -> list[str]:
        """Return the texts the server's console outbox holds for `phone`."""
        path = f"/dev/outbox?to={requests.utils.quote(phone)}"
        signature = self._validator.compute_signature(self._signed_base + path, {})
        response = self._session.get(
            self.base_url + path, headers={"X-Twilio-Signature": signature}, timeout=10
        )
        if response.status_code != 200:
            raise LineError(f"the server's outbox answered {response.status_code}")
        return [message["text"] for message in response.json()["messages"]]


def authenticator_code(found, phone: str) -> str | None:
    """Return the code `phone`'s authenticator app shows now, or None if they have no app.

    Local mode only: the dev phone stands in for the participant's phone, app included.
    `found` is the app's services (ivr.services.Services).
    """
    sealed = found.store.app_secret_of(phone)
    if sealed is None:
        return None
    try:
        return current_code(found.apps.open(sealed), found.app_codes.clock())
    except SecretUnreadable:
        return None


def _path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _twiml_text(status: int, mimetype: str, body: str) -> str:
    if status != 200 or mimetype != "text/xml":
        raise LineError(f"the line answered {status} {mimetype}: {body[:200]}")
    return body


@dataclass
class Member:
    call: DevCall
    label: str
    starts: bool
    ends: bool
    events_url: str | None


@dataclass
class Conference:
    name: str
    sid: str = field(default_factory=lambda: "CF" + secrets.token_hex(16))
    members: list[Member] = field(default_factory=list)
    started: bool = False
    # What was announced into the conference (or to one caller in it), latest last.
    announced: list[str] = field(default_factory=list)


# Announcements the browser's conference panel shows for each conference.
SHOWN_ANNOUNCEMENTS = 5


class Conferences:
    """Twilio's conference rules, played locally: moderators start and end, others wait.

    With `announcements` (local mode's stand-in for Twilio's announcement API), the
    announcements the line asks for after each status callback are played too.
    """

    def __init__(self, announcements: LocalAnnouncements | None = None) -> None:
        self.rooms: dict[str, Conference] = {}
        self._lock = threading.RLock()
        self._announcements = announcements

    def join(self, call: DevCall, element: ET.Element) -> None:
        with self._lock:
            room = self.rooms.setdefault(element.text or "", Conference(element.text or ""))
            member = Member(
                call=call,
                label=element.get("participantLabel") or call.caller,
                starts=element.get("startConferenceOnEnter", "true") == "true",
                ends=element.get("endConferenceOnExit", "false") == "true",
                events_url=element.get("statusCallback"),
            )
            room.members.append(member)
            call.conference = room.name
            call.role = "moderator" if member.starts else "participant"
            call.hear(f"*** Joined conference {room.name} as {call.role}.")
            # Twilio starts a conference once a moderator is in and someone is with them.
            if not room.started and len(room.members) > 1 and any(m.starts for m in room.members):
                room.started = True
                self._event(room, member, "conference-start")
                news = "The moderator has joined" if member.starts else "A second caller joined"
                for waiting in room.members:
                    if waiting is not member:
                        waiting.call.hear(f"({news}: the conference starts.)")
            self._event(room, member, "participant-join")
            if room.started:
                others = len(room.members) - 1
                call.hear(f"(In conference {room.name} with {others} other caller(s).)")
            elif member.starts:
                call.hear(f"(Hold music: conference {room.name} starts when someone else joins.)")
            else:
                call.hear(f"(Hold music: conference {room.name} waits for a moderator.)")

    def leave(self, call: DevCall) -> None:
        with self._lock:
            room = self.rooms.get(call.conference or "")
            member = next((m for m in room.members if m.call is call), None) if room else None
            if member is None:
                return
            room.members.remove(member)
            self._event(room, member, "participant-leave")
            if (member.ends and room.started) or not room.members:
                self._end(room, member)

    def snapshot(self) -> list[dict]:
        """Return who is in each conference and whether it has started."""
        with self._lock:
            return [
                {
                    "name": room.name,
                    "started": room.started,
                    "members": [
                        {"label": m.label, "phone": m.call.caller, "moderator": m.starts}
                        for m in room.members
                    ],
                    "announced": room.announced[-SHOWN_ANNOUNCEMENTS:],
                }
                for room in sorted(self.rooms.values(), key=lambda r: r.name)
            ]

    def _end(self, room: Conference, by: Member) -> None:
        for member in list(room.members):
            room.members.remove(member)
            self._event(room, member, "participant-leave")
            member.call.end("The moderator left: the conference has ended.")
        if room.started:
            self._event(room, by, "conference-end")
        del self.rooms[room.name]

    def _event(self, room: Conference, member: Member, event: str) -> None:
        if not member.events_url:
            return
        params = {
            "AccountSid": ACCOUNT_SID,
            "ConferenceSid": room.sid,
            "FriendlyName": room.name,
            "StatusCallbackEvent": event,
            "CallSid": member.call.call_sid,
            "ParticipantLabel": member.label,
        }
        member.call.transport.post(member.events_url, params)
        self._play_announcements(member.call.transport)

    def _play_announcements(self, transport: Transport) -> None:
        """Play what the line asked Twilio to announce: fetch its signed TwiML, say its <Say>s.

        The in-process line has finished its background work when a callback returns, so every
        announcement the callback led to is waiting here.
        """
        if self._announcements is None:
            return
        by_sid = {room.sid: room for room in self.rooms.values()}
        for announcement in self._announcements.take(by_sid):
            room = by_sid[announcement.conference_sid]
            params = {"AccountSid": ACCOUNT_SID, "ConferenceSid": room.sid}
            if announcement.call_sid is not None:
                params["CallSid"] = announcement.call_sid
            try:
                document = ET.fromstring(transport.post(announcement.url, params))
            except (LineError, ET.ParseError, requests.RequestException) as error:
                # Twilio plays nothing then; the phone says so, for whoever is debugging.
                room.announced.append(f"(The announcement failed: {error}.)")
                continue
            listeners = [
                m for m in room.members if announcement.call_sid in (None, m.call.call_sid)
            ]
            only_to = f" (to {listeners[0].label})" if announcement.call_sid and listeners else ""
            for say in document.iter("Say"):
                text = say.text or ""
                room.announced.append(text + only_to)
                for member in listeners:
                    member.call.hear(f"Announcement: {text}")


class DevCall:
    """One call from `caller` to `line`, driven verb by verb."""

    def __init__(
        self,
        transport: Transport,
        caller: str,
        line: str,
        conferences: Conferences,
        on_line: Callable[[str], None] | None = None,
    ) -> None:
        self.transport = transport
        self.caller = caller
        self.line = line
        self.conferences = conferences
        self.call_sid = "CA" + secrets.token_hex(16)
        self.transcript: list[str] = []
        self.on_line = on_line
        self.gather: ET.Element | None = None
        self._after_gather: list[ET.Element] = []
        self.ended = False
        self.summary: str | None = None
        self.conference: str | None = None
        self.role: str | None = None
        self._last_said = ""
        self._last_language = DEFAULT_LANGUAGE

    # -- what the caller does -----------------------------------------------------------------

    def dial(self) -> None:
        self._fetch("/voice", {})

    def press(self, digits: str) -> None:
        """Type digits into the open Gather; empty means the Gather times out."""
        if self.gather is None:
            return
        gather, rest = self.gather, self._after_gather
        self.gather, self._after_gather = None, []
        wanted = int(gather.get("numDigits") or 0)
        entered = "".join(ch for ch in digits if ch in "0123456789*#")
        if wanted:
            entered = entered[:wanted]
        if not entered:
            self._play(rest)
            return
        self._fetch(gather.get("action") or "/voice", {"Digits": entered, "FinishedOnKey": ""})

    def hang_up(self) -> None:
        if self.ended:
            return
        if self.conference:
            self.conferences.leave(self)
        self.end("You hung up.")

    # -- what the caller hears ----------------------------------------------------------------

    def hear(self, line: str) -> None:
        self.transcript.append(line)
        if self.on_line:
            self.on_line(line)

    def end(self, summary: str) -> None:
        if self.ended:
            return
        self.ended = True
        self.gather = None
        self.summary = summary
        self.hear(f"*** {summary}")
        # Twilio tells the number's status callback that the call is over.
        try:
            self.transport.post("/call-status", self._params(CallStatus="completed"))
        except (LineError, requests.RequestException) as error:
            self.hear(f"(The call status callback failed: {error}.)")

    @property
    def waiting_for_digits(self) -> bool:
        return self.gather is not None and not self.ended

    def _params(self, **extra: str) -> dict[str, str]:
        return {
            "AccountSid": ACCOUNT_SID,
            "CallSid": self.call_sid,
            "From": self.caller,
            "To": self.line,
            "CallStatus": "in-progress",
            "Direction": "inbound",
            **extra,
        }

    def _fetch(self, url: str, extra: dict[str, str]) -> None:
        try:
            document = ET.fromstring(self.transport.post(url, self._params(**extra)))
        except (LineError, ET.ParseError, requests.RequestException) as error:
            self.end(f"Twilio would say: an application error has occurred ({error}).")
            return
        self._play(list(document))

    def _play(self, verbs: list[ET.Element]) -> None:
        for index, verb in enumerate(verbs):
            if self.ended:
                return
            if verb.tag == "Say":
                self._say(verb)
            elif verb.tag == "Pause":
                continue
            elif verb.tag == "Gather":
                for inner in verb:
                    if inner.tag == "Say":
                        self._say(inner)
                self.gather, self._after_gather = verb, verbs[index + 1 :]
                return
            elif verb.tag == "Redirect":
                self._fetch(verb.text or "/voice", {})
                return
            elif verb.tag == "Hangup":
                self.end(self._why_it_ended())
                return
            elif verb.tag == "Reject":
                self.end("The line rejected the call.")
                return
            elif verb.tag == "Dial":
                conference = verb.find("Conference")
                if conference is None:
                    self.end("The line dialled something the dev phone cannot play.")
                    return
                self.conferences.join(self, conference)
                return
            else:
                self.hear(f"(The dev phone skips <{verb.tag}>.)")
        self.end(self._why_it_ended())

    def _say(self, verb: ET.Element) -> None:
        text, language = verb.text or "", verb.get("language") or DEFAULT_LANGUAGE
        self._last_said, self._last_language = text, language
        # The transcript names a language other than the line's own.
        self.hear(f"Line: {text}" if language == DEFAULT_LANGUAGE else f"Line [{language}]: {text}")

    def _why_it_ended(self) -> str:
        said, catalogue = self._last_said, translations(self._last_language)

        def is_one_of(*messages: str) -> bool:
            return said in {catalogue.gettext(message) for message in messages}

        locked_out = catalogue.ngettext(*twiml.LOCKED_OUT, 1).split("%(num)d")[0]
        if is_one_of(twiml.UNKNOWN_NUMBER, twiml.WITHHELD, twiml.INVALID_NUMBER):
            return "Refused: the line does not accept this caller."
        if said.startswith(locked_out):
            return "Locked out."
        if is_one_of(twiml.SEND_LIMIT):
            return "Refused: too many codes were sent to this number."
        if is_one_of(twiml.NO_INPUT_GOODBYE):
            return "Hung up: no code was entered."
        if is_one_of(twiml.EXPIRED_CODE):
            return "Hung up: the code had expired."
        if is_one_of(twiml.PROVIDER_FAULT, twiml.APPLICATION_FAULT):
            return "Hung up: the line could not send or check codes."
        return "The line hung up."


class DevPhones:
    """The browser phone's calls and conferences, kept in the server process."""

    def __init__(
        self,
        transport_factory: Callable[[], Transport],
        announcements: LocalAnnouncements | None = None,
    ) -> None:
        self._transport_factory = transport_factory
        self.conferences = Conferences(announcements)
        self.calls: dict[str, DevCall] = {}
        self._ids = itertools.count(1)
        self.lock = threading.RLock()

    def dial(self, caller: str, line: str) -> tuple[str, DevCall]:
        with self.lock:
            call = DevCall(self._transport_factory(), caller, line, self.conferences)
            call_id = str(next(self._ids))
            self.calls[call_id] = call
            call.dial()
            return call_id, call
