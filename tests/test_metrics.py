"""GET /metrics: exact counts after real signed calls, its bearer token, and gunicorn's workers."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from ivr import create_app
from ivr.settings import DEFAULTS, SettingsError, validate
from tests.conftest import (
    ACCOUNT_SID,
    ADMIN,
    BLATHERS,
    MABEL,
    STRANGER,
    VERIFY_SID,
    call_params,
    enter_code,
    free_port,
    post_form,
    seed_roster,
    sign_in,
    signed_post,
    start_sign_in,
    twiml_of,
)
from tests.test_procfile import flask, procfile_web, twilio_posts

TOKEN = "metrics-token-for-tests-0123456789"
CALL = "CA" + "c3" * 16
CONFERENCE = "CF" + "d4" * 16
CALL_BLATHERS = "CA" + "b1" * 16
CALL_MABEL = "CA" + "a1" * 16
PLAIN_TEXT_0_0_4 = "text/plain; version=0.0.4; charset=utf-8"


@pytest.fixture
def metrics_app(make_app, provider):
    """The tutorial's callers with metrics on, once per code provider."""
    overrides = {"VERIFY_SERVICE_SID": VERIFY_SID} if provider == "verify" else {}
    app = make_app(METRICS_TOKEN=TOKEN, **overrides)
    seed_roster(app)
    return app


def scrape(client) -> dict[str, dict[tuple, float]]:
    """Read /metrics as Prometheus does: {sample name: {sorted label items: value}}."""
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.data
    return parse(response.get_data(as_text=True))


def parse(text: str) -> dict[str, dict[tuple, float]]:
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def by(samples, name: str, *labels: str) -> dict:
    """Return one sample's values keyed by the given labels' values, e.g. by outcome and room."""
    found = {}
    for key, value in samples.get(name, {}).items():
        labelled = dict(key)
        found[tuple(labelled[label] for label in labels)] = value
    return found


def calls(samples) -> dict[tuple[str, str], float]:
    return by(samples, "ivr_calls_total", "outcome", "room")


def provider_requests(samples) -> dict[tuple[str, str], float]:
    return by(samples, "ivr_provider_requests_total", "operation", "result")


def voice(app, caller: str = BLATHERS, call_sid: str = CALL):
    params = call_params(caller, call_sid=call_sid)
    root = twiml_of(signed_post(app.test_client(), "/voice", params))
    app.extensions["ivr"].sender.wait_idle()
    return root


def gather(app, digits: str, caller: str = BLATHERS, call_sid: str = CALL):
    params = call_params(caller, call_sid=call_sid, Digits=digits)
    return twiml_of(signed_post(app.test_client(), "/gather", params))


def wrong(code: str) -> str:
    return "111111" if code != "111111" else "222222"


def conference_event(app, event: str, call_sid: str | None = None, **extra) -> None:
    params = {
        "AccountSid": ACCOUNT_SID,
        "ConferenceSid": CONFERENCE,
        "FriendlyName": "main",
        "StatusCallbackEvent": event,
        **({"CallSid": call_sid} if call_sid else {}),
        **extra,
    }
    assert signed_post(app.test_client(), "/conference/events", params).status_code == 200


# -- what the line counts ------------------------------------------------------------------


def test_a_join_after_one_wrong_code_counts_each_step_once(metrics_app, fake_twilio, provider):
    voice(metrics_app)
    code = fake_twilio.code_for(BLATHERS)
    gather(metrics_app, wrong(code))
    gather(metrics_app, code)

    samples = scrape(metrics_app.test_client())
    assert calls(samples) == {
        ("code sent", "main"): 1,
        ("wrong code", "main"): 1,
        ("joined as participant", "main"): 1,
    }
    if provider == "verify":
        # Verify sends the code and checks both entries; the wrong one is an answer, not a fault.
        assert provider_requests(samples) == {("verify_send", "ok"): 1, ("verify_check", "ok"): 2}
        assert by(samples, "ivr_provider_seconds_count", "operation") == {
            ("verify_send",): 1,
            ("verify_check",): 2,
        }
    else:
        # Built-in codes are checked here: the one provider request is the text message.
        assert provider_requests(samples) == {("message_send", "ok"): 1}
        assert by(samples, "ivr_provider_seconds_count", "operation") == {("message_send",): 1}
    assert by(samples, "ivr_codes_sent_total", "channel", "purpose") == {("sms", "line"): 1}
    assert by(samples, "ivr_webhook_seconds_count", "path") == {("/voice",): 1, ("/gather",): 2}
    # Each answer fell in a bucket up to 15 s: every observation is counted in +Inf's.
    buckets = by(samples, "ivr_webhook_seconds_bucket", "path", "le")
    assert buckets[("/gather", "+Inf")] == 2
    assert buckets[("/gather", "15.0")] == 2
    assert samples.get("ivr_lockouts_total", {}) == {}


