"""/dev/phone: the browser dev phone, and /dev/outbox for the terminal one. Local mode only."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, jsonify, render_template, request

from ivr.announcements import LocalAnnouncements
from ivr.devphone import LOCAL_LINE, DevCall, DevPhones, InProcess, authenticator_code
from ivr.languages import LANGUAGES
from ivr.phones import parse_phone
from ivr.services import services
from ivr.signature import is_signed_by_twilio

bp = Blueprint("devphone", __name__, url_prefix="/dev")
LOOPBACK = {"127.0.0.1", "::1"}


@bp.before_request
def only_from_this_machine() -> None:
    # The dev phone shows every code the console outbox holds: never to another machine, even
    # when local mode was started on 0.0.0.0 by mistake.
    if request.remote_addr not in LOOPBACK:
        abort(404)


def _phones() -> DevPhones:
    app = current_app._get_current_object()
    phones = app.extensions.get("devphones")
    if phones is None:
        phones = app.extensions["devphones"] = DevPhones(
            lambda: InProcess(app), _local_announcements()
        )
    return phones


def _local_announcements() -> LocalAnnouncements | None:
    """Return local mode's stand-in for Twilio's announcements, which the dev phones play."""
    announcer = services().announcements.announcer
    return announcer if isinstance(announcer, LocalAnnouncements) else None


def _line() -> str:
    return current_app.config["TWILIO_PHONE_NUMBER"] or LOCAL_LINE


@bp.get("/phone")
def phone_page():
    # Every room with a line of its own can be dialled; every other number reaches the default.
    return render_template(
        "devphone.html",
        participants=services().store.participants(),
        line=_line(),
        lines=_lines(),
    )


def _lines() -> list[tuple[str, str]]:
    """Return the numbers the browser phone can dial, with the room and language each reaches."""
    rooms = services().store.rooms()
    lineless = ", ".join(room.name for room in rooms if room.line_number is None) or "no room"
    lines = [(_line(), f"{_line()} ({lineless})")]
    for room in rooms:
        if room.line_number and room.line_number != _line():
            language = LANGUAGES.get(room.language, room.language)
            lines.append((room.line_number, f"{room.line_number} ({room.name}, {language})"))
    return lines


@bp.post("/phone/calls")
def dial():
    body = _json_body()
    caller = str(body.get("from", "")).strip()
    phones = _phones()
    call_id, call = phones.dial(caller, str(body.get("to") or _line()))
    return jsonify(_call_state(call_id, call)), 201


@bp.get("/phone/calls/<call_id>")
def call_state(call_id: str):
    return jsonify(_call_state(call_id, _call(call_id)))


@bp.post("/phone/calls/<call_id>/keys")
def press(call_id: str):
    digits = str(_json_body().get("digits", ""))
    phones = _phones()
    with phones.lock:
        call = _call(call_id)
        call.press(digits)
    return jsonify(_call_state(call_id, call))


@bp.post("/phone/calls/<call_id>/hangup")
def hang_up(call_id: str):
    _json_body()
    phones = _phones()
    with phones.lock:
        call = _call(call_id)
        call.hang_up()
    return jsonify(_call_state(call_id, call))


@bp.get("/phone/status")
def status():
    phone = parse_phone(request.args.get("phone", ""))
    inbox = services().outbox.messages(phone) if phone else []
    return jsonify(
        inbox=[{"text": m.text, "channel": m.channel, "at": m.at.isoformat()} for m in inbox],
        app_code=authenticator_code(services(), phone) if phone else None,
        conferences=_phones().conferences.snapshot(),
    )


@bp.get("/outbox")
def outbox():
    """What the console outbox sent to a number, for `flask --app ivr call --url`."""
    config = current_app.config
    if not is_signed_by_twilio(request, config["SIGNING_TOKEN"], config["PUBLIC_BASE_URL"]):
        abort(403)
    phone = parse_phone(request.args.get("to", ""))
    messages = services().outbox.messages(phone) if phone else []
    return jsonify(messages=[{"to": m.to, "channel": m.channel, "text": m.text} for m in messages])


def _json_body() -> dict:
    # JSON only: a cross-site form cannot post it without the browser asking first.
    if not request.is_json:
        abort(415)
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else {}


def _call(call_id: str) -> DevCall:
    call = _phones().calls.get(call_id)
    if call is None:
        abort(404)
    return call


def _call_state(call_id: str, call: DevCall) -> dict:
    return {
        "id": call_id,
        "caller": call.caller,
        "transcript": call.transcript,
        "waiting_for_digits": call.waiting_for_digits,
        "ended": call.ended,
        "summary": call.summary,
        "conference": call.conference,
        "role": call.role,
    }
