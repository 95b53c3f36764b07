"""Opening hours: the syntax, the clock at a window's edges, the closed line, the CLI and console.

The app's clock is set (services().clock), never waited for. Webhooks are signed; Twilio is
faked over HTTP, so "nothing sent" is what the fake Twilio was asked.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from ivr import create_app, hours, twiml
from ivr.store import CallLogEntry, CodeSend, NumberGuard, Room
from tests.conftest import (
    BLATHERS,
    MABEL,
    MODERATOR,
    STRANGER,
    call_params,
    lock_out,
    post_form,
    said,
    seed_roster,
    signed_post,
    twiml_of,
    verbs,
)

BERLIN = ZoneInfo("Europe/Berlin")
WEEKDAYS_TEN_TO_ELEVEN = "mon-fri 09:55-11:00"


def berlin(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN)


# -- the syntax --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        (["mon-fri 09:55-11:00"], "mon-fri 09:55-11:00"),
        (["Mon-Fri  9:55 - 11:00"], "mon-fri 09:55-11:00"),
        (["mon,wed,fri 14:00-15:00"], "mon,wed,fri 14:00-15:00"),
        (["fri,mon,wed 14:00-15:00"], "mon,wed,fri 14:00-15:00"),
        (["mon,tue,wed,thu 08:00-09:00"], "mon-thu 08:00-09:00"),
        # A range may wrap past Sunday.
        (["fri-mon 10:00-12:00"], "mon,fri-sun 10:00-12:00"),
        (["sat 20:00-24:00"], "sat 20:00-24:00"),
        (["2026-12-03 15:00-16:30"], "2026-12-03 15:00-16:30"),
        # Weekly windows first, one-off windows by date; repeats once; blank lines dropped.
        (
            ["2026-12-03 15:00-16:30", "", "tue 10:00-11:00", "mon 10:00-11:00", "tue 10:00-11:00"],
            "mon 10:00-11:00\ntue 10:00-11:00\n2026-12-03 15:00-16:30",
        ),
        ([], None),
        (["   "], None),
    ],
)
def test_hours_are_stored_in_one_canonical_form(given, stored):
    assert hours.canonical(given) == stored


@pytest.mark.parametrize(
    ("window", "message"),
    [
        ("mox 09:00-10:00", "unknown day 'mox'"),
        ("mon-frx 09:00-10:00", "unknown day 'frx'"),
        ("mon 25:00-26:00", "bad time '25:00'"),
        ("mon 09:60-10:00", "bad time '09:60'"),
        ("mon 9-10", "bad time '9'"),
        ("mon 24:00-24:00", "bad time '24:00'"),
        ("mon 11:00-09:55", "ends before it starts: 11:00-09:55"),
        ("mon 10:00-10:00", "ends as it starts: 10:00-10:00"),
        ("2026-13-03 15:00-16:30", "bad date '2026-13-03'"),
        ("2026-02-30 15:00-16:30", "bad date '2026-02-30'"),
        ("9999-12-31 22:00-23:00", "date too far ahead: '9999-12-31'"),
        ("mon", "not a window: 'mon'"),
        ("mon 09:00", "bad times '09:00'"),
    ],
)
def test_a_bad_window_is_refused_naming_the_bad_bit(window, message):
    with pytest.raises(hours.HoursError) as raised:
        hours.window(window)
    assert str(raised.value).startswith(message)


def test_a_bad_line_is_named_by_its_number():
    with pytest.raises(hours.HoursError) as raised:
        hours.parse("mon-fri 09:55-11:00\n\nmox 10:00-11:00")
    assert (raised.value.line, str(raised.value)) == (
        3,
        "unknown day 'mox' (use mon tue wed thu fri sat sun)",
    )


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Europe/Berln", "unknown zone 'Europe/Berln'"),
        ("europe/berlin", "unknown zone 'europe/berlin' (did you mean 'Europe/Berlin'?)"),
        ("Europe", "unknown zone 'Europe'"),
        ("../etc/passwd", "unknown zone '../etc/passwd'"),
        ("localtime", "unknown zone 'localtime'"),
        ("", "unknown zone ''"),
    ],
)
def test_an_unknown_zone_is_refused(name, message):
    with pytest.raises(hours.HoursError, match=f"^{_escaped(message)}$"):
        hours.zone(name)


def test_no_zone_is_utc():
    assert hours.zone(None) == ZoneInfo("UTC")


def _escaped(text: str) -> str:
    import re

    return re.escape(text)


# -- the clock at the edges --------------------------------------------------------------------


@pytest.fixture
def weekdays():
    return hours.schedule("Europe/Berlin", WEEKDAYS_TEN_TO_ELEVEN)


@pytest.mark.parametrize(
    ("at", "is_open"),
    [
        (berlin(2026, 11, 23, 9, 54), False),  # Monday, one minute before
        (berlin(2026, 11, 23, 9, 55), True),  # at the start
        (berlin(2026, 11, 23, 9, 56), True),  # one minute after the start
        (berlin(2026, 11, 23, 10, 59), True),  # one minute before the end
        (berlin(2026, 11, 23, 11, 0), False),  # at the end
        (berlin(2026, 11, 23, 11, 1), False),  # one minute after
        (berlin(2026, 11, 28, 10, 0), False),  # Saturday
    ],
)
def test_a_window_is_open_from_its_start_until_its_end(weekdays, at, is_open):
    assert weekdays.is_open(at) is is_open
    # The same instant in another zone is the same answer.
    assert weekdays.is_open(at.astimezone(UTC)) is is_open


def test_next_opening_is_the_next_start_at_or_after_now(weekdays):
    assert weekdays.next_opening(berlin(2026, 11, 23, 9, 54)) == berlin(2026, 11, 23, 9, 55)
    assert weekdays.next_opening(berlin(2026, 11, 23, 9, 55)) == berlin(2026, 11, 23, 9, 55)
    assert weekdays.next_opening(berlin(2026, 11, 23, 11, 0)) == berlin(2026, 11, 24, 9, 55)
    # Friday after the window: the Monday after the weekend.
    assert weekdays.next_opening(berlin(2026, 11, 27, 11, 0)) == berlin(2026, 11, 30, 9, 55)


@pytest.mark.parametrize(
    ("friday", "monday", "offset_after"),
    [
        # The last Sunday of March (29th): Berlin moves from UTC+1 to UTC+2.
        (berlin(2026, 3, 27, 12), datetime(2026, 3, 30, 7, 55, tzinfo=UTC), timedelta(hours=2)),
        # The last Sunday of October (25th): back from UTC+2 to UTC+1.
        (berlin(2026, 10, 23, 12), datetime(2026, 10, 26, 8, 55, tzinfo=UTC), timedelta(hours=1)),
    ],
)
def test_a_window_keeps_its_wall_clock_time_across_a_dst_change(
    weekdays, friday, monday, offset_after
):
    opens = weekdays.next_opening(friday)
    assert opens == monday
    assert (opens.hour, opens.minute, opens.utcoffset()) == (9, 55, offset_after)
    # The window is 09:55-11:00 by the new offset; by Friday's it would be an hour off.
    assert weekdays.is_open(monday - timedelta(minutes=1)) is False
    assert weekdays.is_open(monday) is True
    assert weekdays.is_open(monday + timedelta(minutes=64)) is True
    assert weekdays.is_open(monday + timedelta(minutes=65)) is False


def test_a_one_off_window_adds_to_the_weekly_hours_of_its_day():
    # Thursday 3 December 2026 has the weekly 09:55-11:00 and a one-off 15:00-16:30.
    both = hours.schedule("Europe/Berlin", f"{WEEKDAYS_TEN_TO_ELEVEN}\n2026-12-03 15:00-16:30")
    assert both.is_open(berlin(2026, 12, 3, 10, 30)) is True
    assert both.is_open(berlin(2026, 12, 3, 14, 59)) is False
    assert both.is_open(berlin(2026, 12, 3, 15, 0)) is True
    assert both.is_open(berlin(2026, 12, 3, 16, 30)) is False
    # The one-off is not weekly: the next Thursday afternoon is closed.
    assert both.is_open(berlin(2026, 12, 10, 15, 30)) is False
    assert both.next_opening(berlin(2026, 12, 3, 11, 0)) == berlin(2026, 12, 3, 15, 0)
    assert both.next_opening(berlin(2026, 12, 3, 16, 30)) == berlin(2026, 12, 4, 9, 55)


def test_a_one_off_window_far_ahead_is_the_next_opening():
    once = hours.schedule("America/New_York", "2027-06-01 09:00-10:00")
    assert once.next_opening(datetime(2026, 11, 23, tzinfo=UTC)) == datetime(
        2027, 6, 1, 9, tzinfo=ZoneInfo("America/New_York")
    )


def test_only_past_windows_never_open_again():
    past = hours.schedule("UTC", "2026-01-01 09:00-10:00")
    assert past.is_open(datetime(2026, 11, 23, 9, 30, tzinfo=UTC)) is False
    assert past.next_opening(datetime(2026, 11, 23, tzinfo=UTC)) is None


def test_no_hours_is_always_open_and_parsing_is_cached():
    assert hours.schedule("Europe/Berlin", None) is None
    assert hours.schedule(None, "") is None
    first = hours.schedule("Europe/Berlin", WEEKDAYS_TEN_TO_ELEVEN)
    assert hours.schedule("Europe/Berlin", WEEKDAYS_TEN_TO_ELEVEN) is first


# -- the sentence ------------------------------------------------------------------------------

THURSDAY_MORNING = berlin(2026, 11, 26, 8, 0)


@pytest.mark.parametrize(
    ("opens_at", "when"),
    [
        (berlin(2026, 11, 26, 15, 0), "today at 3:00 p.m."),
        (berlin(2026, 11, 27, 9, 55), "tomorrow at 9:55 a.m."),
        (berlin(2026, 11, 27, 0, 30), "tomorrow at 12:30 a.m."),
        (berlin(2026, 11, 30, 9, 55), "on Monday at 9:55 a.m."),
        (berlin(2026, 12, 2, 12, 0), "on Wednesday at 12:00 p.m."),  # six days ahead
        (berlin(2026, 12, 3, 15, 0), "on Thursday, December 3 at 3:00 p.m."),  # a week ahead
    ],
)
def test_the_closed_room_says_when_it_opens_and_hangs_up(opens_at, when):
    root = twiml_of_builder(twiml.room_closed(opens_at, THURSDAY_MORNING, "Europe/Berlin"))
    assert verbs(root) == ["Say", "Hangup"]
    assert said(root) == [f"This meeting room opens {when}, Berlin time. Goodbye."]


def test_a_room_that_never_opens_again_says_it_is_closed():
    root = twiml_of_builder(twiml.room_closed(None, THURSDAY_MORNING, "Europe/Berlin"))
    assert verbs(root) == ["Say", "Hangup"]
    assert said(root) == ["This meeting room is closed. Goodbye."]


@pytest.mark.parametrize(
    ("zone_name", "place"),
    [
        ("America/New_York", "New York time"),
        ("America/Argentina/Buenos_Aires", "Buenos Aires time"),
        ("UTC", "UTC time"),
        ("Etc/UTC", "UTC time"),
        # A fixed offset has no city: its offset is named, the right way round (GMT+5 is UTC-5).
        ("Etc/GMT+5", "UTC-5 time"),
    ],
)
def test_the_zone_is_named_by_its_city(zone_name, place):
    zone = ZoneInfo(zone_name)
    now = datetime(2026, 11, 26, 8, 0, tzinfo=zone)
    root = twiml_of_builder(twiml.room_closed(now + timedelta(hours=7), now, zone_name))
    assert said(root) == [f"This meeting room opens today at 3:00 p.m., {place}. Goodbye."]


def twiml_of_builder(response):
    import xml.etree.ElementTree as ET

    return ET.fromstring(response.to_xml())


# -- the line ----------------------------------------------------------------------------------


def set_hours(app, hours_text: str | None, zone: str | None = "Europe/Berlin", **options):
    store = app.extensions["ivr"].store
    room = store.room_named("main")
    store.update_meeting(room.id, time_zone=zone, opening_hours=hours_text, **options)


def set_clock(app, at: datetime) -> None:
    app.extensions["ivr"].clock = lambda: at


def rows(app, model) -> list:
    store = app.extensions["ivr"].store
    with store.engine.connect() as connection:
        return list(connection.execute(select(model.__table__)))


def outcomes(app) -> list[str]:
    store = app.extensions["ivr"].store
    with store.engine.connect() as connection:
        return list(connection.scalars(select(CallLogEntry.outcome).order_by(CallLogEntry.id)))


def voice(app, caller: str, **params):
    root = twiml_of(signed_post(app.test_client(), "/voice", call_params(caller, **params)))
    app.extensions["ivr"].sender.wait_idle()
    return root


@pytest.fixture
def closed_app(app):
    """The tutorial's callers in a room open on weekdays 09:55-11:00 Berlin time; it is 11:00."""
    set_hours(app, WEEKDAYS_TEN_TO_ELEVEN)
    set_clock(app, berlin(2026, 11, 27, 11, 0))  # Friday, as the window ends
    return app


