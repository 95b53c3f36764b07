"""The console's forms: every field labelled and validated here, CSRF on every POST."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import HiddenField, RadioField, SelectField, StringField
from wtforms.validators import DataRequired, Length, Optional, Regexp, ValidationError

from ivr import roster
from ivr.store import Role


def _phone_field(form, field) -> None:
    """Validate a number and keep it in E.164 form."""
    try:
        field.data = roster.phone_from_text(field.data or "")
    except roster.RosterError as error:
        raise ValidationError(str(error)) from None


def _optional_phone_field(form, field) -> None:
    if (field.data or "").strip():
        _phone_field(form, field)
    else:
        field.data = None


def _http_url(form, field) -> None:
    text = (field.data or "").strip()
    if not text:
        field.data = None
        return
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValidationError("Enter a full http:// or https:// address, or leave it empty.")
    field.data = text


class PhoneForm(FlaskForm):
    phone = StringField(
        "Your phone number",
        validators=[_phone_field],
        description="International format, e.g. +1 800 555 1234.",
        render_kw={"autocomplete": "tel", "inputmode": "tel", "autofocus": True},
    )


class ChannelForm(FlaskForm):
    channel = RadioField(
        "How should we send your code?",
        choices={
            "sms": "Text message (SMS)",
            "call": "Voice call - the digits are read out twice",
        },
        default="sms",
        validators=[DataRequired(message="Choose a text message or a voice call.")],
    )


def _six_digits(label: str) -> StringField:
    return StringField(
        label,
        validators=[Regexp(r"^\s*[0-9]{6}\s*$", message="Enter the 6 digits of your code.")],
        render_kw={
            "autocomplete": "one-time-code",
            "inputmode": "numeric",
            "pattern": "[0-9]{6}",
            "maxlength": 6,
            "autofocus": True,
        },
    )


class CodeForm(FlaskForm):
    code = _six_digits("Code")


class AppCodeForm(FlaskForm):
    """The enrolment page's confirmation (ivr/enrolment.py): a code from the new app."""

    code = _six_digits("Code your app shows now")


class RoomForm(FlaskForm):
    name = StringField(
        "Name",
        validators=[DataRequired(message="Give the room a name."), Length(max=100)],
        description="Also the conference's name at Twilio.",
    )
    line_number = StringField(
        "Line number",
        validators=[_optional_phone_field],
        description=(
            "The Twilio number callers dial for this room. Leave empty for the room that "
            "answers every other number."
        ),
    )
    hold_music_url = StringField(
        "Hold music URL",
        validators=[_http_url, Length(max=500)],
        description="Optional: what participants hear until a moderator joins.",
    )

    def validate_name(self, field) -> None:
        field.data = " ".join((field.data or "").split())
        if not field.data:
            raise ValidationError("Give the room a name.")


class ParticipantForm(FlaskForm):
    phone = StringField(
        "Phone number",
        validators=[_phone_field],
        description="International format, e.g. +1 800 555 9876.",
        render_kw={"inputmode": "tel"},
    )
    name = StringField("Name", validators=[DataRequired(message="Enter a name."), Length(max=100)])
    role = SelectField(
        "Role",
        choices={
            Role.PARTICIPANT.value: "Participant",
            Role.MODERATOR.value: "Moderator - starts and ends the conference",
        },
        default=Role.PARTICIPANT.value,
    )
    # Offered on the edit page only, with the choices the line can honour (see console.py).
    code_by = SelectField(
        "Codes by",
        choices={},
        validate_choice=False,
        description="How this participant gets the code when they call.",
    )


class ImportForm(FlaskForm):
    file = FileField("CSV file", validators=[FileRequired(message="Choose a CSV file.")])


class ApplyImportForm(FlaskForm):
    csv_text = HiddenField(validators=[DataRequired()])


class UnlockForm(FlaskForm):
    phone = HiddenField(validators=[DataRequired()])
    kind = HiddenField(validators=[DataRequired()])


class ButtonForm(FlaskForm):
    """A form that is only a button: the URL says what to do, the CSRF token says who asks."""


class CallFilterForm(FlaskForm):
    """Filters read from the query string; a GET changes nothing, so no CSRF token."""

    class Meta:
        csrf = False

    room = SelectField("Room", choices={}, validate_choice=False, validators=[Optional()])
    phone = StringField("Number", validators=[Optional(), Length(max=40)])
    outcome = SelectField("Outcome", choices={}, validate_choice=False, validators=[Optional()])


class AuditFilterForm(FlaskForm):
    """Filters for the audit trail, read from the query string."""

    class Meta:
        csrf = False

    actor = SelectField("Who", choices={}, validate_choice=False, validators=[Optional()])
    action = SelectField("Action", choices={}, validate_choice=False, validators=[Optional()])
    target = StringField("Done to", validators=[Optional(), Length(max=200)])


class TimeZoneForm(FlaskForm):
    time_zone = SelectField(
        "Show times in",
        choices=[],
        description="Every time in the console is shown in this zone, with the zone named. "
        "Other admins choose their own.",
        validators=[DataRequired(message="Choose a time zone.")],
    )
