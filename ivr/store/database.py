"""The connection to the database, shared by every part of the store.

Counters that several workers or instances share (failed attempts, lockouts, codes sent) are
changed by single atomic statements or under a row lock, never read-modify-written in Python.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from psycopg.pq import TransactionStatus
from sqlalchemy import URL, Executable, create_engine, event, make_url, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Compiled, Connection, Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError, SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from ivr import schema
from ivr.store.models import Base, Room

log = logging.getLogger(__name__)

# PostgreSQL: how many threads per process keep an autocommit connection of their own for the
# webhook path's statements (`Database._statement_connection`): gunicorn's request threads (8 by
# default) with room to spare, within the pool's size.
KEPT_CONNECTIONS = 10
# PostgreSQL: a connection older than this is closed and replaced at its next use (a firewall
# or proxy may have dropped it silently after long idling), kept or pooled.
RECYCLE_SECONDS = 1800


class DatabaseDown(Exception):
    """The database cannot be reached (or its SQLite file is gone)."""


class SchemaMissing(Exception):
    """The database answers but the line's tables are not there."""


class Database:
    """An engine and the transactions the store's methods run in; each method is one."""

    def __init__(self, url: str) -> None:
        self.sqlite_file = _sqlite_file(url)
        self.engine = _make_engine(url, self.sqlite_file)
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite lets one writer in at a time and makes the others back off in sleeps of up to
        # 100 ms; a lock queues this process's writers without them. PostgreSQL locks rows.
        self._write_lock = threading.Lock() if url.startswith("sqlite") else nullcontext()
        # SQLite: the process's one connection for the webhook path's writes, used only under
        # the write lock (`_write_connection`).
        self._writer: Connection | None = None
        self._keeps_writer = self.sqlite_file is not None  # not for an in-memory database
        # The path `_watch_file` checks, resolved once: a relative one would change meaning
        # with the working directory.
        self._writer_file = self.sqlite_file.resolve() if self.sqlite_file else None
        self.dialect = self.engine.dialect.name
        # SQLite: a write transaction this thread left open for its next write (`_held_open`).
        self._held = threading.local()
        # On PostgreSQL the webhook path's single statements run in autocommit mode: each is
        # atomic on its own, and takes one round trip instead of three (BEGIN, the statement,
        # COMMIT or ROLLBACK). Their connections stay in that mode, in a pool of their own:
        # switching a shared pool's connection in and out of it at every checkout cost a
        # quarter of each statement's CPU. SQLite has no round trips to save.
        self._autocommit = None
        # PostgreSQL: the threads that keep an autocommit connection of their own
        # (`_statement_connection`), and how many restarts have been found since they took it.
        self._kept: dict[_KeptConnection, weakref.finalize] = {}
        # Reentrant: a thread's holder may be collected (and give its connection back) while
        # that same thread holds the lock.
        self._kept_lock = threading.RLock()
        self._restarts_found = 0
        if self.dialect != "sqlite":
            self._autocommit = _make_engine(url, None, isolation_level="AUTOCOMMIT")
            _share_restarts(self.engine, self._autocommit, then=self._found_a_restart)

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        """Open a write transaction on the webhook path, or join the one this thread held open
        for it (see `_held_open`); either way it commits when the block ends."""
        held: Connection | None = getattr(self._held, "connection", None)
        if held is None and not self._keeps_writer:
            with self._write_lock, self.engine.begin() as connection:
                yield connection
            return
        if held is None:
            held = self._begin_write()
        else:
            self._held.connection = None
        try:
            yield held
            held.commit()
        finally:
            self._end_write(held)

    def _begin_write(self) -> Connection:
        """SQLite: take the write lock and begin a transaction on the kept connection."""
        self._write_lock.acquire()
        try:
            connection = self._write_connection()
            connection.begin()
        except BaseException:
            self._write_lock.release()
            raise
        return connection

    def _end_write(self, connection: Connection) -> None:
        """SQLite: release the write lock. A connection still in a transaction - the block
        failed, or the commit itself did (a full disk) - is not trusted again."""
        try:
            if connection.get_transaction() is not None:
                self._drop_writer(connection)
        finally:
            self._write_lock.release()

    def _write_connection(self) -> Connection:
        """SQLite, with the write lock held: the connection the webhook path writes on.

        One per process, kept checked out, since the write lock lets one writer in at a time
        anyway: a pool checkout and return per transaction (and SQLAlchemy's events and reset
        around them) cost more CPU than the transaction's own statements. A connection that
        broke, was left in a transaction (a failed commit) or whose file was moved, replaced
        or deleted is dropped for a new one, as the pool's checkout check does for the others
        (`_watch_file`).
        """
        connection = self._writer
        if connection is not None and (
            connection.invalidated
            or connection.closed
            or connection.get_transaction() is not None
            or _file_id(self._writer_file) != connection.info.get("file_id")
        ):
            self._drop_writer(connection)
            connection = None
        if connection is None:
            connection = self._writer = self.engine.connect()
        return connection

    def _drop_writer(self, connection: Connection) -> None:
        """Close the kept write connection for good (rolling back what it had not committed);
        the next write opens a new one."""
        if self._writer is connection:
            self._writer = None
        try:
            if not connection.closed:
                connection.invalidate()  # never back into the pool
                connection.close()
        except Exception:  # the block's own error, if any, is the one to raise
            log.warning("could not close the SQLite write connection", exc_info=True)

    @contextmanager
    def _held_open(self, hold: bool) -> Iterator[Connection]:
        """Like `_writing`, but with `hold` on SQLite the transaction stays open when the block
        ends, for this thread's next write to join and commit (or `commit_held`).

        One SQLite transaction instead of two, where a webhook writes again before it waits on
        anything: each costs SQLite's file locks, page reads into a page cache
        that other connections' commits emptied, and its own commit. Meanwhile the process's
        other writers queue on the write lock, and other processes' in SQLite's busy wait.
        Should the block fail, nothing is held: the transaction rolls back.
        """
        if not hold or not self._keeps_writer:
            with self._writing_alone() as connection:
                yield connection
            return
        self.commit_held()
        connection = self._begin_write()
        try:
            yield connection
        except BaseException:
            self._end_write(connection)  # rolls back: the connection goes, still in it
            raise
        # Taken over, with the write lock, by this thread's next write, which commits it.
        self._held.connection = connection

    def holds_a_claim(self) -> bool:
        """Whether this thread holds a write transaction open (`_held_open`)."""
        return getattr(self._held, "connection", None) is not None

    def commit_held(self) -> None:
        """Commit the transaction this thread holds open, if it holds one."""
        if self.holds_a_claim():
            with self._writing():
                pass

    def _writing_alone(self) -> AbstractContextManager[Connection]:
        """Open a connection for one write statement on the webhook path, committed by itself."""
        if self._autocommit is None:
            return self._writing()
        return self._statement_connection()

    def _reading(self) -> AbstractContextManager[Connection]:
        """Open a connection for reads on the webhook path, each statement on its own."""
        if self._autocommit is None:
            return self.engine.connect()
        return self._statement_connection()

    def _statement_connection(self) -> AbstractContextManager[Connection]:
        """PostgreSQL: this thread's own autocommit connection, or a pooled one for the block.

        The first KEPT_CONNECTIONS threads to ask keep one connection each, checked out for as
        long as the thread lives: a pool checkout and return (and SQLAlchemy's events and reset
        around them) cost more CPU than the statement they were for, three or four times a
        call. An autocommit connection carries nothing from one statement to the next, so a
        thread can keep it. One that broke, was left in a transaction, was taken before a
        restart that any connection found (`_found_a_restart`) or RECYCLE_SECONDS ago is
        swapped for a new one, as the pool's own checks do for pooled ones.
        """
        holder: _KeptHolder | None = getattr(self._held, "kept", None)
        if holder is not None:
            if holder.kept.usable(self._restarts_found):
                return _Lent(holder)
            holder.release()  # and take a new one below
        elif len(self._kept) >= KEPT_CONNECTIONS:
            return self._autocommit.connect()
        restarts = self._restarts_found
        connection = self._autocommit.connect()
        with self._kept_lock:
            if len(self._kept) >= KEPT_CONNECTIONS:
                return connection  # for the block only: its end gives it back
            kept = _KeptConnection(connection, restarts)
            # A thread's locals go when it ends, and with them its holder: the connection then
            # goes back to the pool and another thread may keep one.
            holder = self._held.kept = _KeptHolder(kept)
            holder.release = self._kept[kept] = weakref.finalize(holder, self._let_go, kept)
        return _Lent(holder)

    def _let_go(self, kept: _KeptConnection, for_good: bool = False) -> None:
        """Give a kept connection back to the pool; close it instead `for_good`, or if it may be
        dead."""
        with self._kept_lock:
            self._kept.pop(kept, None)
        connection = kept.connection
        try:
            if not connection.closed:
                if for_good or kept.restarts != self._restarts_found:
                    connection.invalidate()  # dead with the database it was opened to
                connection.close()
        except Exception:
            log.warning("could not close a kept PostgreSQL connection", exc_info=True)

    def _found_a_restart(self) -> None:
        """A connection found the database restarted: the kept ones are just as dead."""
        self._restarts_found += 1

    def upgrade_schema(self, revision: str = "head") -> schema.Upgrade:
        """Create or upgrade the schema to `revision`; rows are kept.

        The one step that may create a SQLite file: everything else opens it only if it exists.
        """
        self.create_sqlite_file()
        return schema.upgrade(self.engine, revision)

    def create_sqlite_file(self) -> None:
        """Create the SQLite file, empty, if the database is one that does not exist yet."""
        if self.sqlite_file is not None and not self.sqlite_file.exists():
            sqlite3.connect(self.sqlite_file).close()

    def dispose(self) -> None:
        """Close every connection (at shutdown; a write still running on another thread fails)."""
        if self.holds_a_claim():
            self._held.connection = None
            self._write_lock.release()
        if self._writer is not None:
            self._drop_writer(self._writer)  # not under the write lock: another thread's claim
        for release in list(self._kept.values()):
            detached = release.detach()
            if detached is not None:
                # Other threads' too: closed, not pooled, so that no statement still running
                # there shares its connection with a newcomer's. Those statements fail.
                _, _, (kept,), _ = detached
                self._let_go(kept, for_good=True)
        self.engine.dispose()
        if self._autocommit is not None:
            self._autocommit.dispose()

    def check_health(self) -> None:
        """Read a row of a real table; raise DatabaseDown or SchemaMissing if that fails."""
        # Twice: after a database restart the first try only finds the pool's dead connection.
        for attempt in (1, 2):
            try:
                connection = (self._autocommit or self.engine).connect()
            except SQLAlchemyError as error:
                raise DatabaseDown(_reason(error)) from None
            with connection:
                try:
                    connection.execute(select(Room.id).limit(1)).all()
                    return
                except DBAPIError as error:
                    if not error.connection_invalidated:
                        raise SchemaMissing(_reason(error)) from None
                    if attempt == 2:
                        raise DatabaseDown(_reason(error)) from None

    def _insert(self, model: type[Base]):
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(model)