def test_a_caller_outside_the_hours_hears_when_it_opens_and_nothing_is_sent(
    closed_app, fake_twilio
):
    root = voice(closed_app, BLATHERS)

    assert verbs(root) == ["Say", "Hangup"]
    assert said(root) == ["This meeting room opens on Monday at 9:55 a.m., Berlin time. Goodbye."]
    assert fake_twilio.requests == []
    assert rows(closed_app, CodeSend) == []  # nothing counts against the send cap
    assert rows(closed_app, NumberGuard) == []  # nor against the lockout
    assert outcomes(closed_app) == ["room closed"]
    entry = rows(closed_app, CallLogEntry)[0]
    assert (entry.phone, entry.name, entry.room) == (BLATHERS, "Blathers", "main")


def test_metrics_count_the_closed_room(make_app):
    from tests.test_metrics import TOKEN, calls, scrape

    app = make_app(METRICS_TOKEN=TOKEN)
    seed_roster(app)
    set_hours(app, WEEKDAYS_TEN_TO_ELEVEN)
    set_clock(app, berlin(2026, 11, 27, 11, 0))

    voice(app, BLATHERS)

    counted = calls(scrape(app.test_client()))
    assert counted.get(("room closed", "main")) == 1
    assert ("code sent", "main") not in counted