def test_the_third_wrong_code_counts_one_lockout(metrics_app, fake_twilio):
    voice(metrics_app)
    code = fake_twilio.code_for(BLATHERS)
    for _ in range(3):
        gather(metrics_app, wrong(code))
    gather(metrics_app, code)  # refused: the number is locked
    voice(metrics_app, call_sid="CA" + "e5" * 16)  # refused at /voice too

    samples = scrape(metrics_app.test_client())
    assert by(samples, "ivr_lockouts_total", "kind") == {("line",): 1}
    assert calls(samples) == {
        ("code sent", "main"): 1,
        ("wrong code", "main"): 2,
        ("locked out", "main"): 3,
    }


def test_strangers_count_in_the_dialled_room_withheld_numbers_in_none(metrics_app, fake_twilio):
    voice(metrics_app, STRANGER)
    voice(metrics_app, "Anonymous", call_sid="CA" + "e5" * 16)

    samples = scrape(metrics_app.test_client())
    # As the call log has them: a stranger's row names the room of the line they dialled.
    assert calls(samples) == {("unknown number", "main"): 1, ("withheld number", ""): 1}
    assert provider_requests(samples) == {}


@pytest.mark.parametrize(
    "provider, kind, operation",
    [("builtin", "message", "message_send"), ("verify", "verify-send", "verify_send")],
)
def test_a_failed_send_counts_an_error_and_the_outcome_it_became(
    metrics_app, fake_twilio, kind, operation
):
    fake_twilio.fail(kind, 500, 20500)
    voice(metrics_app)

    samples = scrape(metrics_app.test_client())
    assert provider_requests(samples) == {(operation, "error"): 1}
    assert samples.get("ivr_codes_sent_total", {}) == {}
    # "code sent" counts the send the line set out on; the sender then decided its outcome.
    assert calls(samples) == {("code sent", "main"): 1, ("provider error", "main"): 1}


@pytest.mark.parametrize("provider", ["verify"])
def test_a_failed_check_counts_an_error(metrics_app, fake_twilio):
    voice(metrics_app)
    fake_twilio.fail("verify-check", 503, 20503)
    gather(metrics_app, fake_twilio.code_for(BLATHERS))

    samples = scrape(metrics_app.test_client())
    assert provider_requests(samples) == {("verify_send", "ok"): 1, ("verify_check", "error"): 1}
    assert calls(samples) == {("code sent", "main"): 1, ("provider error", "main"): 1}


@pytest.mark.parametrize("provider", ["verify"])
def test_verify_refusing_more_codes_counts_refused(metrics_app, fake_twilio):
    fake_twilio.fail("verify-send", 429, 60203)
    voice(metrics_app)

    samples = scrape(metrics_app.test_client())
    assert provider_requests(samples) == {("verify_send", "refused"): 1}
    assert calls(samples) == {("code sent", "main"): 1, ("send limit reached", "main"): 1}


def test_a_slow_provider_counts_a_timeout(make_app, fake_twilio):
    app = make_app(METRICS_TOKEN=TOKEN, TWILIO_TIMEOUT_SECONDS=0.3)
    seed_roster(app)
    fake_twilio.latency = 1
    voice(app)

    samples = scrape(app.test_client())
    assert provider_requests(samples) == {("message_send", "timeout"): 1}
    [took] = by(samples, "ivr_provider_seconds_sum", "operation").values()
    assert 0.25 <= took < 1


@pytest.mark.parametrize("provider", ["builtin"])
def test_live_callers_follow_the_conference_events(metrics_app):
    client = metrics_app.test_client()
    assert by(scrape(client), "ivr_live_callers", "room") == {("main",): 0}

    conference_event(metrics_app, "conference-start")
    conference_event(metrics_app, "participant-join", CALL_BLATHERS, ParticipantLabel="Blathers")
    conference_event(metrics_app, "participant-join", CALL_MABEL, ParticipantLabel="Mabel")
    assert by(scrape(client), "ivr_live_callers", "room") == {("main",): 2}

    conference_event(metrics_app, "participant-leave", CALL_MABEL, ParticipantLabel="Mabel")
    samples = scrape(client)
    assert by(samples, "ivr_live_callers", "room") == {("main",): 1}
    assert calls(samples) == {
        ("conference started", "main"): 1,
        ("entered conference", "main"): 2,
        ("left conference", "main"): 1,
    }
    assert by(samples, "ivr_webhook_seconds_count", "path") == {("/conference/events",): 4}