_sql_log = logging.getLogger("sqlalchemy.engine.Engine")


class Prepared:
    """A webhook-path statement, compiled once per database and run on the driver's cursor.

    The webhook path's statements are built once, at import, with bind parameters for what
    changes per call; each is compiled once per dialect on first use. Running one skips
    SQLAlchemy's per-execution work (cache key, execution context, result objects), which on
    a busy worker cost as much CPU as the database itself (see "Performance" in the README).
    Values still go through SQLAlchemy's type processors, so a row reads and writes exactly as
    it does through SQLAlchemy. It runs inside the transaction of the Connection it is given.
    Column defaults are not applied: an INSERT names every column it fills.
    """

    def __init__(self, statement: Executable | Callable[[Callable], Executable]) -> None:
        # A callable builds an upsert from the dialect's insert (ON CONFLICT differs by name).
        self._statement = statement
        self._plans: dict[str, _Plan] = {}

    @property
    def statement(self) -> Executable:
        """The statement itself, to build a bigger one from (not for a dialect's upsert)."""
        if not isinstance(self._statement, Executable):
            raise TypeError("an upsert is built per dialect")
        return self._statement

    def run(self, connection: Connection, params: dict) -> _Rows:
        plan, arguments = self._bound(connection, params)
        cursor = _reusable_cursor(connection)
        try:
            cursor.execute(plan.sql, arguments)
            rows = cursor.fetchall() if plan.returns_rows else []
            count = cursor.rowcount
        except BaseException as error:
            _drop_cursors(connection, (_CURSOR,))  # not used again after a failure
            if isinstance(error, connection.dialect.loaded_dbapi.Error):
                # As SQLAlchemy's own execution would: raise its DBAPIError, and on a lost
                # connection (a database restart) drop the whole pool, not just this one.
                connection._handle_dbapi_exception(error, plan.sql, arguments, None, None)
            raise
        return _processed(plan, rows, count)

    def _bound(self, connection: Connection, params: dict) -> tuple[_Plan, list | dict]:
        """Return the statement's plan for the connection's database, and its arguments."""
        plan = self._plans.get(connection.dialect.name)
        if plan is None:
            plan = self._plans[connection.dialect.name] = self._plan(connection.dialect)
        values = _bind_values(plan, params)
        for name, process in plan.bind_processors:
            value = values.get(name)
            if value is not None:
                values[name] = process(value)
        arguments = [values[name] for name in plan.positions] if plan.positions else values
        if _sql_log.isEnabledFor(logging.INFO):
            # Where SQLAlchemy logs the statements it runs, as it does: LOG_LEVEL=DEBUG shows all.
            _sql_log.info("%s\n[prepared] %r", plan.sql, arguments)
        return plan, arguments

    def _plan(self, dialect) -> _Plan:
        statement = self._statement
        if not isinstance(statement, Executable):
            statement = statement(
                postgresql.insert if dialect.name == "postgresql" else sqlite.insert
            )
        compiled = statement.compile(dialect=dialect)
        # Private to SQLAlchemy 2.x (pinned <3): the processors its own execution would apply.
        processors = compiled._bind_processors
        result_types = [column.type for column in compiled._result_columns]
        result_processors = [
            type_.dialect_impl(dialect).result_processor(dialect, None) for type_ in result_types
        ]
        return _Plan(
            compiled=compiled,
            sql=compiled.string,
            # Known from the statement: psycopg builds `cursor.description` afresh, a column
            # object per column, every time it is read (a third of a claim's CPU).
            returns_rows=bool(compiled._result_columns),
            positions=list(compiled.positiontup) if compiled.positional else None,
            bind_processors=[(name, process) for name, process in processors.items() if process],
            result_processors=(
                [(index, p) for index, p in enumerate(result_processors) if p]
                if any(result_processors)
                else None
            ),
            binds=_plain_binds(compiled),
        )


