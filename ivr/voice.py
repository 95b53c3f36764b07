"""Twilio's webhooks: /voice answers the call, /gather checks the code, /conference/events logs.

Views are thin: they read the request, ask the store and the code provider, and hand a TwiML
builder's answer back. Every answer is 200 text/xml except a bad signature (403).
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from flask import Blueprint, Request, Response, abort, current_app, g, request
from twilio.twiml.voice_response import VoiceResponse
from werkzeug.exceptions import HTTPException

from ivr import hours, twiml
from ivr.announcements import CALL_SID, CONFERENCE_SID, SAYINGS, ConferenceNews
from ivr.languages import DEFAULT_LANGUAGE, LANGUAGES
from ivr.logs import name_room
from ivr.phones import caller_phone, e164_spelled, is_withheld, parse_phone
from ivr.sending import PendingSend
from ivr.services import services
from ivr.signature import is_signed_by_twilio
from ivr.store import (
    CallerAtLine,
    CallerLookup,
    CallNote,
    CodeBy,
    KeptAnswer,
    Outcome,
    Role,
    SendStatus,
    utcnow,
)
from ivr.verification import LINE, Channel, CheckResult, ProviderError

# Codes sent to one number in any hour, whichever provider sends them.
SENDS_PER_HOUR = 5
SIX_DIGITS = re.compile(r"[0-9]{6}")
# A code that never went out: what the caller hears at their next webhook instead of a prompt.
UNSENT = {
    SendStatus.FAILED: twiml.PROVIDER_FAULT,
    SendStatus.REFUSED: twiml.SEND_LIMIT,
    SendStatus.STUCK: twiml.PROVIDER_FAULT,
}
# A send not finished this long after TWILIO_TIMEOUT_SECONDS never will be (its worker died);
# the margin covers sends queued behind others on the sender threads.
STUCK_MARGIN_SECONDS = 10
# The provider's channel for each method that is sent.
CHANNELS: dict[CodeBy, Channel] = {CodeBy.SMS: "sms", CodeBy.WHATSAPP: "whatsapp"}
ENDED_CALL_STATUSES = {"completed", "canceled", "failed", "busy", "no-answer"}
CONFERENCE_OUTCOMES = {
    "conference-start": Outcome.CONFERENCE_START,
    "conference-end": Outcome.CONFERENCE_END,
    "participant-join": Outcome.CONFERENCE_JOIN,
    "participant-leave": Outcome.CONFERENCE_LEAVE,
}
# The conference events the others hear about, and what they hear.
ANNOUNCED_EVENTS = {"participant-join": "joined", "participant-leave": "left"}
# More callers than any conference holds (Twilio's limit is 250): not a count we asked to say.
MAX_WAITING = 1000

# Twilio's header on every webhook request; a retry of the same request carries the same token.
IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"
MAX_TOKEN_LENGTH = 128
# A retry that overtakes the first request waits this long for its answer (Twilio's limit: 15 s).
RETRY_WAIT_SECONDS = 10
# Where a request keeps its _Call (WSGI environ keys of an app are dotted with its name).
CALL_KEY = "ivr.call"

log = logging.getLogger(__name__)
bp = Blueprint("voice", __name__)


@bp.before_request
def require_twilio_signature() -> None:
    config = current_app.config
    # The request itself, not Flask's proxy to it: each use of a proxy looks the request up.
    current = request._get_current_object()
    if not is_signed_by_twilio(current, config["SIGNING_TOKEN"], config["PUBLIC_BASE_URL"]):
        log.warning("refused %s: missing or invalid X-Twilio-Signature", current.path)
        abort(403)


@bp.before_request
def answer_retries_once() -> Response | None:
    """Give a request Twilio sends again (same idempotency token) the first answer, and no more.

    Twilio retries a webhook it got no answer to in time; acting on it twice would count a wrong
    code twice or send a second code. The token is claimed in the shared database, so a retry
    that reaches another instance is caught too.
    """
    current = request._get_current_object()
    token = current.headers.get(IDEMPOTENCY_HEADER, "")
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    ivr = services()
    lookup = _caller_to_find(current)
    if lookup is None:
        seen = ivr.store.claim_webhook(token, current.path)
    else:
        # The view's first question, answered in the same trip to the database as the claim.
        # /voice writes next before it waits on anything: on SQLite, that write joins the
        # claim's transaction (until then the process's other writers wait for it).
        holding = current.endpoint == "voice.voice"
        claimed = ivr.store.claim_webhook_finding(token, current.path, lookup, hold=holding)
        seen = claimed.seen
        if claimed.looked_up:
            g.caller_found = (lookup, claimed)
    if seen is None:
        g.webhook_token = token
        return None
    log.info("retry of an answered webhook: replaying its answer")
    answer = seen.answer if seen.answer is not None else _wait_for_answer(token)
    if answer is None:
        # The first is still being answered, or died answering: end the call, act on nothing.
        return _twiml(twiml.goodbye(twiml.APPLICATION_FAULT))
    return Response(answer, status=200, mimetype="text/xml")


@bp.after_request
def keep_the_answer(response: Response) -> Response:
    """Keep the answer to a claimed request, for its retries, unless the view's change did."""
    token = g.pop("webhook_token", None)
    if token is not None and response.status_code == 200:
        try:
            services().store.keep_answer(token, response.get_data(as_text=True))
        except Exception:  # the caller's answer goes out; a retry then hears the apology
            log.exception("could not keep the answer for a webhook retry")
    return response