def test_a_locked_out_caller_hears_the_room_is_closed_and_the_lockout_is_untouched(
    closed_app, fake_twilio
):
    store = closed_app.extensions["ivr"].store
    lock_out(store, BLATHERS)
    before = rows(closed_app, NumberGuard)

    root = voice(closed_app, BLATHERS)

    assert said(root) == ["This meeting room opens on Monday at 9:55 a.m., Berlin time. Goodbye."]
    assert rows(closed_app, NumberGuard) == before
    assert fake_twilio.requests == []
    assert outcomes(closed_app) == ["room closed"]


def test_hours_in_a_zone_this_server_does_not_know_leave_the_room_open(
    closed_app, fake_twilio, caplog
):
    """Saved against a newer zone database than this server's: the code still guards the room."""
    set_hours(closed_app, WEEKDAYS_TEN_TO_ELEVEN, zone="Mars/Olympus")

    moderator = voice(closed_app, MODERATOR, call_sid="CA" + "1" * 32)
    blathers = voice(closed_app, BLATHERS)

    assert said(moderator)[0].startswith("Welcome Isabelle.")
    assert said(blathers)[0].startswith("Welcome Blathers.")
    assert outcomes(closed_app) == ["code sent", "code sent"]
    assert "its opening hours cannot be read, so it stays open: unknown zone 'Mars/Olympus'" in (
        caplog.text
    )