@pytest.mark.parametrize("provider", ["builtin"])
def test_a_caller_hanging_up_at_the_prompt_is_counted_in_their_room(metrics_app):
    voice(metrics_app)
    params = call_params(BLATHERS, call_sid=CALL, CallStatus="completed")
    assert signed_post(metrics_app.test_client(), "/call-status", params).status_code == 200
    # A second status callback for the same call logs nothing more.
    assert signed_post(metrics_app.test_client(), "/call-status", params).status_code == 200

    samples = scrape(metrics_app.test_client())
    assert calls(samples) == {("code sent", "main"): 1, ("hung up", "main"): 1}
    assert by(samples, "ivr_webhook_seconds_count", "path") == {
        ("/voice",): 1,
        ("/call-status",): 2,
    }


def test_an_unsigned_webhook_is_timed_but_counts_no_outcome(make_app):
    app = make_app(METRICS_TOKEN=TOKEN)
    response = app.test_client().post("/voice", data=call_params(BLATHERS))
    assert response.status_code == 403

    samples = scrape(app.test_client())
    assert calls(samples) == {}
    assert by(samples, "ivr_webhook_seconds_count", "path") == {("/voice",): 1}


@pytest.fixture
def console(make_app, fake_twilio):
    """An admin signed in to the console of an app with metrics on; the fake then reset."""
    app = make_app(METRICS_TOKEN=TOKEN, ADMIN_SIGN_IN_FLOOR_SECONDS=0)
    seed_roster(app)
    app.extensions["ivr"].store.add_admin(ADMIN, "Nook")
    client = app.test_client()
    assert sign_in(client, fake_twilio).status_code == 302
    return app, client


def test_console_sign_in_and_live_control_are_counted(console, fake_twilio):
    app, client = console
    conference_event(app, "participant-join", CALL_MABEL, ParticipantLabel="Mabel")
    post_form(client, f"/admin/live/{CALL_MABEL}/mute")
    fake_twilio.fail("conference-participant", 500, 20500)
    post_form(client, f"/admin/live/{CALL_MABEL}/unmute")
    post_form(client, f"/admin/live/conferences/{CONFERENCE}/end")

    samples = scrape(client)
    assert by(samples, "ivr_codes_sent_total", "channel", "purpose") == {("sms", "sign-in"): 1}
    assert provider_requests(samples) == {
        ("message_send", "ok"): 1,
        ("conference_mute", "ok"): 1,
        ("conference_unmute", "error"): 1,
        ("conference_end", "ok"): 1,
    }
    assert by(samples, "ivr_live_callers", "room") == {("main",): 0}


def test_a_sign_in_lockout_is_counted_apart_from_the_line(console, fake_twilio):
    app, _ = console
    client = app.test_client()
    start_sign_in(client)
    code = fake_twilio.code_for(ADMIN)
    for _ in range(3):
        enter_code(client, wrong(code))

    samples = scrape(client)
    assert by(samples, "ivr_lockouts_total", "kind") == {("sign-in",): 1}
    assert by(samples, "ivr_codes_sent_total", "channel", "purpose") == {("sms", "sign-in"): 2}


def test_each_app_counts_from_zero(make_app, fake_twilio):
    first = make_app(METRICS_TOKEN=TOKEN)
    seed_roster(first)
    voice(first, MABEL)
    second = make_app(METRICS_TOKEN=TOKEN)

    assert calls(scrape(first.test_client())) == {("code sent", "main"): 1}
    assert calls(scrape(second.test_client())) == {}


# -- who may read them ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token-of-the-same-size-0123"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
    ],
    ids=["none", "wrong", "longer", "basic", "bare"],
)
def test_metrics_need_the_bearer_token(make_app, headers):
    response = make_app(METRICS_TOKEN=TOKEN).test_client().get("/metrics", headers=headers)
    assert response.status_code == 403
    assert b"ivr_" not in response.data