def in_one_trip(connection: Connection, steps: list[tuple[Prepared, dict]]) -> _Rows:
    """PostgreSQL: run `steps` as one transaction, sent together in one round trip; return
    what the last one returned (the others' rows are not read).

    psycopg's pipeline mode sends every statement and then one Sync, and reads their results
    after, instead of waiting for each in turn. Without a BEGIN, the statements before a Sync
    are one implicit transaction: committed at the Sync if all succeeded; if one fails, the
    server skips the rest up to the Sync and rolls back (PostgreSQL's protocol documentation,
    "Pipelining") - so none of them stands. A failure on this side while the statements go
    out (a value the driver cannot send) sends a ROLLBACK before that Sync, which psycopg
    sends on leaving the pipeline whatever happened. No BEGIN and COMMIT of its own: two
    statements fewer to send, run and read back. Each statement still starts with a snapshot
    of its own (READ COMMITTED), so a statement after a row lock sees every change committed
    before the lock was granted; the lock is held until the Sync. `connection` must be in
    autocommit mode and outside any transaction (the transaction is this function's own).

    The last step runs on the connection's kept cursor (`_reusable_cursor`), the others on a
    second kept one: a new psycopg cursor per statement cost about a fifth of the round
    trip's CPU.
    """
    driver = connection.connection.driver_connection
    bound = [prepared._bound(connection, params) for prepared, params in steps]
    (*leading, (last_plan, last_arguments)) = bound
    result = _reusable_cursor(connection)
    others = _reusable_cursor(connection, _PIPELINE_CURSOR)
    try:
        with driver.pipeline():
            try:
                for plan, arguments in leading:
                    others.execute(plan.sql, arguments)
                result.execute(last_plan.sql, last_arguments)
            except BaseException:
                _roll_back_before_the_sync(others)
                raise
        rows = result.fetchall() if last_plan.returns_rows else []
        return _processed(last_plan, rows, result.rowcount)
    except BaseException as error:
        _drop_cursors(connection, (_CURSOR, _PIPELINE_CURSOR))  # not used again after a failure
        if isinstance(error, connection.dialect.loaded_dbapi.Error):
            try:
                driver.rollback()  # rolled back at the Sync; unless interrupted waiting for it
            except connection.dialect.loaded_dbapi.Error:
                pass  # a lost connection: SQLAlchemy drops it, and the pool, next
            connection._handle_dbapi_exception(error, last_plan.sql, last_arguments, None, None)
        raise