def test_a_stranger_is_not_told_the_schedule(closed_app, fake_twilio):
    root = voice(closed_app, STRANGER)
    assert said(root) == ["Sorry, I don't recognize the number you're calling from."]
    assert outcomes(closed_app) == ["unknown number"]
    assert fake_twilio.requests == []


def test_a_caller_in_the_window_is_sent_a_code(closed_app, fake_twilio):
    set_clock(closed_app, berlin(2026, 11, 27, 10, 59))
    root = voice(closed_app, BLATHERS)
    assert verbs(root) == ["Gather", "Redirect"]
    assert said(root) == ["Welcome Blathers. Please enter the 6 digit code sent to your device."]
    assert fake_twilio.code_for(BLATHERS)
    assert outcomes(closed_app) == ["code sent"]


def test_a_moderator_may_open_the_room_early(closed_app, fake_twilio):
    root = voice(closed_app, MODERATOR)
    assert said(root) == ["Welcome Isabelle. Please enter the 6 digit code sent to your device."]
    assert fake_twilio.code_for(MODERATOR)


def test_without_moderators_anytime_a_moderator_waits_for_the_hours_too(closed_app, fake_twilio):
    set_hours(closed_app, WEEKDAYS_TEN_TO_ELEVEN, moderators_anytime=False)
    root = voice(closed_app, MODERATOR)
    assert said(root) == ["This meeting room opens on Monday at 9:55 a.m., Berlin time. Goodbye."]
    assert fake_twilio.requests == []
    assert outcomes(closed_app) == ["room closed"]