@bp.teardown_request
def commit_what_the_claim_held(_error: BaseException | None = None) -> None:
    """Commit the claim's transaction if /voice answered without writing (see above)."""
    try:
        services().store.commit_held()
    except Exception:  # the answer is out; a retry then acts afresh
        log.exception("could not commit the webhook's claim")


def _caller_to_find(current: Request) -> CallerLookup | None:
    """Return whom the `current` request's view will look up first, if it is /voice or a
    /gather with digits from a usable caller ID; None if it looks up no one, or not first."""
    endpoint = current.endpoint
    if endpoint != "voice.voice" and (endpoint != "voice.gather" or "Digits" not in current.form):
        return None
    call = _Call.from_request(current)
    if call.phone is None:
        return None
    if endpoint == "voice.voice":
        return call.lookup()
    # A right code's answer needs the labels in the conference: read with the caller. The
    # check is claimed with them too: the view claims it first thing after the look-up anyway.
    return call.lookup(with_live_labels=True, claiming_a_check=current_app.config["MAX_ATTEMPTS"])


def _same_call(lookup: CallerLookup, call: _Call) -> bool:
    return (lookup.phone, lookup.line, lookup.call_sid) == (call.phone, call.line, call.call_sid)


def _kept_with_change(answer: str) -> KeptAnswer | None:
    """Return `answer` for the store to keep in the transaction of the view's last change.

    The view answers with `_answer_kept(answer)` after its last step that could fail, so that
    `keep_the_answer` does not write it again: one commit on the webhook path instead of two.
    Should a step in between fail, `keep_the_answer` replaces it with the apology heard.
    """
    token = g.get("webhook_token")
    return None if token is None else KeptAnswer(token, answer)


def _answer_kept(answer: str) -> Response:
    g.pop("webhook_token", None)
    return _xml(answer)


def _wait_for_answer(token: str) -> str | None:
    """Wait a little for the first request's answer, when a retry overtakes it."""
    deadline = time.monotonic() + RETRY_WAIT_SECONDS
    while time.monotonic() < deadline:
        time.sleep(0.05)
        answer = services().store.answer_of(token)
        if answer is not None:
            return answer
    return None


