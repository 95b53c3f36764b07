"""The console's pages: rooms, participants, call log, lockouts and live conferences.

Views are thin: forms validate, the store reads and writes (through the same functions as the
command line), the Twilio client mutes and removes, and every action ends in a flash message.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from twilio.base.exceptions import TwilioRestException

from ivr import audit, enrolment, hours, roster, time_zones
from ivr.admin import auth, pages
from ivr.admin.call_export import write_calls_csv
from ivr.admin.forms import (
    ApplyImportForm,
    AuditFilterForm,
    ButtonForm,
    CallFilterForm,
    ImportForm,
    ParticipantForm,
    RoomForm,
    TimeZoneForm,
    UnlockForm,
)
from ivr.languages import LANGUAGES
from ivr.phones import international
from ivr.services import services
from ivr.store import (
    CALL_OUTCOMES,
    LOCKOUT_KINDS,
    CodeBy,
    Conflict,
    NotEnrolled,
    ParticipantRow,
    Room,
    utcnow,
)
from ivr.verification import ProviderError, twilio_faults

log = logging.getLogger(__name__)
bp = Blueprint(
    "admin",
    __name__,
    url_prefix="/admin",
    template_folder="templates",
    static_folder="static",
)
bp.before_request(auth.require_admin)
pages.set_up(bp)

CALLS_PER_PAGE = 50
# Further than anyone pages; keeps OFFSET inside what SQLite and PostgreSQL accept.
MAX_PAGE = 100_000
# What Twilio's call SIDs look like, and so every call log row's.
CALL_SID = re.compile(r"CA[0-9a-fA-F]{32}")
AUDIT_PER_PAGE = 50
NEEDS_TWILIO = "Live control needs Twilio credentials; the line is running in local mode."


@bp.context_processor
def _names() -> dict:
    return {
        "code_by_names": roster.CODE_BY_NAMES,
        "language_names": LANGUAGES,
        "hour_lines": hours.lines,
    }


@bp.app_template_filter("phone")
def phone_filter(value: str | None) -> str:
    """Show an E.164 number in international format, anything else as it is."""
    if value and value.startswith("+"):
        try:
            return international(value)
        except ValueError:
            return value
    return value or ""


@bp.app_template_filter("when")
def when_filter(value: datetime | None) -> str:
    """Show a stored time (naive UTC) in the signed-in admin's zone, with the zone named."""
    if value is None:
        return ""
    local = value.replace(tzinfo=UTC).astimezone(admin_zone())
    return local.strftime("%Y-%m-%d %H:%M:%S ") + local.tzname()


def admin_zone() -> ZoneInfo:
    """The zone the signed-in admin chose on the settings page; UTC until they choose."""
    admin = g.get("admin")
    return time_zones.zone(admin.time_zone if admin else None)


@bp.context_processor
def _zone() -> dict:
    return {"admin_zone_name": admin_zone().key}


