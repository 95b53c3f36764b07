"""Guards attacked the way an attacker does: many requests released together against the
Procfile's server (gunicorn, two workers), on SQLite and on PostgreSQL, with either provider."""

from __future__ import annotations

import random
import threading
import xml.etree.ElementTree as ET

import pytest
import requests

from ivr import twiml
from tests.conftest import BLATHERS, VERIFY_SID, call_params, sign
from tests.test_procfile import environment, flask, procfile_web  # noqa: F401 - a fixture

BURST = 24
MAX_ATTEMPTS = 3
WRONG = "That code was incorrect. Please try again."
CALL_SID = "CA" + "7" * 32


@pytest.fixture(params=["builtin", "verify"])
def line(request, environment, tmp_path, fake_twilio):  # noqa: F811 - the imported fixture
    """The Procfile's server with Blathers on the list; yields (base URL, provider)."""
    env = {**environment, "MAX_ATTEMPTS": str(MAX_ATTEMPTS)}
    if request.param == "verify":
        env["VERIFY_SERVICE_SID"] = VERIFY_SID
    assert flask(env, tmp_path, "init-db").returncode == 0
    assert flask(env, tmp_path, "participants", "add", BLATHERS, "Blathers").returncode == 0
    with procfile_web(env, tmp_path) as web:
        # Every check waits on the (fake) provider, as a real one does: the window a race needs.
        fake_twilio.latency = 0.05
        yield web.base, request.param
        fake_twilio.latency = 0.0


@pytest.fixture(params=["with tokens", "without tokens"])
def tokens(request) -> bool:
    """Whether the guesses carry I-Twilio-Idempotency-Token, as Twilio's requests do: with
    one, the check is claimed with the caller's look-up as the webhook is claimed."""
    return request.param == "with tokens"


def post(
    session: requests.Session, base: str, path: str, params: dict, token: str | None = None
) -> requests.Response:
    headers = {"X-Twilio-Signature": sign(base + path, params)}
    if token is not None:
        headers["I-Twilio-Idempotency-Token"] = token
    return session.post(base + path, data=params, headers=headers, timeout=30)


def released_together(base: str, codes: list[str], tokens: bool) -> list[ET.Element]:
    """POST one /gather per code, all for one call, released at once; return the TwiML answers.

    With `tokens` each carries an idempotency token of its own, as Twilio's requests do."""
    sessions = [requests.Session() for _ in codes]
    for session in sessions:
        # Connect before the barrier, so the requests leave together.
        session.get(base + "/healthz", timeout=10)
    barrier = threading.Barrier(len(codes))
    answers: list[ET.Element | None] = [None] * len(codes)

    def guess(index: int) -> None:
        params = call_params(BLATHERS, call_sid=CALL_SID, Digits=codes[index])
        barrier.wait()
        token = f"guess-{index}-{CALL_SID}" if tokens else None
        response = post(sessions[index], base, "/gather", params, token)
        assert response.status_code == 200
        answers[index] = ET.fromstring(response.content)

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(len(codes))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert all(answer is not None for answer in answers)
    return answers


def kind(answer: ET.Element) -> str:
    if answer.find("Dial/Conference") is not None:
        return "joined"
    spoken = " ".join(element.text or "" for element in answer.iter("Say"))
    if spoken.startswith(WRONG):
        return "wrong"
    if spoken.startswith("Too many incorrect codes."):
        return "locked"
    if spoken == twiml.EXPIRED_CODE:
        return "expired"
    return spoken


def start_call(base: str, fake_twilio) -> str:
    greeting = post(requests.Session(), base, "/voice", call_params(BLATHERS, call_sid=CALL_SID))
    assert ET.fromstring(greeting.content).find("Gather") is not None
    return fake_twilio.code_for(BLATHERS, wait=10)


def wrong_codes(right: str, count: int) -> list[str]:
    codes = {f"{random.randrange(10**6):06d}" for _ in range(count * 2)} - {right}
    return sorted(codes)[:count]


def test_a_burst_of_wrong_codes_gets_exactly_max_attempts_checked(line, tokens, fake_twilio):
    base, provider = line
    right = start_call(base, fake_twilio)

    burst = released_together(base, wrong_codes(right, BURST), tokens)
    answers = [kind(answer) for answer in burst]

    # Two are told "incorrect", the third wrong check locks, and the rest were never checked.
    assert answers.count("wrong") == MAX_ATTEMPTS - 1
    assert answers.count("locked") == BURST - (MAX_ATTEMPTS - 1)
    if provider == "verify":
        assert len(fake_twilio.requests_of("verify-check")) == MAX_ATTEMPTS
    # Locked now: even the right code is refused, and not checked.
    after = post(requests.Session(), base, "/gather", call_params(BLATHERS, Digits=right))
    assert kind(ET.fromstring(after.content)) == "locked"
    if provider == "verify":
        assert len(fake_twilio.requests_of("verify-check")) == MAX_ATTEMPTS


def test_the_right_code_hidden_in_a_burst_joins_only_if_it_was_one_of_the_checked(
    line, tokens, fake_twilio
):
    base, provider = line
    right = start_call(base, fake_twilio)
    codes = wrong_codes(right, BURST - 1)
    codes.insert(random.randrange(BURST), right)

    answers = [kind(answer) for answer in released_together(base, codes, tokens)]

    joined = answers.count("joined")
    assert joined <= 1
    # After a join, guesses still queued start a new window and find the code used up.
    assert set(answers) <= {"wrong", "joined", "locked"} | ({"expired"} if joined else set())
    if provider == "verify":
        checked = [form["Code"] for _, _, form in fake_twilio.requests_of("verify-check")]
        if joined:
            assert right in checked[:MAX_ATTEMPTS]
        else:
            assert len(checked) == MAX_ATTEMPTS
    if not joined:
        # The right code was not among the claimed checks: the third wrong one locked.
        assert answers.count("wrong") == MAX_ATTEMPTS - 1
        assert answers.count("locked") == BURST - (MAX_ATTEMPTS - 1)