@bp.errorhandler(Exception)
def speak_the_fault(error: Exception):
    """Never let Twilio hear a 500: it would tell the caller 'an application error occurred'."""
    if isinstance(error, HTTPException):
        return error
    log.exception("webhook %s failed", request.path)
    if request.endpoint == "voice.conference_announce":
        # Played into a meeting: an apology and a hang-up there would be worse than nothing.
        return _twiml(twiml.empty())
    try:
        _Call.from_request().log(Outcome.APPLICATION_ERROR, None)
    except Exception:  # the database may be what failed; the caller's goodbye comes first
        log.warning("could not log the failed webhook in the call log")
    return _twiml(twiml.goodbye(twiml.APPLICATION_FAULT))


@bp.post("/voice")
def voice():
    call = _Call.from_request()
    if call.phone is None:
        return call.refuse_caller_id()
    caller = call.caller_at_line()
    if call.phone is None:  # spelled as a number, but none (see _Call.caller_at_line)
        return call.refuse_caller_id()
    if caller is None or caller.name is None:
        return call.unknown_number(caller)
    # Before the lockout and any send: a closed room costs the caller nothing.
    closed = _closed_to(caller)
    if closed is not None:
        return call.room_closed(caller, closed)
    if _is_locked(caller):
        return call.locked_out(caller, caller.locked_until)
    if caller.code_by == CodeBy.APP:
        return call.ask_for_app_code(caller)
    by = _sent_by(caller)
    if caller.send_status in UNSENT:
        return call.unsent(caller, caller.send_status)
    if caller.send_status is not None:
        # This call was sent its code already (/voice asked again): one code per call.
        return _xml(_welcome(caller, by))

    note = call.note(caller)
    welcome = _welcome(caller, by)
    ivr = services()
    # A built-in code is made now, and stored with the reservation: one transaction.
    code = ivr.codes.new_code(call.phone)
    send_id = ivr.store.reserve_send(
        call.phone,
        SENDS_PER_HOUR,
        note,
        answer=_kept_with_change(welcome),
        code=code.stored if code else None,
    )
    if send_id is None:
        call.log(Outcome.SEND_LIMIT, caller)
        return _twiml(twiml.goodbye(twiml.SEND_LIMIT, _language_of(caller)))
    # Logged first, so that it comes before anything the sender logs about this code.
    log.info("outcome: %s", Outcome.CODE_SENT)
    ivr.metrics.call(Outcome.CODE_SENT, caller.room)
    # The greeting does not wait for Twilio: the code is sent while the caller hears it.
    language = _language_of(caller)
    ivr.sender.send(PendingSend(send_id, call.phone, note, CHANNELS[by], language, code))
    return _answer_kept(welcome)


