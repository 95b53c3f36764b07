"""The one Twilio client per process: its connections are reused by every thread that sends."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from ivr.sending import SENDER_THREADS
from ivr.twilio_client import POOL_SIZE, build_client
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, VERIFY_SID

# gunicorn's request threads per worker in the Procfile (GUNICORN_THREADS' default).
REQUEST_THREADS = 8


def test_every_thread_of_a_busy_worker_keeps_its_connection(fake_twilio, caplog):
    """A worker's request threads and code senders all talk to Twilio at the top of the hour.

    With the twilio library's own pool (CPUs + 4 connections) most of them closed their
    connection after each request - a new TCP and TLS handshake for the next, and urllib3's
    "Connection pool is full" warning in the log.
    """
    assert POOL_SIZE >= REQUEST_THREADS + SENDER_THREADS
    client = build_client(ACCOUNT_SID, AUTH_TOKEN, 5, fake_twilio.url)
    service = client.verify.v2.services(VERIFY_SID)
    fake_twilio.latency = 0.05  # long enough for every thread's request to be in flight at once

    def send(n: int) -> None:
        service.verifications.create(to=f"+1800555{n:04d}", channel="sms")

    threads = REQUEST_THREADS + SENDER_THREADS
    with caplog.at_level(logging.WARNING, logger="urllib3"):
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(send, range(threads * 3)))
    assert len([r for r in fake_twilio.requests if r.kind == "verify-send"]) == threads * 3
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]