def test_a_caller_let_in_before_the_window_ends_is_not_thrown_out(builtin_app, fake_twilio):
    set_hours(builtin_app, WEEKDAYS_TEN_TO_ELEVEN)
    set_clock(builtin_app, berlin(2026, 11, 27, 10, 59))
    voice(builtin_app, BLATHERS)

    set_clock(builtin_app, berlin(2026, 11, 27, 11, 5))  # the window has ended
    client = builtin_app.test_client()
    digits = call_params(BLATHERS, Digits=fake_twilio.code_for(BLATHERS))
    root = twiml_of(signed_post(client, "/gather", digits))

    assert verbs(root) == ["Say", "Dial"]
    assert said(root) == ["That was correct. Joining conference."]


def test_a_room_with_no_window_ahead_is_closed(closed_app, fake_twilio):
    set_hours(closed_app, "2026-01-01 09:00-10:00")
    root = voice(closed_app, BLATHERS)
    assert said(root) == ["This meeting room is closed. Goodbye."]
    assert fake_twilio.requests == []


def test_a_room_without_a_zone_keeps_utc_hours(closed_app, fake_twilio):
    set_hours(closed_app, "mon-fri 15:00-16:00", zone=None)
    set_clock(closed_app, datetime(2026, 11, 27, 14, 59, tzinfo=UTC))
    root = voice(closed_app, BLATHERS)
    assert said(root) == ["This meeting room opens today at 3:00 p.m., UTC time. Goodbye."]


# -- the command line --------------------------------------------------------------------------


@pytest.fixture
def runner(make_app):
    app = make_app()
    app.extensions["ivr"].store.ensure_default_room()
    set_clock(app, berlin(2026, 11, 23, 8, 0))
    return app.test_cli_runner(), app


def room_settings(app, name: str = "main") -> tuple:
    room = app.extensions["ivr"].store.room_named(name)
    return (
        room.time_zone,
        room.opening_hours,
        room.moderators_anytime,
        room.announce_names,
        room.language,
    )