@bp.post("/gather")
def gather():
    call = _Call.from_request()
    if call.phone is None:
        return call.refuse_caller_id()
    digits = request.form.get("Digits")
    if digits is None:
        # No look-up comes first here to spare a number spelled as E.164 its parse.
        if call.parsed_phone() is None:
            return call.refuse_caller_id()
        return _no_input(call)

    ivr = services()
    store = ivr.store
    caller = call.caller_at_line()
    if call.phone is None:  # spelled as a number, but none (see _Call.caller_at_line)
        return call.refuse_caller_id()
    if caller is None or caller.name is None:
        return call.unknown_number(caller)
    if _is_locked(caller):
        call.give_back_early_attempt()
        return call.locked_out(caller, caller.locked_until)
    by_app = caller.code_by == CodeBy.APP
    if caller.send_status in UNSENT and not by_app:
        call.give_back_early_attempt()
        return call.unsent(caller, caller.send_status)

    config = current_app.config
    # Claimed before the check, so that a burst of guesses cannot all be checked at once.
    attempt = call.claim_attempt(config["MAX_ATTEMPTS"])
    if attempt is None:
        return call.locked_out(caller, store.locked_until(call.phone) or _lockout_from_now())
    if SIX_DIGITS.fullmatch(digits):
        try:
            result = _check_code(call, caller, digits)
        except ProviderError as error:
            store.give_back_attempt(call.phone)
            return call.provider_fault(caller, error)
    else:
        result = CheckResult.WRONG

    if result == CheckResult.APPROVED:
        joined = (
            Outcome.JOINED_MODERATOR
            if caller.role == Role.MODERATOR
            else Outcome.JOINED_PARTICIPANT
        )
        try:
            taken = caller.live_labels
            if taken is None:  # not read with the caller: no idempotency token, or it failed
                taken = store.live_labels(caller.room)
            label = twiml.participant_label(caller.name, call.phone, taken)
            joining = twiml.join_conference_xml(
                caller.room,
                label,
                caller.role,
                _public_url("/conference/events"),
                caller.hold_music_url,
                _language_of(caller),
            )
        except Exception:
            # The code was right: settle its claim as a success before the caller hears the
            # apology, or the count it holds would push them towards a lockout.
            store.succeed_attempt(call.phone)
            raise
        # Settles the claim: a success clears the failures before it.
        store.record_join(joined, call.note(caller), _kept_with_change(joining))
        log.info("outcome: %s", joined)
        ivr.metrics.call(joined, caller.room)
        return _answer_kept(joining)

    locked_until = store.fail_attempt(
        call.phone, attempt, config["MAX_ATTEMPTS"], config["LOCKOUT_SECONDS"]
    )
    if locked_until is not None:
        # Only the attempt that locks gets a time back: one count per lockout.
        ivr.metrics.lockout(LINE)
        return call.locked_out(caller, locked_until)
    language = _language_of(caller)
    if result == CheckResult.EXPIRED:
        call.log(Outcome.EXPIRED_CODE, caller)
        return _twiml(twiml.goodbye(twiml.EXPIRED_CODE, language))
    if result == CheckResult.USED:
        call.log(Outcome.USED_CODE, caller)
        urls = _gather_urls(by=CodeBy.APP, language=language)
        return _twiml(twiml.ask_for_code(twiml.USED_CODE, *urls, language))
    call.log(Outcome.WRONG_CODE, caller)
    urls = _gather_urls(by=_asked_by(caller), language=language)
    return _twiml(twiml.ask_for_code(twiml.WRONG_CODE, *urls, language))


@bp.post("/conference/events")
def conference_events():
    event = request.form.get("StatusCallbackEvent", "")
    phone = _track_live_members(event)
    outcome = CONFERENCE_OUTCOMES.get(event)
    if outcome is not None:
        name_room(request.form.get("FriendlyName"))
        log.info("outcome: %s", outcome)
        note = CallNote(
            request.form.get("CallSid"),
            phone,
            request.form.get("ParticipantLabel"),
            request.form.get("FriendlyName"),
        )
        services().store.log_call(outcome, note)
        services().metrics.call(outcome, note.room)
    _announce(event)
    return _twiml(twiml.empty())


@bp.post("/conference/announce")
def conference_announce():
    """Say who joined or left (or, to a moderator, how many are in): Twilio's AnnounceUrl.

    Never an error spoken into a meeting: anything amiss plays nothing (speak_the_fault too).
    """
    said, call_sid = request.args.get("event", ""), request.args.get("call", "")
    count = request.args.get("count", default=-1, type=int)
    if said not in SAYINGS or not CALL_SID.fullmatch(call_sid):
        log.warning("announcement request for nothing we announce: played nothing")
        return _twiml(twiml.empty())
    caller = services().store.announced_caller(call_sid)
    if caller is None:
        log.warning("announcement about a call the line let no one in on: played nothing")
        return _twiml(twiml.empty())
    name_room(caller.room)
    if said == "joined":
        return _twiml(twiml.announce_joined(caller.name, _spoken(caller.language)))
    if said == "left":
        return _twiml(twiml.announce_left(caller.name, _spoken(caller.language)))
    if not 0 <= count < MAX_WAITING:
        log.warning("announcement of a waiting count we did not ask for: played nothing")
        return _twiml(twiml.empty())
    return _twiml(twiml.announce_waiting(count, _spoken(caller.language)))