def _roll_back_before_the_sync(cursor) -> None:
    """Undo the statements of `in_one_trip` already sent, which the Sync would commit."""
    try:
        cursor.execute("ROLLBACK")
    except Exception:
        pass  # the pipeline failed in the database already: the Sync rolls it back


# Where a database connection keeps the cursor prepared statements run on (in the pool's
# `info` for that connection, which lives as long as the connection).
_CURSOR = "ivr.prepared_cursor"
# The second one `in_one_trip` sends its leading statements on.
_PIPELINE_CURSOR = "ivr.pipeline_cursor"


def _reusable_cursor(connection: Connection, key: str = _CURSOR):
    """Return the driver cursor kept with `connection`'s database connection under `key`,
    made if need be.

    One cursor per database connection (and `in_one_trip` a second), reused by statement
    after statement: a new psycopg cursor learns again, statement by statement, how to
    convert each type of value (15-20 us per statement alone). A connection is used by one
    thread at a time, and so are its cursors.
    """
    pooled = connection.connection
    info = pooled.info
    cursor = info.get(key)
    if cursor is None or cursor.connection is not pooled.driver_connection:
        cursor = info[key] = pooled.cursor()
    return cursor


def _drop_cursors(connection: Connection, keys: tuple[str, ...]) -> None:
    """Forget and close the cursors kept under `keys` after a failure: none is used again."""
    info = connection.connection.info
    for key in keys:
        cursor = info.pop(key, None)
        if cursor is not None:
            try:
                cursor.close()
            except Exception:  # the statement's own error is the one to raise
                pass