def test_hours_are_set_listed_and_cleared(runner):
    cli, app = runner
    result = cli.invoke(
        args=[
            "rooms", "hours", "main", "--tz", "Europe/Berlin",
            "--weekly", "Mon-Fri 9:55-11:00", "--weekly", "sat 10:00-12:00",
            "--once", "2026-12-03 15:00-16:30",
        ]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output == (
        "Room main is open (Europe/Berlin time):\n"
        "  mon-fri 09:55-11:00\n"
        "  sat 10:00-12:00\n"
        "  2026-12-03 15:00-16:30\n"
    )
    stored = "mon-fri 09:55-11:00\nsat 10:00-12:00\n2026-12-03 15:00-16:30"
    assert room_settings(app) == ("Europe/Berlin", stored, True, True, "en-US")

    listed = cli.invoke(args=["rooms", "list"])
    assert listed.exit_code == 0
    assert listed.output == (
        "main\tevery other number\tEurope/Berlin\t"
        "mon-fri 09:55-11:00; sat 10:00-12:00; 2026-12-03 15:00-16:30\ten-US\t"
        "moderators anytime, announces names\n"
    )

    # Without --tz the room keeps its zone.
    assert cli.invoke(args=["rooms", "hours", "main", "--weekly", "tue 08:00-09:00"]).exit_code == 0
    assert room_settings(app)[:2] == ("Europe/Berlin", "tue 08:00-09:00")

    cleared = cli.invoke(args=["rooms", "hours", "main", "--clear"])
    assert (cleared.exit_code, cleared.output) == (0, "Room main is always open.\n")
    assert room_settings(app)[1] is None


def test_hours_that_never_open_again_are_kept_with_a_warning(runner):
    cli, app = runner
    result = cli.invoke(args=["rooms", "hours", "main", "--once", "2026-01-01 09:00-10:00"])
    assert result.exit_code == 0
    assert "Warning: none of room main's windows opens again" in result.output
    assert room_settings(app)[1] == "2026-01-01 09:00-10:00"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tz", "Europe/Berln", "--weekly", "mon 09:00-10:00"], "unknown zone 'Europe/Berln'"),
        (["--weekly", "mon 25:00-26:00"], "bad time '25:00' (use 24-hour HH:MM)"),
        (["--weekly", "mon 11:00-09:55"], "ends before it starts: 11:00-09:55"),
        (["--weekly", "mox 09:00-10:00"], "unknown day 'mox' (use mon tue wed thu fri sat sun)"),
        (["--once", "2026-12-32 15:00-16:30"], "bad date '2026-12-32' (use YYYY-MM-DD)"),
        (
            ["--tz", "America/New_York", "--once", "9999-12-31 22:00-23:00"],
            "date too far ahead: '9999-12-31' (the last year is 2999)",
        ),
        (["--weekly", "2026-12-03 15:00-16:30"], "--weekly takes days, not a date"),
        (["--once", "mon 09:00-10:00"], "--once takes a date"),
        (["--clear", "--weekly", "mon 09:00-10:00"], "--clear takes no --weekly or --once windows"),
        ([], "give --weekly or --once windows, --tz, or --clear"),
    ],
)
def test_bad_hours_get_one_line_exit_1_and_change_nothing(runner, args, message):
    cli, app = runner
    cli.invoke(args=["rooms", "hours", "main", "--weekly", "tue 08:00-09:00"])
    before = room_settings(app)

    result = cli.invoke(args=["rooms", "hours", "main", *args])

    assert result.exit_code == 1
    assert len(result.output.splitlines()) == 1
    assert result.output.startswith(f"Error: {message}")
    assert room_settings(app) == before


def test_an_unknown_room_is_named(runner):
    cli, _ = runner
    result = cli.invoke(args=["rooms", "hours", "night", "--clear"])
    assert (result.exit_code, result.output) == (1, "Error: no room named 'night'\n")


def test_language_and_options_are_set(runner):
    cli, app = runner
    result = cli.invoke(
        args=[
            "rooms", "set", "main", "--language", "de-DE",
            "--no-announce-names", "--no-moderators-anytime",
        ]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output == (
        "main\tevery other number\tUTC\talways open\tde-DE\t"
        "moderators in hours only, no name announcements\n"
    )
    assert room_settings(app) == (None, None, False, False, "de-DE")
    # What is not given stays.
    assert cli.invoke(args=["rooms", "set", "main", "--announce-names"]).exit_code == 0
    assert room_settings(app) == (None, None, False, True, "de-DE")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--language", "xx-XX"], "unknown language 'xx-XX' (use one of en-US, de-DE, es-ES,"),
        ([], "give --language, --announce-names/--no-announce-names or"),
    ],
)
def test_bad_settings_get_one_line_exit_1_and_change_nothing(runner, args, message):
    cli, app = runner
    before = room_settings(app)
    result = cli.invoke(args=["rooms", "set", "main", *args])
    assert result.exit_code == 1
    assert len(result.output.splitlines()) == 1
    assert result.output.startswith(f"Error: {message}")
    assert room_settings(app) == before