@bp.post("/call-status")
def call_status():
    """The number's call status callback: note callers who hung up before they were let in."""
    if request.form.get("CallStatus") in ENDED_CALL_STATUSES and request.form.get("CallSid"):
        logged = services().store.log_hang_up(
            request.form["CallSid"], caller_phone(request.form.get("From"))
        )
        if logged is not None:
            log.info("outcome: %s", Outcome.HUNG_UP)
            services().metrics.call(Outcome.HUNG_UP, logged.room)
    return _twiml(twiml.empty())


def _track_live_members(event: str) -> str | None:
    """Keep the admin console's list of who is in each conference; return the caller's number."""
    form, store = request.form, services().store
    conference_sid, call_sid = form.get("ConferenceSid", ""), form.get("CallSid", "")
    room = form.get("FriendlyName", "")
    if event == "conference-start" and conference_sid:
        store.conference_started(conference_sid, room)
    elif event == "conference-end" and conference_sid:
        store.conference_ended(conference_sid)
    elif event == "participant-join" and conference_sid and call_sid:
        muted = form.get("Muted", "").lower() == "true"
        return store.member_joined(
            conference_sid, room, call_sid, form.get("ParticipantLabel"), muted
        )
    elif event == "participant-leave" and call_sid:
        return store.member_left(call_sid, conference_sid or None, room or None)
    elif event in ("participant-mute", "participant-unmute") and call_sid:
        store.member_muted(call_sid, event == "participant-mute")
    return None


def _announce(event: str) -> None:
    """Have the conference hear who joined or left: on a sender thread, so Twilio waits for none.

    Whether the room wants it, and who is there to hear it, is read there too.
    """
    form = request.form
    conference_sid, call_sid = form.get("ConferenceSid", ""), form.get("CallSid", "")
    said = ANNOUNCED_EVENTS.get(event)
    if said is None or not CONFERENCE_SID.fullmatch(conference_sid):
        return
    if not CALL_SID.fullmatch(call_sid):
        return
    news = ConferenceNews(
        said,
        conference_sid,
        call_sid,
        form.get("FriendlyName") or None,
        _public_url("/conference/announce"),
    )
    services().sender.run(services().announcements.announce, news)


def _no_input(call: _Call) -> Response:
    """The Gather heard nothing: ask again, without a new code, or say goodbye."""
    store = services().store
    # The method and the language come from our own redirect URL, which Twilio's signature
    # covers: the re-prompt needs no look-up of the caller.
    by = _code_by(request.args.get("by"))
    language = _spoken(request.args.get("lang") or DEFAULT_LANGUAGE)
    status = store.send_status(call.call_sid, _stuck_before()) if call.call_sid else None
    if status in UNSENT:
        caller = call.caller_at_line() if status == SendStatus.STUCK else None
        return call.unsent(caller, status, language)
    reprompt = request.args.get("reprompt", default=1, type=int)
    if reprompt > twiml.MAX_REPROMPTS:
        call.log(Outcome.NO_INPUT, call.caller_at_line())
        return _twiml(twiml.goodbye(twiml.NO_INPUT_GOODBYE, language))
    return _twiml(twiml.ask_again(*_gather_urls(reprompt + 1, by, language), by, language))


