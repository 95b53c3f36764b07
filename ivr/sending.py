"""Codes go out after /voice has answered: the caller hears the greeting while Twilio sends.

A send that fails is recorded against the call, so the call's next webhook - on any instance -
tells the caller instead of waiting for a code that will never come.

The console's sign-in codes go out on the same threads (`run`), so that its answer does not wait
for Twilio and its timing says nothing about whether a code was sent.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from ivr.logs import call_context
from ivr.metrics import NO_METRICS, Metrics
from ivr.store import CallNote, Outcome, SendStatus, Store
from ivr.verification import (
    LINE,
    Channel,
    CodeProvider,
    NewCode,
    ProviderError,
    SendRefused,
)

log = logging.getLogger(__name__)

# Sends in flight per process; each waits on Twilio for at most TWILIO_TIMEOUT_SECONDS.
SENDER_THREADS = 16
# A send the provider took is marked done this long after the first of those not yet marked,
# all of them in one write, instead of one write each. Nothing needs the mark sooner: an
# unmarked send reads as in flight, and as stuck only TWILIO_TIMEOUT_SECONDS +
# STUCK_MARGIN_SECONDS after it started.
MARK_DONE_AFTER_SECONDS = 0.25


@dataclass(frozen=True)
class PendingSend:
    send_id: int
    phone: str
    note: CallNote
    channel: Channel = "sms"
    # The room's language: the code's text (or Verify's message) is in it.
    language: str | None = None
    # The code to deliver, stored with the reservation; None: the provider makes one.
    code: NewCode | None = None


class CodeSender:
    def __init__(
        self,
        store: Store,
        codes: CodeProvider,
        metrics: Metrics = NO_METRICS,
        threads: int = SENDER_THREADS,
        mark_done_after: float = MARK_DONE_AFTER_SECONDS,
    ) -> None:
        self._store = store
        self._codes = codes
        self._metrics = metrics
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="code-sender")
        self._in_flight: set[Future] = set()
        self._lock = threading.Lock()
        # Sends the provider took, to be marked done together by the timer `_marker`.
        self._done: list[int] = []
        self._marker: threading.Timer | None = None
        self._mark_done_after = mark_done_after
        # Groups being written now, and word when one is: wait_idle waits for them.
        self._writing_marks = 0
        self._marks_written = threading.Condition(self._lock)

    def send(self, pending: PendingSend) -> None:
        """Start sending a call's code; return at once."""
        self.run(self._deliver, pending)

    def run(self, job: Callable[..., None], *args: Any) -> None:
        """Start `job(*args)` on a sender thread; return at once."""
        future = self._pool.submit(_logging_failures, job, *args)
        with self._lock:
            self._in_flight.add(future)
        future.add_done_callback(self._forget)

    def wait_idle(self, timeout: float = 30) -> None:
        """Wait until every send started so far has finished and is marked (dev phone, tests)."""
        with self._lock:
            in_flight = list(self._in_flight)
        wait(in_flight, timeout=timeout)
        self._write_marks(now=True)

    def close(self) -> None:
        """Finish the sends in flight, mark them, and stop the threads."""
        self._pool.shutdown(wait=True)
        self._write_marks(now=True)

    def _forget(self, future: Future) -> None:
        with self._lock:
            self._in_flight.discard(future)

    def _mark_done(self, send_id: int) -> None:
        """Have a send marked done, with the others the provider takes in the next moments.

        At the top of the hour many sends finish within a second: one write marks all those
        that finished within MARK_DONE_AFTER_SECONDS of the first (one SQLite transaction,
        one PostgreSQL checkout), instead of one each. Until it is written a sent code reads
        as in flight, not failed or stuck.
        """
        with self._lock:
            self._done.append(send_id)
        self._set_marker()

    def _set_marker(self) -> None:
        """Start the timer that writes the marks, unless one is set or none wait; if no thread
        can be had for it (at interpreter shutdown, or none left), write them now, here."""
        with self._lock:
            if self._marker is not None or not self._done:
                return  # the timer already set takes them
            # Not a daemon: at exit the interpreter waits the moment it takes to write them.
            timer = self._marker = threading.Timer(self._mark_done_after, self._write_marks)
            timer.daemon = False
        try:
            timer.start()
        except RuntimeError:
            with self._lock:
                if self._marker is timer:
                    self._marker = None
            self._write_marks(now=True)

    def _write_marks(self, now: bool = False) -> None:
        """Write the sends waiting to be marked done: the timer's job, or `now` on demand,
        which also waits for a timer's write in progress."""
        with self._lock:
            batch, self._done = self._done, []
            marker = self._marker
            if now or marker is threading.current_thread():
                self._marker = None
            if batch:
                self._writing_marks += 1
        if now and marker is not None:
            marker.cancel()
        try:
            if batch:
                self._write_done(batch)
        except BaseException:
            # Never lose them with a thread that is stopped: the next timer writes them.
            with self._lock:
                self._done[:0] = batch
            self._set_marker()
            raise
        finally:
            if batch:
                with self._lock:
                    self._writing_marks -= 1
                    self._marks_written.notify_all()
        if now:
            with self._lock:
                self._marks_written.wait_for(lambda: self._writing_marks == 0, timeout=30)

    def _write_done(self, batch: list[int]) -> None:
        """Write a group of sends done; if the group fails, try each on its own."""
        try:
            self._store.sends_done(batch)
            return
        except Exception:
            if len(batch) == 1:
                # It reads as stuck once its time is up: its caller then hears an apology.
                log.exception("could not mark code send %s done", batch[0])
                return
            log.warning("could not mark %d code sends done together: marking each", len(batch))
        # One failure (a database restart) must not cost the others: each gets its own write.
        for send_id in batch:
            try:
                self._store.sends_done([send_id])
            except Exception:
                log.exception("could not mark code send %s done", send_id)

    def _deliver(self, pending: PendingSend) -> None:
        with call_context(pending.note.call_sid, pending.note.room):
            self._deliver_for_call(pending)

    def _deliver_for_call(self, pending: PendingSend) -> None:
        try:
            self._codes.send(
                pending.phone, pending.channel, language=pending.language, code=pending.code
            )
        except SendRefused:
            log.info("code send refused: too many codes to this number")
            status, outcome = SendStatus.REFUSED, Outcome.SEND_LIMIT
        except ProviderError as error:
            log.error("code send failed: %s", error)
            status, outcome = SendStatus.FAILED, Outcome.PROVIDER_ERROR
        except Exception:
            # Nothing may escape a worker thread unseen: the caller must still hear about it.
            log.exception("code send failed")
            status, outcome = SendStatus.FAILED, Outcome.PROVIDER_ERROR
        else:
            # Went out: the call log already says "code sent", and the send is marked done, not
            # stuck. (Whatever goes wrong from here, the code was sent: never recorded failed.)
            self._mark_done(pending.send_id)
            self._metrics.code_sent(pending.channel, LINE)
            return
        try:
            self._store.send_failed(pending.send_id, status, outcome, pending.note)
            # The call's "code sent" became this outcome: the sender decided it.
            self._metrics.call(outcome, pending.note.room)
        except Exception:
            log.exception("could not record the failed code send")


def _logging_failures(job: Callable[..., None], *args: Any) -> None:
    """Run `job`; log what it raises, which would otherwise vanish with its Future."""
    try:
        job(*args)
    except Exception:
        log.exception("background job %s failed", getattr(job, "__qualname__", job))
