"""The connection to the database, shared by every part of the store.

Counters that several workers or instances share (failed attempts, lockouts, codes sent) are
changed by single atomic statements or under a row lock, never read-modify-written in Python.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

from sqlalchemy import create_engine, event, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import sessionmaker

from ivr import schema
from ivr.store.models import Base


class Database:
    """An engine and the transactions the store's methods run in; each method is one."""

    def __init__(self, url: str) -> None:
        self.engine = _make_engine(url)
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite lets one writer in at a time and makes the others back off in sleeps of up to
        # 100 ms; a lock queues this process's writers without them. PostgreSQL locks rows.
        self._write_lock = threading.Lock() if url.startswith("sqlite") else nullcontext()

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        """Open a write transaction on the webhook path."""
        with self._write_lock, self.engine.begin() as connection:
            yield connection

    def upgrade_schema(self) -> None:
        """Create or upgrade the schema to the newest migration; rows are kept."""
        schema.upgrade(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()

    def ping(self) -> None:
        """Run a trivial query; raise if the database cannot be reached."""
        with self.engine.connect() as connection:
            connection.execute(select(1))

    def _insert(self, model: type[Base]):
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(model)


def anywhere(text: str) -> str:
    """Return a LIKE pattern matching `text` literally anywhere (escape character \\)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def digits_only(text: str) -> str:
    return "".join(character for character in text if character in "0123456789")


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 15})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # No pre-ping: it would add a round trip to every checkout on the webhook path. After a
    # database restart SQLAlchemy notices the first broken connection and drops the whole pool;
    # only the requests in flight then fail, and their callers hear an apology.
    return create_engine(url, pool_size=10, max_overflow=20, pool_recycle=1800)


def _sqlite_pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    # Under WAL this stays consistent; only a power cut can lose the last commits.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