class _Call:
    """The caller and line of the webhook request being answered."""

    def __init__(self, raw_from: str | None, to: str | None, call_sid: str | None) -> None:
        self.raw_from = raw_from
        # Looked up as Twilio spells it, and parsed (tens of microseconds, the first time a
        # worker sees a number) only if no one on the list has it: see `caller_at_line`.
        spelled = e164_spelled(raw_from)
        self.phone = spelled or caller_phone(raw_from)
        self._phone_unparsed = spelled is not None
        self.line = parse_phone(to or "")
        self.call_sid = call_sid
        # A code check claimed with the caller's look-up (see _caller_to_find) and not yet
        # taken by the view: whether there is one, and which attempt (None: none was left).
        self._claimed_early = False
        self._early_attempt: int | None = None

    @classmethod
    def from_request(cls, current: Request | None = None) -> _Call:
        """Return this request's call (`current`, if given, is it: Flask's `request` itself,
        not its proxy); read from its form once (the claim and the view ask).

        Kept with the request itself, not in `g`: a request made inside another's app context
        (the dev phone, `flask call`) shares its `g`.
        """
        if current is None:
            current = request._get_current_object()
        environ = current.environ
        call = environ.get(CALL_KEY)
        if call is None:
            form = current.form
            call = environ[CALL_KEY] = cls(form.get("From"), form.get("To"), form.get("CallSid"))
        return call

    def lookup(
        self, with_live_labels: bool = False, claiming_a_check: int | None = None
    ) -> CallerLookup:
        stuck_before = _stuck_before()
        return CallerLookup(
            self.phone, self.line, self.call_sid, stuck_before, with_live_labels, claiming_a_check
        )

    def caller_at_line(self) -> CallerAtLine | None:
        """Return who the caller is on the dialled line; name its room in the log lines.

        The first time in a request, the caller found with the webhook's claim (if it was).
        """
        found = g.pop("caller_found", None)
        if found is not None and _same_call(found[0], self):
            claimed = found[1]
            caller = claimed.caller
            self._claimed_early, self._early_attempt = claimed.attempt_claimed, claimed.attempt
        else:
            caller = services().store.caller_at_line(
                self.phone, self.line, self.call_sid, _stuck_before()
            )
        if self._phone_unparsed and (caller is None or caller.name is None):
            caller = self._look_up_as_parsed() or caller
        if caller is not None:
            name_room(caller.room)
        return caller

    def parsed_phone(self) -> str | None:
        """Return the caller's number as parsing spells it (None if it is no number), parsing
        it now if it was only looked up as Twilio spelled it."""
        if self._phone_unparsed:
            self._phone_unparsed = False
            self.phone = caller_phone(self.raw_from)
        return self.phone

    def _look_up_as_parsed(self) -> CallerAtLine | None:
        """No one on the list has the number as Twilio spelled it: parse it, and return who
        has it as parsing spells it, if that differs (else None; `phone` is None if it is no
        number at all)."""
        spelled = self.phone
        parsed = self.parsed_phone()
        if parsed == spelled:
            return None
        # Nothing was claimed for a caller the first look-up did not find.
        self._claimed_early, self._early_attempt = False, None
        if parsed is None:
            return None
        return services().store.caller_at_line(parsed, self.line, self.call_sid, _stuck_before())

    def claim_attempt(self, max_attempts: int) -> int | None:
        """Claim a code check for the caller (see `Store.claim_attempt`): the one claimed with
        their look-up, if it was, else one now."""
        if self._claimed_early:
            self._claimed_early = False
            return self._early_attempt
        return services().store.claim_attempt(self.phone, max_attempts)

    def give_back_early_attempt(self) -> None:
        """Give back the check claimed with the look-up, for a caller refused before any check."""
        if self._claimed_early and self._early_attempt is not None:
            services().store.give_back_attempt(self.phone)
        self._claimed_early = False

    def ask_for_app_code(self, caller: CallerAtLine) -> Response:
        """Ask for the code the caller's authenticator app shows: nothing is sent."""
        if not services().app_codes.can_check(caller.app_secret):
            return self.provider_fault(
                caller,
                ProviderError(
                    "the caller's authenticator app secret cannot be read "
                    "(SECRET_KEY changed since they enrolled?): invite them to enrol again"
                ),
            )
        self.log(Outcome.APP_CODE_ASKED, caller)
        return _xml(_welcome(caller, CodeBy.APP))

    def unknown_number(self, caller: CallerAtLine | None) -> Response:
        """Refuse a caller who is not on the dialled line's list, in its room's language."""
        self.log(Outcome.UNKNOWN_NUMBER, caller)
        return _twiml(twiml.goodbye(twiml.UNKNOWN_NUMBER, _language_of(caller)))

    def unsent(
        self, caller: CallerAtLine | None, status: SendStatus, language: str | None = None
    ) -> Response:
        """Tell the caller their code never went out; a stuck send is recorded as failed."""
        if status == SendStatus.STUCK:
            log.error("code send never finished (its sender died or hangs)")
            note = self.note(caller)
            services().store.send_stuck(note)
            services().metrics.call(Outcome.PROVIDER_ERROR, note.room)
        return _twiml(twiml.goodbye(UNSENT[status], language or _language_of(caller)))

    def note(self, caller: CallerAtLine | None) -> CallNote:
        """Return what the call log says about this call and caller."""
        return CallNote(
            call_sid=self.call_sid,
            phone=self.phone or (self.raw_from or "")[:40] or None,
            name=caller.name if caller else None,
            room=caller.room if caller else None,
        )

    def log(self, outcome: Outcome, caller: CallerAtLine | None) -> None:
        note = self.note(caller)
        services().store.log_call(outcome, note)
        log.info("outcome: %s", outcome)
        services().metrics.call(outcome, note.room)

    def refuse_caller_id(self) -> Response:
        """Refuse a withheld or unusable caller ID; nothing is sent to it."""
        if is_withheld(self.raw_from):
            self.log(Outcome.WITHHELD_NUMBER, None)
            return _twiml(twiml.goodbye(twiml.WITHHELD))
        self.log(Outcome.INVALID_NUMBER, None)
        return _twiml(twiml.goodbye(twiml.INVALID_NUMBER))

    def locked_out(self, caller: CallerAtLine, until) -> Response:
        self.log(Outcome.LOCKED_OUT, caller)
        minutes_left = max(1, math.ceil((until - utcnow()).total_seconds() / 60))
        return _twiml(twiml.locked_out(minutes_left, _language_of(caller)))

    def room_closed(self, caller: CallerAtLine, closed: _Closed) -> Response:
        """Tell a caller outside the room's hours when it opens; nothing is sent or counted."""
        self.log(Outcome.ROOM_CLOSED, caller)
        opens_at = closed.opening_hours.next_opening(closed.now)
        zone_name = caller.time_zone or hours.DEFAULT_ZONE
        return _twiml(twiml.room_closed(opens_at, closed.now, zone_name, _language_of(caller)))

    def provider_fault(self, caller: CallerAtLine, error: ProviderError) -> Response:
        log.error("code check failed: %s", error)
        self.log(Outcome.PROVIDER_ERROR, caller)
        return _twiml(twiml.goodbye(twiml.PROVIDER_FAULT, _language_of(caller)))