@bp.app_template_filter("duration")
def duration_filter(value: timedelta | None) -> str:
    """Say how long something took, to the second: "45 s", "3 min 05 s", "1 h 02 min"."""
    if value is None:
        return ""
    seconds = max(0, round(value.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


@bp.app_template_filter("minutes_left")
def minutes_left_filter(until: datetime) -> str:
    minutes = max(1, -(-int((until - utcnow()).total_seconds()) // 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


@bp.get("/")
def dashboard():
    store = services().store
    return render_template(
        "admin/dashboard.html",
        rooms=store.rooms(),
        sizes=store.room_sizes(),
        live=store.live_members(),
        lockouts=store.lockouts(),
        recent=store.calls_page(per_page=8).calls,
    )


# -- rooms ------------------------------------------------------------------------------------


@bp.get("/rooms")
def rooms():
    store = services().store
    return render_template(
        "admin/rooms.html", rooms=store.rooms(), sizes=store.room_sizes(), button=ButtonForm()
    )


@bp.route("/rooms/new", methods=["GET", "POST"])
def new_room():
    form = RoomForm()
    if form.validate_on_submit():
        try:
            room = services().store.create_room(
                form.name.data, form.line_number.data, form.hold_music_url.data
            )
        except Conflict as error:
            form.form_errors.append(f"Not saved: {error}.")
        else:
            services().store.update_meeting(room.id, **form.meeting_settings())
            audit.record(
                "room.create", f"room {room.name}", _room_values(services().store.room(room.id))
            )
            flash(f"Room {room.name} created.", "success")
            return redirect(url_for("admin.room", room_id=room.id))
    return _form_page("admin/room_form.html", form, room=None, zones=_zone_names())


@bp.route("/rooms/<int:room_id>/edit", methods=["GET", "POST"])
def edit_room(room_id: int):
    room = _room_or_404(room_id)
    form = RoomForm(obj=room)
    if form.validate_on_submit():
        try:
            changed = services().store.update_room(
                room_id, form.name.data, form.line_number.data, form.hold_music_url.data
            )
        except Conflict as error:
            form.form_errors.append(f"Not saved: {error}.")
        else:
            if not changed or not services().store.update_meeting(
                room_id, **form.meeting_settings()
            ):
                abort(404)
            after = _room_values(services().store.room(room_id))
            audit.record_room_edit(
                f"room {form.name.data}", audit.changed(_room_values(room), after)
            )
            flash(f"Room {form.name.data} saved.", "success")
            return redirect(url_for("admin.room", room_id=room_id))
    return _form_page("admin/room_form.html", form, room=room, zones=_zone_names())


@bp.route("/rooms/<int:room_id>/delete", methods=["GET", "POST"])
def delete_room(room_id: int):
    room = _room_or_404(room_id)
    form = ButtonForm()
    if form.validate_on_submit():
        count = services().store.room_sizes().get(room.name, 0)
        if services().store.delete_room(room_id):
            audit.record("room.delete", f"room {room.name}", {"participants": count})
        flash(f"Room {room.name} and its participants were deleted.", "success")
        return redirect(url_for("admin.rooms"))
    count = services().store.room_sizes().get(room.name, 0)
    return render_template("admin/room_delete.html", room=room, count=count, form=form)


# -- participants -----------------------------------------------------------------------------


@bp.route("/rooms/<int:room_id>", methods=["GET", "POST"])
def room(room_id: int):
    """List a room's participants, with search, and add one."""
    room = _room_or_404(room_id)
    form = ParticipantForm()
    if form.validate_on_submit():
        row = _participant_row(form, room)
        if row is not None:
            existing = {p.phone: p for p in services().store.participants(room.name)}
            services().store.add_participant(row)
            before = existing.get(row.phone)
            verb = "updated" if before else "added"
            audit.record(
                "participant.edit" if before else "participant.add",
                audit.person(row.name, row.phone, room.name),
                audit.changed(audit.participant_values(before), audit.participant_values(row))
                if before
                else audit.participant_values(row),
            )
            flash(f"{row.name} ({international(row.phone)}) {verb} as {row.role.value}.", "success")
            return redirect(url_for("admin.room", room_id=room_id))
    search = request.args.get("q", "").strip()
    return _form_page(
        "admin/room.html",
        form,
        room=room,
        search=search,
        participants=services().store.participants(room.name, search or None),
        button=ButtonForm(),
    )


@bp.route("/rooms/<int:room_id>/participants/<phone>/edit", methods=["GET", "POST"])
def edit_participant(room_id: int, phone: str):
    room = _room_or_404(room_id)
    current = _participant_or_404(room, phone)
    form = ParticipantForm(
        data={
            "phone": current.phone,
            "name": current.name,
            "role": current.role.value,
            "code_by": current.code_by.value,
        }
    )
    form.code_by.choices = _code_by_choices(current.code_by)
    if form.validate_on_submit():
        row = _participant_row(form, room, form.code_by.data)
        if row is not None:
            try:
                services().store.update_participant(phone, row)
            except Conflict as error:
                form.phone.errors.append(f"{error}.")
            except NotEnrolled:
                form.code_by.errors.append(
                    "Only the participant can set up an authenticator app: send them an "
                    "invitation below."
                )
            else:
                audit.record(
                    "participant.edit",
                    audit.person(row.name, row.phone, room.name),
                    audit.changed(audit.participant_values(current), audit.participant_values(row)),
                )
                saved = f"{row.name} ({international(row.phone)}) saved."
                if current.code_by == CodeBy.APP and row.code_by != CodeBy.APP:
                    saved += (
                        " Their authenticator app is reset: codes now go by "
                        f"{roster.CODE_BY_NAMES[row.code_by]}."
                    )
                flash(saved, "success")
                return redirect(url_for("admin.room", room_id=room_id))
    return _form_page(
        "admin/participant_form.html",
        form,
        room=room,
        participant=current,
        button=ButtonForm(),
        invites=current_app.config["INVITE_TEXTS"],
    )


@bp.post("/rooms/<int:room_id>/participants/<phone>/invite")
def invite_participant(room_id: int, phone: str):
    """Text the participant a link to set up an authenticator app themselves."""
    room = _room_or_404(room_id)
    _participant_or_404(room, phone)
    if ButtonForm().validate_on_submit():
        try:
            name = enrolment.invite(phone, room.name)
        except enrolment.InviteError as error:
            flash(f"No invitation was sent: {error}.", "error")
        else:
            audit.record("participant.invite", audit.person(name, phone, room.name))
            flash(
                f"Sent {name} ({international(phone)}) a text with a link to set up an "
                f"authenticator app. It works once, for {enrolment.INVITE_HOURS} hours; "
                "codes go as before until they finish.",
                "success",
            )
    return redirect(url_for("admin.edit_participant", room_id=room_id, phone=phone))


@bp.post("/rooms/<int:room_id>/participants/<phone>/remove")
def remove_participant(room_id: int, phone: str):
    room = _room_or_404(room_id)
    if ButtonForm().validate_on_submit():
        gone = next((p for p in services().store.participants(room.name) if p.phone == phone), None)
        if gone is not None and services().store.remove_participant(phone, room.name):
            audit.record("participant.remove", audit.person(gone.name, phone, room.name))
            flash(f"{international(phone)} removed from {room.name}.", "success")
        else:
            flash(f"{phone} was not in {room.name}.", "error")
    return redirect(url_for("admin.room", room_id=room_id))


@bp.route("/participants/import", methods=["GET", "POST"])
def import_participants():
    """Upload a CSV and preview it; nothing changes until the preview is applied."""
    form = ImportForm()
    if form.validate_on_submit():
        text = _decoded(form.file.data.read())
        rows = _parsed_csv(text)
        if rows is not None:
            existing = {(p.room, p.phone) for p in services().store.participants()}
            return render_template(
                "admin/import_preview.html",
                rows=rows,
                existing=existing,
                apply_form=ApplyImportForm(csv_text=text),
                filename=form.file.data.filename,
            )
    return _form_page("admin/import.html", form)


@bp.post("/participants/import/apply")
def apply_import():
    form = ApplyImportForm()
    if form.validate_on_submit():
        rows = _parsed_csv(form.csv_text.data)
        if rows is not None:
            rooms_before = audit.room_names()
            try:
                count = services().store.import_participants(rows)
            except NotEnrolled as error:
                flash(f"Nothing was imported: {error}.", "error")
                return redirect(url_for("admin.import_participants"))
            audit.record_new_rooms(rooms_before)
            rooms = sorted({row.room for row in rows})
            audit.record("participant.import", f"rooms {', '.join(rooms)}", {"rows": count})
            flash(f"Imported {count} participant{'s' if count != 1 else ''}.", "success")
            return redirect(url_for("admin.rooms"))
    else:
        flash("Nothing was imported: the preview was incomplete. Upload the file again.", "error")
    return redirect(url_for("admin.import_participants"))


@bp.get("/participants/export.csv")
def export_participants():
    room = request.args.get("room") or None
    handle = io.StringIO()
    roster.write_csv(services().store.participants(room), handle)
    filename = f"participants-{room}.csv" if room else "participants.csv"
    return Response(
        handle.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{_safe_filename(filename)}"'},
    )


# -- call log and lockouts ----------------------------------------------------------------------


@bp.get("/calls")
def calls():
    form = _call_filters()
    result = services().store.calls_page(
        **_filter_values(form), page=_page_number(), per_page=CALLS_PER_PAGE
    )
    filters = form.values()
    return render_template("admin/calls.html", form=form, result=result, filters=filters)


@bp.get("/calls.csv")
def export_calls():
    """Every call the filters match, one row each, for a spreadsheet. Codes are never logged."""
    form = _call_filters()
    result = services().store.calls_page(**_filter_values(form), per_page=None)
    handle = io.StringIO()
    write_calls_csv(result.calls, handle)
    return Response(
        handle.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": 'attachment; filename="calls.csv"'},
    )


@bp.get("/calls/<call_sid>")
def call(call_sid: str):
    if not CALL_SID.fullmatch(call_sid):
        abort(404)
    events = services().store.call_events(call_sid)
    if not events:
        abort(404)
    [summary] = services().store.calls_page(call_sid=call_sid).calls
    return render_template("admin/call.html", call=summary, events=events)


def _call_filters() -> CallFilterForm:
    store = services().store
    form = CallFilterForm(request.args)
    form.room.choices = {"": "All rooms"} | {name: name for name in store.logged_rooms()}
    form.outcome.choices = {"": "All outcomes"} | {o.value: o.value for o in CALL_OUTCOMES}
    return form


def _page_number() -> int:
    """The page asked for, within reason: a huge number must not overflow the SQL offset."""
    return min(max(1, request.args.get("page", default=1, type=int)), MAX_PAGE)


def _filter_values(form: CallFilterForm) -> dict:
    return {
        "room": form.room.data or None,
        "phone": (form.phone.data or "").strip() or None,
        "outcome": form.outcome.data or None,
    }


@bp.get("/lockouts")
def lockouts():
    lockouts = services().store.lockouts()
    forms = {(x.kind, x.phone): UnlockForm(phone=x.phone, kind=x.kind) for x in lockouts}
    return render_template("admin/lockouts.html", lockouts=lockouts, forms=forms)


@bp.post("/lockouts/unlock")
def unlock():
    form = UnlockForm()
    guard = LOCKOUT_KINDS.get(form.kind.data or "")
    if form.validate_on_submit() and guard is not None:
        if services().store.unlock(form.phone.data, guard):
            audit.record("lockout.unlock", f"{phone_filter(form.phone.data)} ({form.kind.data})")
            flash(f"{phone_filter(form.phone.data)} is unlocked.", "success")
        else:
            flash(f"{phone_filter(form.phone.data)} was not locked any more.", "info")
    else:
        flash("Nothing was unlocked: the request was incomplete.", "error")
    return redirect(url_for("admin.lockouts"))


# -- live conferences -------------------------------------------------------------------------


@bp.get("/live")
def live():
    members = services().store.live_members()
    by_room: dict[str, list] = {}
    for member in members:
        by_room.setdefault(member.room, []).append(member)
    return render_template(
        "admin/live.html",
        by_room=by_room,
        button=ButtonForm(),
        has_twilio=services().twilio is not None,
    )


@bp.post("/live/<call_sid>/mute")
def mute(call_sid: str):
    return _change_member(call_sid, muted=True)


@bp.post("/live/<call_sid>/unmute")
def unmute(call_sid: str):
    return _change_member(call_sid, muted=False)


@bp.post("/live/<call_sid>/remove")
def remove_member(call_sid: str):
    return _change_member(call_sid, muted=None)


@bp.post("/live/conferences/<conference_sid>/end")
def end_conference(conference_sid: str):
    if not ButtonForm().validate_on_submit():
        abort(400)
    store, client = services().store, services().twilio
    room = next((m.room for m in store.live_members() if m.conference_sid == conference_sid), None)
    if room is None:
        flash("That conference has ended already.", "info")
        return redirect(url_for("admin.live"))
    if client is None:
        flash(NEEDS_TWILIO, "error")
        return redirect(url_for("admin.live"))
    try:
        present = _ask_twilio(
            "end conference",
            "conference_end",
            lambda: client.conferences(conference_sid).update(status="completed"),
        )
    except ProviderError as error:
        log.error("could not end conference %s: %s", conference_sid, error)
        flash(f"Twilio did not end the conference in {room}: {error}. Try again.", "error")
        return redirect(url_for("admin.live"))
    store.conference_ended(conference_sid)
    if not present:
        flash(f"The conference in {room} had ended already.", "info")
        return redirect(url_for("admin.live"))
    audit.record("live.end", f"conference in {room}")
    flash(f"Ended the conference in {room}.", "success")
    return redirect(url_for("admin.live"))


def _change_member(call_sid: str, *, muted: bool | None):
    """Mute, unmute (muted True/False) or remove (None) a caller through Twilio's REST API."""
    if not ButtonForm().validate_on_submit():
        abort(400)
    store, client = services().store, services().twilio
    member = store.live_member(call_sid)
    if member is None:
        flash("That caller is no longer in a conference.", "info")
        return redirect(url_for("admin.live"))
    who = member.label or phone_filter(member.phone) or "The caller"
    if client is None:
        flash(NEEDS_TWILIO, "error")
        return redirect(url_for("admin.live"))
    participant = client.conferences(member.conference_sid).participants(call_sid)
    action = "remove" if muted is None else ("mute" if muted else "unmute")
    operation = f"conference_{action}"
    try:
        if muted is None:
            present = _ask_twilio(f"{action} participant", operation, participant.delete)
        else:
            present = _ask_twilio(
                f"{action} participant", operation, lambda: participant.update(muted=muted)
            )
    except ProviderError as error:
        log.error("could not %s %s: %s", action, call_sid, error)
        flash(f"Twilio did not {action} {who}: {error}. Try again.", "error")
        return redirect(url_for("admin.live"))
    if not present:
        store.member_left(call_sid)
        flash(f"{who} had already left the conference.", "info")
        return redirect(url_for("admin.live"))
    audit.record(f"live.{action}", f"{who} in {member.room}")
    if muted is None:
        store.member_left(call_sid)
        flash(f"{who} was removed from {member.room}.", "success")
    else:
        store.member_muted(call_sid, muted)
        flash(f"{who} is {'muted' if muted else 'unmuted'}.", "success")
    return redirect(url_for("admin.live"))


def _ask_twilio(action: str, operation: str, send: Callable[[], object]) -> bool:
    """Make one REST request; False if Twilio no longer knows the call or conference.

    Raise ProviderError for any other failure.
    """
    with twilio_faults(action, operation, services().metrics):
        try:
            send()
        except TwilioRestException as error:
            if error.status == 404:
                return False
            raise
    return True


# -- audit trail and settings -----------------------------------------------------------------


@bp.get("/audit")
def audit_trail():
    store = services().store
    form = AuditFilterForm(request.args)
    form.actor.choices = {"": "Everyone"} | {name: name for name in store.audit_actors()}
    form.action.choices = {"": "Every action"} | audit.ACTIONS
    result = store.audit_page(
        actor=form.actor.data or None,
        action=form.action.data or None,
        target=form.target.data or None,
        page=_page_number(),
        per_page=AUDIT_PER_PAGE,
    )
    filters = form.values()
    return render_template(
        "admin/audit.html",
        form=form,
        result=result,
        filters=filters,
        actions=audit.ACTIONS,
        describe=audit.describe_changes,
    )


@bp.route("/settings", methods=["GET", "POST"])
def settings():
    """The signed-in admin's own settings: the time zone their console shows times in."""
    form = TimeZoneForm(data={"time_zone": admin_zone().key})
    form.time_zone.choices = time_zones.choices()
    if form.validate_on_submit():
        old = admin_zone().key
        services().store.set_admin_time_zone(g.admin.id, form.time_zone.data)
        g.admin = services().store.admin(g.admin.id)
        audit.record(
            "admin.time_zone",
            audit.admin_name(g.admin),
            audit.changed({"time_zone": old}, {"time_zone": form.time_zone.data}),
        )
        flash(f"Times are now shown in {form.time_zone.data}.", "success")
        return redirect(url_for("admin.settings"))
    return _form_page("admin/settings.html", form)


# -- helpers ----------------------------------------------------------------------------------


def _room_values(room: Room) -> dict:
    """A room's settings as the audit trail compares them."""
    return {
        "name": room.name,
        "line_number": room.line_number,
        "hold_music_url": room.hold_music_url,
        "time_zone": room.time_zone,
        "opening_hours": room.opening_hours,
        "moderators_anytime": room.moderators_anytime,
        "announce_names": room.announce_names,
        "language": room.language,
    }


def _zone_names() -> list[str]:
    """Return the time zones the room form suggests as the admin types."""
    return sorted(hours.zone_names())


def _room_or_404(room_id: int) -> Room:
    room = services().store.room(room_id)
    if room is None:
        abort(404)
    return room


def _participant_or_404(room: Room, phone: str) -> ParticipantRow:
    found = next((p for p in services().store.participants(room.name) if p.phone == phone), None)
    if found is None:
        abort(404)
    return found


def _code_by_choices(current: CodeBy) -> dict[str, str]:
    """Offer what the line can honour now, and always what the participant has."""
    offered = [CodeBy.SMS]
    if current_app.config["WHATSAPP_CODES"] or current == CodeBy.WHATSAPP:
        offered.append(CodeBy.WHATSAPP)
    if current == CodeBy.APP:
        offered.append(CodeBy.APP)  # kept or left; never chosen here
    return {method.value: roster.CODE_BY_NAMES[method] for method in offered}


def _participant_row(
    form: ParticipantForm, room: Room, code_by: str | None = None
) -> ParticipantRow | None:
    """Validate with the same rules as the command line; put problems on the form."""
    try:
        return roster.participant(
            form.phone.data,
            form.name.data,
            form.role.data,
            room.name,
            code_by,
            whatsapp_allowed=current_app.config["WHATSAPP_CODES"],
        )
    except roster.RosterError as error:
        if str(error) == roster.WHATSAPP_NEEDS_VERIFY:
            form.code_by.errors.append("WhatsApp codes need Twilio Verify: set VERIFY_SERVICE_SID.")
        else:
            form.name.errors.append(str(error).capitalize() + ".")
        return None


def _parsed_csv(text: str | None) -> list[ParticipantRow] | None:
    if text is None:
        flash("Nothing was imported: the file is not UTF-8 text.", "error")
        return None
    try:
        return roster.read_csv(text, whatsapp_allowed=current_app.config["WHATSAPP_CODES"])
    except roster.RosterError as error:
        flash(f"Nothing was imported: {error}.", "error")
        return None


def _decoded(data: bytes) -> str | None:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None


def _safe_filename(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _form_page(template: str, form, **context):
    """Render a page with a form: 400 when a submitted form was refused, else 200."""
    refused = request.method == "POST" and (form.errors or getattr(form, "form_errors", None))
    return render_template(template, form=form, **context), 400 if refused else 200