# -- the console -------------------------------------------------------------------------------


def room_form(room: Room, **changes) -> dict:
    """The edit form as the browser posts it (unchecked boxes are simply absent)."""
    return {
        "name": room.name,
        "line_number": room.line_number or "",
        "hold_music_url": room.hold_music_url or "",
        "time_zone": room.time_zone or "",
        "opening_hours": room.opening_hours or "",
        "moderators_anytime": "y",
        "announce_names": "y",
        "language": room.language,
        **changes,
    }


def test_the_console_saves_hours_in_canonical_form(admin_client, admin_app):
    room = admin_app.extensions["ivr"].store.room_named("main")
    response = post_form(
        admin_client,
        f"/admin/rooms/{room.id}/edit",
        room_form(
            room,
            time_zone="Europe/Berlin",
            opening_hours="Mon-Fri 9:55-11:00\r\n\r\n2026-12-03 15:00-16:30\r\n",
            announce_names="",
            language="fr-FR",
        )
        | {"announce_names": None},
    )
    assert response.status_code == 302
    assert room_settings(admin_app) == (
        "Europe/Berlin",
        "mon-fri 09:55-11:00\n2026-12-03 15:00-16:30",
        True,
        False,
        "fr-FR",
    )
    page = admin_client.get("/admin/rooms").get_data(as_text=True)
    assert "mon-fri 09:55-11:00" in page and "2026-12-03 15:00-16:30" in page
    assert "Europe/Berlin time" in page and "Français" in page


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"opening_hours": "mon-fri 09:55-11:00\nmox 10:00-11:00"}, "Line 2: unknown day"),
        ({"opening_hours": "mon 11:00-09:55"}, "Line 1: ends before it starts: 11:00-09:55."),
        ({"time_zone": "Europe/Berln"}, "Unknown zone &#39;Europe/Berln&#39;."),
        ({"language": "xx-XX"}, "Not a valid choice"),
    ],
)
def test_bad_hours_in_the_console_are_form_errors_and_nothing_is_saved(
    admin_client, admin_app, changes, message
):
    room = admin_app.extensions["ivr"].store.room_named("main")
    before = room_settings(admin_app)
    response = post_form(admin_client, f"/admin/rooms/{room.id}/edit", room_form(room, **changes))
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert room_settings(admin_app) == before


def test_a_new_room_gets_its_hours_and_defaults(admin_client, admin_app):
    response = post_form(
        admin_client,
        "/admin/rooms/new",
        {
            "name": "board",
            "line_number": "+18005550123",
            "time_zone": "America/New_York",
            "opening_hours": "wed 14:00-15:00",
            "moderators_anytime": "y",
            "announce_names": "y",
            "language": "en-US",
        },
    )
    assert response.status_code == 302
    assert room_settings(admin_app, "board") == (
        "America/New_York",
        "wed 14:00-15:00",
        True,
        True,
        "en-US",
    )
    form = admin_client.get("/admin/rooms/new").get_data(as_text=True)
    # A new room's boxes start ticked, as the columns' defaults are.
    assert 'checked id="moderators_anytime"' in form and 'checked id="announce_names"' in form


# -- local mode --------------------------------------------------------------------------------


def test_local_mode_has_a_closed_room_the_dev_phone_reaches(tmp_path):
    app = create_app({"INSTANCE_PATH": str(tmp_path / "instance")})
    night = app.extensions["ivr"].store.room_named("night")
    assert (night.line_number, night.time_zone) == ("+18005550102", "Europe/Berlin")
    set_clock(app, berlin(2026, 11, 23, 12, 0))  # a Monday noon

    result = app.test_cli_runner().invoke(args=["call", MABEL, "--to", "+18005550102"], input="\n")

    assert result.exit_code == 0, result.output
    assert "Line: This meeting room opens on Sunday at 3:00 a.m., Berlin time. Goodbye." in (
        result.output
    )
    assert "[SMS to" not in result.output
    assert outcomes(app) == ["room closed"]
    app.extensions["ivr"].sender.close()
    app.extensions["ivr"].store.dispose()