@dataclass(frozen=True)
class _Closed:
    """A room found closed: its hours, and the time it was asked, in the room's zone."""

    opening_hours: hours.OpeningHours
    now: datetime


def _closed_to(caller: CallerAtLine) -> _Closed | None:
    """Return why the caller's room is closed to them now, or None if they may go on.

    Only /voice asks: a caller already let in stays in when a window ends.
    """
    if caller.role == Role.MODERATOR and caller.moderators_anytime:
        return None
    try:
        opening_hours = hours.schedule(caller.time_zone, caller.opening_hours)
    except hours.HoursError as error:
        # Saved hours this server cannot read (its zone database lacks the room's zone): the
        # hours only spare texts and guesses, the code still guards the room, so let the call on.
        log.error(
            "room %s: its opening hours cannot be read, so it stays open: %s", caller.room, error
        )
        return None
    if opening_hours is None:
        return None
    now = services().clock().astimezone(opening_hours.zone)
    return None if opening_hours.is_open(now) else _Closed(opening_hours, now)


def _lockout_from_now() -> datetime:
    """Return when a lockout starting now would end: the other guesses in flight are settling it."""
    return utcnow() + timedelta(seconds=current_app.config["LOCKOUT_SECONDS"])


def _stuck_before() -> datetime:
    """Return when a send must have started to be stuck if it is still unfinished now."""
    wait = current_app.config["TWILIO_TIMEOUT_SECONDS"] + STUCK_MARGIN_SECONDS
    return utcnow() - timedelta(seconds=wait)


