"""Log lines a person can follow: one format, and the call each line belongs to.

`configure` puts one handler on the root logger, so the line's own lines and its libraries'
(twilio, werkzeug, SQLAlchemy) come out alike on stderr. A filter on that handler stamps every
line with what is known about the call being answered: `call_sid` and `path` from the webhook
request, `room` once the view has named it (`name_room`), or, on a sender thread, whatever
`call_context` set around the job.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import IO, Any

from flask import Request, g, has_request_context, request

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FORMATS = ("text", "json")
CONTEXT_KEYS = ("call_sid", "path", "room")
_SID = re.compile(r"[A-Za-z0-9]{2,64}")
# Where a request keeps what its log lines say of it (read from its path and form once).
_CONTEXT_KEY = "ivr.log_context"

# Outside a request (the code-sender threads): the call a job is working for.
_job_context: ContextVar[Mapping[str, str]] = ContextVar(
    "ivr_log_context", default=MappingProxyType({})
)


def configure(level: str, style: str, stream: IO[str] | None = None) -> None:
    """Send every log line to `stream` (stderr if None) as `style`; keep `ivr.*` at `level`.

    Idempotent: a second app in the same process replaces the handler the first one added.
    """
    handler = _StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.setFormatter(JsonFormatter() if style == "json" else TextFormatter())
    handler.addFilter(CallContext())
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "ivr_handler", False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    # No line the line writes says where in the code or on which thread it was logged, so
    # logging need not look that up for each one (the logging HOWTO's "Optimization"; this
    # also leaves stack_info=True without a stack). Process ids stay: gunicorn's lines show them.
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False
    line_level = logging.getLevelName(level)
    logging.getLogger("ivr").setLevel(line_level)
    # Libraries' INFO is chatter (the twilio library dumps every request's headers): below
    # WARNING only when debugging.
    root.setLevel(line_level if line_level != logging.INFO else logging.WARNING)


def name_room(room: str | None) -> None:
    """Put `room` on every log line for the rest of this request."""
    g.ivr_log_room = room


@contextmanager
def call_context(call_sid: str | None, room: str | None = None) -> Iterator[None]:
    """Put `call_sid` and `room` on every log line written inside the block (sender threads)."""
    known = {key: value for key, value in (("call_sid", call_sid), ("room", room)) if value}
    token = _job_context.set({**_job_context.get(), **known})
    try:
        yield
    finally:
        _job_context.reset(token)


class CallContext(logging.Filter):
    """Stamp a record with call_sid, path and room where known; a value given in extra= wins."""

    def filter(self, record: logging.LogRecord) -> bool:
        job = _job_context.get()
        context = _request_context() if has_request_context() else None
        for key in CONTEXT_KEYS:
            if getattr(record, key, None) is None:
                value = context.get(key) if context else None
                setattr(record, key, value if value is not None else job.get(key))
        return True


def _request_context() -> dict[str, str]:
    """Return this request's path, call and room; all but the room read once per request."""
    current = request._get_current_object()
    environ = current.environ
    context = environ.get(_CONTEXT_KEY)
    if context is None:
        context = environ[_CONTEXT_KEY] = _read_request_context(current)
    room = g.get("ivr_log_room")
    return {**context, "room": room} if room else context


def _read_request_context(current: Request) -> dict[str, str]:
    context = {"path": current.path}
    if current.mimetype == "application/x-www-form-urlencoded":
        try:
            call_sid = current.form.get("CallSid")
        except Exception:  # a body too large or cut short: a filter must never stop the line
            call_sid = None
        # An unsigned request's CallSid is anyone's text: never let it forge a line.
        if call_sid and _SID.fullmatch(call_sid):
            context["call_sid"] = call_sid
    return context


def timestamp(record: logging.LogRecord) -> str:
    """Return when `record` was made, in ISO 8601 UTC to the millisecond."""
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextFormatter(logging.Formatter):
    """`TIME LEVEL LOGGER [CALLSID] message`, the SID only when known; tracebacks follow."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return timestamp(record)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802
        call_sid = getattr(record, "call_sid", None)
        call = f" [{call_sid}]" if call_sid else ""
        return f"{record.asctime} {record.levelname} {record.name}{call} {record.message}"

    def usesTime(self) -> bool:  # noqa: N802
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then what is known of the call."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in CONTEXT_KEYS:
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


class _StreamHandler(logging.StreamHandler):
    ivr_handler = True


class _StderrHandler(_StreamHandler):
    """Write to sys.stderr as it is at each line (gunicorn and test runners replace it)."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> IO[str]:  # type: ignore[override]
        return sys.stderr