def test_the_right_token_gets_prometheus_text(make_app):
    client = make_app(METRICS_TOKEN=TOKEN).test_client()
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == PLAIN_TEXT_0_0_4
    assert "# TYPE ivr_calls_total counter" in response.get_data(as_text=True)

    openmetrics = client.get(
        "/metrics",
        headers={
            "Authorization": f"Bearer {TOKEN}",
            "Accept": "application/openmetrics-text; version=1.0.0",
        },
    )
    assert openmetrics.status_code == 200
    assert openmetrics.headers["Content-Type"].startswith("application/openmetrics-text")
    assert openmetrics.get_data(as_text=True).endswith("# EOF\n")


def test_without_a_token_there_is_no_metrics_page(make_app):
    app = make_app()
    seed_roster(app)
    client = app.test_client()
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 404
    # The line works as ever.
    assert twiml_of(signed_post(app.test_client(), "/voice", call_params(BLATHERS)))


@pytest.mark.parametrize("token", ["short", "a token with spaces in it", "x" * 15])
def test_a_guessable_token_is_refused_at_start(tmp_path, token):
    with pytest.raises(SettingsError, match="METRICS_TOKEN must be at least 16 characters"):
        validate({**DEFAULTS, "METRICS_TOKEN": token}, tmp_path)


def test_create_app_reads_the_token_from_its_config(tmp_path):
    app = create_app({"INSTANCE_PATH": str(tmp_path), "METRICS_TOKEN": f"  {TOKEN}  "})
    assert app.config["METRICS_TOKEN"] == TOKEN


# -- the Procfile's gunicorn: two workers, one sum -----------------------------------------


@pytest.fixture
def workers(fake_twilio, database, tmp_path):
    """The Procfile's web process with 2 workers and METRICS_TOKEN, its own TMPDIR to look in."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    environment = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
        "HOME": str(tmp_path),
        "TMPDIR": str(temp),
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": "test-auth-token-not-a-secret",
        "TWILIO_PHONE_NUMBER": "+18005550100",
        "TWILIO_API_URL": fake_twilio.url,
        "SECRET_KEY": "test-secret-key",
        "DATABASE_URL": database,
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "PORT": str(free_port()),
        "WEB_CONCURRENCY": "2",
        "METRICS_TOKEN": TOKEN,
    }
    assert flask(environment, tmp_path, "init-db").returncode == 0
    assert flask(environment, tmp_path, "participants", "add", BLATHERS, "Blathers").returncode == 0
    with procfile_web(environment, tmp_path) as web:
        yield web, temp


def _scrape_over_http(base: str) -> dict[str, dict[tuple, float]]:
    response = requests.get(
        f"{base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    )
    assert response.status_code == 200, response.text
    return parse(response.text)


def _worker_pids(folder: Path) -> set[int]:
    """Return the workers that have counted something: each writes counter_<pid>.db."""
    return {int(path.stem.split("_")[-1]) for path in folder.glob("counter_*.db")}


def test_the_procfile_server_sums_both_workers(workers):
    web, temp = workers
    base = web.base
    [folder] = temp.glob("ivr-metrics-*")  # made by gunicorn_config.py, none was set

    def stranger_calls(start: int, count: int) -> None:
        def one(index: int) -> None:
            params = call_params(STRANGER, call_sid=f"CA{index:032d}")
            assert twilio_posts(base, "/voice", params).status_code == 200

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(one, range(start, start + count)))

    made = 0
    # Until both workers have answered some (in practice the first round does it).
    while len(_worker_pids(folder)) < 2 and made < 400:
        stranger_calls(made, 40)
        made += 40
    pids = _worker_pids(folder)
    assert len(pids) == 2, f"one worker answered all {made} calls"

    samples = _scrape_over_http(base)
    assert calls(samples) == {("unknown number", "main"): made}
    assert by(samples, "ivr_webhook_seconds_count", "path") == {("/voice",): made}
    assert by(samples, "ivr_live_callers", "room") == {("main",): 0}

    # A worker that dies takes nothing with it: its counts stay in the sum.
    os.kill(min(pids), signal.SIGKILL)
    web.wait_healthy()
    stranger_calls(made, 10)
    assert calls(_scrape_over_http(base)) == {("unknown number", "main"): made + 10}


def test_the_procfile_server_cleans_up_its_metrics_folder(workers):
    web, temp = workers
    [folder] = temp.glob("ivr-metrics-*")
    assert twilio_posts(web.base, "/voice", call_params(STRANGER)).status_code == 200
    assert list(folder.glob("*.db"))

    web.stop()
    # sh is gone at once; gunicorn's master removes the folder as it exits, after its workers.
    deadline = time.monotonic() + 30
    while folder.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not folder.exists()