def _is_locked(caller: CallerAtLine) -> bool:
    return caller.locked_until is not None and caller.locked_until > utcnow()


def _check_code(call: _Call, caller: CallerAtLine, digits: str) -> CheckResult:
    """Check six digits where the caller's code comes from: their app, or the provider."""
    if caller.code_by == CodeBy.APP:
        return services().app_codes.check(caller.participant_id, caller.app_secret, digits)
    return services().codes.check(call.phone, digits)


def _sent_by(caller: CallerAtLine) -> CodeBy:
    """Return how this caller's code is sent: WhatsApp only while Verify can send it."""
    if caller.code_by != CodeBy.WHATSAPP:
        return CodeBy.SMS
    if current_app.config["WHATSAPP_CODES"]:
        return CodeBy.WHATSAPP
    # Verify was turned off after they were set to WhatsApp: a text beats no code at all.
    log.warning("WhatsApp codes need VERIFY_SERVICE_SID: sending this caller's code by SMS")
    return CodeBy.SMS


def _asked_by(caller: CallerAtLine) -> CodeBy:
    """Return where the caller's code comes from, for the prompt (without logging anything)."""
    if caller.code_by == CodeBy.WHATSAPP and not current_app.config["WHATSAPP_CODES"]:
        return CodeBy.SMS
    return caller.code_by


def _language_of(caller: CallerAtLine | None) -> str:
    """Return the language the caller's room speaks; before the room is known, the default."""
    return DEFAULT_LANGUAGE if caller is None else _spoken(caller.language)


def _spoken(language: str) -> str:
    """Return `language` if the line has its catalogue, else the default."""
    if language not in LANGUAGES:
        # Its catalogue was removed after the room chose it: English beats silence.
        log.warning("room language %r has no catalogue: speaking %s", language, DEFAULT_LANGUAGE)
        return DEFAULT_LANGUAGE
    return language


def _welcome(caller: CallerAtLine, by: CodeBy) -> str:
    language = _language_of(caller)
    urls = _gather_urls(by=by, language=language)
    return twiml.welcome_xml(caller.name or "", *urls, by, language)


def _code_by(value: str | None) -> CodeBy:
    try:
        return CodeBy(value)
    except ValueError:
        return CodeBy.SMS


def _gather_urls(
    reprompt: int = 1, by: CodeBy = CodeBy.SMS, language: str = DEFAULT_LANGUAGE
) -> tuple[str, str]:
    """Return the Gather's action and where to go when it hears nothing.

    The no-input URL says where the code comes from and the room's language, so the re-prompt
    can say it again without looking the caller up.
    """
    prefix = _public_path_prefix()
    method = "" if by == CodeBy.SMS else f"&by={by.value}"
    lang = "" if language == DEFAULT_LANGUAGE else f"&lang={language}"
    return f"{prefix}/gather", f"{prefix}/gather?reprompt={reprompt}{method}{lang}"


def _public_path_prefix() -> str:
    """Return PUBLIC_BASE_URL's path, for a line served under a prefix such as /line."""
    base = current_app.config["PUBLIC_BASE_URL"]
    return urlsplit(base).path.rstrip("/") if base else ""


def _public_url(path: str) -> str:
    base = current_app.config["PUBLIC_BASE_URL"] or request.host_url.rstrip("/")
    return f"{base}{path}"


def _twiml(response: VoiceResponse) -> Response:
    return _xml(twiml.to_xml(response))


def _xml(answer: str) -> Response:
    return Response(answer, status=200, mimetype="text/xml")
