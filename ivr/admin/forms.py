"""The console's forms: every field labelled and validated here, CSRF on every POST."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import (
    BooleanField,
    HiddenField,
    RadioField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length, Optional, Regexp, ValidationError

from ivr import hours, roster
from ivr.languages import DEFAULT_LANGUAGE, LANGUAGES
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

    time_zone = StringField(
        "Time zone",
        validators=[Length(max=64)],
        description="The IANA zone the hours are in, e.g. Europe/Berlin. Empty: UTC.",
        render_kw={"list": "time-zones", "autocomplete": "off", "spellcheck": "false"},
    )
    opening_hours = TextAreaField(
        "Opening hours",
        description=(
            "One window per line: mon-fri 09:55-11:00 (weekly; days mon to sun, ranges and "
            "lists such as mon,wed,fri) or 2026-12-03 15:00-16:30 (one date). Empty: always open."
        ),
        render_kw={"rows": 4, "spellcheck": "false"},
    )
    moderators_anytime = BooleanField(
        "Moderators may call any time", default=True, description="So they can open early."
    )
    announce_names = BooleanField(
        "Announce names", default=True, description='The others hear "Blathers has joined."'
    )
    language = SelectField("Language", choices=LANGUAGES, default=DEFAULT_LANGUAGE)

    def validate_name(self, field) -> None:
        field.data = " ".join((field.data or "").split())
        if not field.data:
            raise ValidationError("Give the room a name.")

    def validate_time_zone(self, field) -> None:
        field.data = (field.data or "").strip() or None
        try:
            hours.zone(field.data)
        except hours.HoursError as error:
            message = str(error)
            raise ValidationError(f"{message[:1].upper()}{message[1:]}.") from None

    def validate_opening_hours(self, field) -> None:
        """Keep the hours in canonical form; a bad window is named with its line."""
        try:
            field.data = hours.canonical((field.data or "").splitlines())
        except hours.HoursError as error:
            raise ValidationError(f"Line {error.line}: {error}.") from None

    def meeting_settings(self) -> dict:
        """Return the room's meeting settings as store.update_meeting takes them."""
        return {
            "time_zone": self.time_zone.data,
            "opening_hours": self.opening_hours.data,
            "moderators_anytime": self.moderators_anytime.data,
            "announce_names": self.announce_names.data,
            "language": self.language.data,
        }


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


def _printable(value):
    """Drop control characters from a filter: PostgreSQL refuses NUL in text, and none belongs."""
    if not isinstance(value, str):
        return value
    return "".join(character for character in value if character.isprintable()).strip()


class FilterForm(FlaskForm):
    """Filters read from the query string; a GET changes nothing, so no CSRF token."""

    class Meta:
        csrf = False

    def values(self) -> dict[str, str]:
        """The filters given, by field name: for the store, and for links that keep them."""
        return {name: field.data for name, field in self._fields.items() if field.data}


class CallFilterForm(FilterForm):
    room = SelectField(
        "Room", choices={}, validate_choice=False, validators=[Optional()], filters=[_printable]
    )
    phone = StringField("Number", validators=[Optional(), Length(max=40)], filters=[_printable])
    outcome = SelectField(
        "Outcome", choices={}, validate_choice=False, validators=[Optional()], filters=[_printable]
    )


class AuditFilterForm(FilterForm):
    actor = SelectField(
        "Who", choices={}, validate_choice=False, validators=[Optional()], filters=[_printable]
    )
    action = SelectField(
        "Action", choices={}, validate_choice=False, validators=[Optional()], filters=[_printable]
    )
    target = StringField("Done to", validators=[Optional(), Length(max=200)], filters=[_printable])


class TimeZoneForm(FlaskForm):
    time_zone = SelectField(
        "Show times in",
        choices=[],
        description="Every time in the console is shown in this zone, with the zone named. "
        "Other admins choose their own.",
        validators=[DataRequired(message="Choose a time zone.")],
    )