def _processed(plan: _Plan, rows: list, count: int) -> _Rows:
    """Return what a statement returned, its values through SQLAlchemy's result processors."""
    if plan.result_processors and rows:
        processed = []
        for row in rows:
            values = list(row)
            for index, process in plan.result_processors:
                values[index] = process(values[index])
            processed.append(tuple(values))
        rows = processed
    return _Rows(rows, count)


def _plain_binds(compiled: Compiled) -> list[tuple[str, str, bool, object]] | None:
    """Each bind parameter's name, key, whether it is required and its own value - or None if
    any needs more of SQLAlchemy's `construct_params` than taking the value given or its own."""
    if compiled.escaped_bind_names or getattr(compiled, "_collected_params", None):
        return None  # (the latter: values set by `.params()`)
    binds = []
    for bindparam, name in compiled.bind_names.items():
        if bindparam.callable is not None or bindparam.expanding or bindparam.literal_execute:
            return None
        binds.append((name, bindparam.key, bindparam.required, bindparam.value))
    return binds


def _bind_values(plan: _Plan, params: dict) -> dict:
    """What `plan.compiled.construct_params(params)` returns, in a fraction of its CPU (one
    statement's values are built a dozen times per call on the webhook path)."""
    if plan.binds is None:
        return plan.compiled.construct_params(params)
    values = {}
    for name, key, required, value in plan.binds:
        if key in params:
            values[name] = params[key]
        elif name in params:
            values[name] = params[name]
        elif required:
            return plan.compiled.construct_params(params)  # raises SQLAlchemy's own error
        else:
            values[name] = value
    return values


class _Lent:
    """The thread's kept connection lent to a block, left with nothing open after it.

    A class rather than a generator context manager: four or five uses a call.
    """

    __slots__ = ("holder",)

    def __init__(self, holder: _KeptHolder) -> None:
        self.holder = holder

    def __enter__(self) -> Connection:
        return self.holder.kept.connection

    def __exit__(self, *exc_info: object) -> None:
        connection = self.holder.kept.connection
        if connection.invalidated or connection.closed:
            return
        try:
            if connection.in_transaction():
                # SQLAlchemy's own, begun by a `connection.execute`; in autocommit the database
                # holds none.
                connection.rollback()
            left_open = not _is_idle(connection)
        except Exception:
            left_open = True
        if left_open:
            # Inside a transaction (an `in_one_trip` interrupted while it waited for its Sync):
            # its row locks must not wait for this thread's next statement. The pool rolls it
            # back.
            self.holder.release()


class _KeptConnection:
    """A thread's own PostgreSQL autocommit connection (`Database._statement_connection`)."""

    __slots__ = ("connection", "restarts", "recycle_at")

    def __init__(self, connection: Connection, restarts: int) -> None:
        self.connection = connection
        self.restarts = restarts  # the database's restart count when it was taken
        self.recycle_at = time.monotonic() + RECYCLE_SECONDS

    def usable(self, restarts: int) -> bool:
        connection = self.connection
        return (
            restarts == self.restarts
            and time.monotonic() < self.recycle_at
            and not connection.invalidated
            and not connection.closed
            and _is_idle(connection)
        )


def _is_idle(connection: Connection) -> bool:
    """PostgreSQL: whether the connection is outside any transaction, as psycopg knows it."""
    status = connection.connection.driver_connection.pgconn.transaction_status
    return status == TransactionStatus.IDLE


class _KeptHolder:
    """What a thread's locals hold of its kept connection; when the thread ends it goes, and
    its `release` gives the connection back."""

    __slots__ = ("kept", "release", "__weakref__")

    def __init__(self, kept: _KeptConnection) -> None:
        self.kept = kept
        self.release: Callable[[], object] = lambda: None


@dataclass(frozen=True)
class _Plan:
    compiled: Compiled
    sql: str
    returns_rows: bool
    positions: list[str] | None
    bind_processors: list[tuple[str, Callable]]
    result_processors: list[tuple[int, Callable]] | None  # (column, processor) where it has one
    binds: list[tuple[str, str, bool, object]] | None  # see `_plain_binds`


@dataclass(frozen=True)
class _Rows:
    """What a prepared statement returned: its rows, and how many rows it changed."""

    rows: list[tuple]
    rowcount: int

    def first(self) -> tuple | None:
        return self.rows[0] if self.rows else None

    def scalar(self):
        return self.rows[0][0] if self.rows else None


class Paged:
    """Paging for a dataclass with `total`, `page` and `per_page` fields."""

    total: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def anywhere(text: str) -> str:
    """Return a LIKE pattern matching `text` literally anywhere (escape character \\)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def digits_only(text: str) -> str:
    return "".join(character for character in text if character in "0123456789")


def _sqlite_file(url: str) -> Path | None:
    """Return the file of a SQLite URL, or None for another database or SQLite in memory."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def _make_engine(url: str, sqlite_file: Path | None, **options) -> Engine:
    """Return the engine for `url`; `options` are PostgreSQL's (SQLite's connections are set
    up here)."""
    if url.startswith("sqlite"):
        if sqlite_file is not None:
            # mode=rw: a file that is gone is an error, not a new empty database that would
            # swallow every row written from then on.
            url = URL.create(
                "sqlite",
                database=f"file:{quote(str(sqlite_file.resolve()))}",
                query={"mode": "rw", "uri": "true"},
            )
        engine = create_engine(url, connect_args={"timeout": 15})
        event.listen(engine, "connect", _sqlite_pragmas)
        if sqlite_file is not None:
            _watch_file(engine, sqlite_file.resolve())
        return engine
    # No pre-ping: it would add a round trip to every checkout on the webhook path. After a
    # database restart SQLAlchemy notices the first broken connection and drops the whole pool;
    # only the requests in flight then fail, and their callers hear an apology.
    return create_engine(
        url, pool_size=10, max_overflow=20, pool_recycle=RECYCLE_SECONDS, **options
    )


def _share_restarts(*engines: Engine, then: Callable[[], None]) -> None:
    """When one engine finds the database restarted, drop every engine's pooled connections,
    then call `then`.

    SQLAlchemy drops a whole pool when one of its connections turns out dead; with two pools
    on one database, the other's connections are just as dead, and would each cost a webhook.
    """

    def drop_every_pool(context) -> None:
        if context.is_disconnect:
            # Every pool, the finder's too, before `then`: a thread that reacts to `then` by
            # taking a new connection must not be handed one of the dead ones still pooled.
            for engine in engines:
                engine.dispose()
            then()

    for engine in engines:
        event.listen(engine, "handle_error", drop_every_pool)


def _watch_file(engine: Engine, path: Path) -> None:
    """Drop pooled connections to a SQLite file that was moved, replaced or deleted.

    An open connection keeps writing to the old file wherever it went; checking the file's
    identity (a stat, microseconds) at every checkout makes the next query open the file that
    is at the path now, or fail if none is.
    """

    def remember(_connection, record) -> None:
        record.info["file_id"] = _file_id(path)

    def still_there(_connection, record, _proxy) -> None:
        if _file_id(path) != record.info.get("file_id"):
            raise DisconnectionError(f"{path} was moved, replaced or deleted")

    event.listen(engine, "connect", remember)
    event.listen(engine, "checkout", still_there)


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino


def _reason(error: Exception) -> str:
    original = getattr(error, "orig", None) or error
    return " ".join(str(original).split())


def _sqlite_pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    # Under WAL this stays consistent; only a power cut can lose the last commits.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
