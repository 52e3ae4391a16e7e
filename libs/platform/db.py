"""SQLAlchemy 2 async engine per service and the unit of work.

The use case owns the transaction: ``async with db.transaction() as tx`` commits when the block
ends normally and rolls back otherwise. Repositories never commit. A unit of work is a Core
``AsyncConnection``, not an ORM session: the repositories speak SQLAlchemy Core, and skipping the
ORM layer saves a good part of the per-statement overhead on the hot path.

A COMMIT whose answer is lost (the connection cut after the database made it durable, or
before it arrived) raises :class:`CommitUnknown`, never the driver's error: the caller cannot
tell from it whether the unit of work is stored. ``CommitUnknown.settle()`` waits until the old
transaction is over one way or the other (on PostgreSQL: its server process is gone), after
which a fresh read of the request's idempotency key is conclusive; ``idempotency.run_once``
does exactly that. Left unresolved it is UNAVAILABLE with ``REASON_COMMIT_OUTCOME_UNKNOWN``:
retry with the same request_id.

SQLite (the embedded default) serialises writers. Write transactions start with
``BEGIN IMMEDIATE`` so a read-then-write unit of work takes the write lock up front and two of
them can never deadlock; read-only sessions use a plain deferred ``BEGIN``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sqlalchemy import Table, event, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from libs.core.errors import DomainError, Reason
from libs.platform.logs import get_logger

if TYPE_CHECKING:
    from libs.platform.settings import Settings

_log = get_logger("medsettle.db")

_READONLY = "medsettle_readonly"

# How long settle() waits for the server process of a transaction whose COMMIT answer was lost.
SETTLE_SECONDS = 5.0


class CommitUnknown(DomainError):
    """The COMMIT was sent (or about to be) and its answer never came: the unit of work may or
    may not be stored. UNAVAILABLE with REASON_COMMIT_OUTCOME_UNKNOWN when nothing resolves it."""

    def __init__(self, db: Database, server_pid: int | None, dependency: str) -> None:
        super().__init__(
            Reason.COMMIT_OUTCOME_UNKNOWN,
            "the database's answer to the commit was lost: retry with the same request_id",
            metadata={"dependency": dependency},
        )
        self.db = db
        self.server_pid = server_pid
        self.dependency = dependency

    async def settle(self) -> bool:
        """True once the old transaction is over (committed or rolled back for good), so that a
        new unit of work sees its outcome; False when that cannot be known (database down)."""
        if self.db.is_sqlite:
            return True  # in-process: the failed COMMIT call itself is final
        if self.server_pid is None:
            return False
        deadline = time.monotonic() + SETTLE_SECONDS
        try:
            async with self.db.engine.connect() as conn:
                # Ends the old server process if it still waits for us (a COMMIT that never
                # arrived: rolled back); a COMMIT in progress finishes first (PostgreSQL holds
                # interrupts while it commits).
                await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": self.server_pid})
                while time.monotonic() < deadline:
                    alive = (
                        await conn.execute(
                            text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": self.server_pid}
                        )
                    ).scalar_one()
                    if not alive:
                        return True
                    await asyncio.sleep(0.05)
                    await conn.rollback()  # a new snapshot of pg_stat_activity
        except Exception:  # noqa: BLE001 - the database cannot be reached: the outcome stays unknown
            return False
        return False


def _sqlite_connect(dbapi_conn: Any, _: Any) -> None:
    dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see _sqlite_begin)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(_READONLY) else "BEGIN IMMEDIATE")


# SQLSTATE classes and codes that mean "the database cannot serve this now", not "this request is
# wrong": connection exceptions (08), insufficient resources (53), operator intervention (57:
# statement timeout, shutdown, starting up), lock_not_available (55P03, the lock timeout).
_UNAVAILABLE_SQLSTATE_CLASSES = ("08", "53", "57")
_UNAVAILABLE_SQLSTATES = ("55P03",)
_SQLITE_UNAVAILABLE = ("database is locked", "unable to open database", "disk i/o error", "database is full")


_CONFLICT_SQLSTATES = ("40P01", "40001")


class TransactionConflict(Exception):
    """The server rolled the transaction back (deadlock detected, serialization failure): nothing
    of it was stored, and running it again is safe."""


def is_conflict(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it) is a deadlock or serialization failure."""
    e: BaseException | None = exc
    for _ in range(8):
        if e is None:
            return False
        if getattr(e, "sqlstate", None) in _CONFLICT_SQLSTATES or getattr(e, "pgcode", None) in _CONFLICT_SQLSTATES:
            return True
        e = getattr(e, "orig", None) or e.__cause__
    return False


def is_unreachable(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it) says the database could not be reached or could not
    serve the statement in time; False for errors of the request itself (constraints, bugs)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, DomainError):
            return False
        if isinstance(e, OSError):  # refused, reset, timed out, name not resolved
            return True
        if getattr(e, "connection_invalidated", False):
            return True
        state = getattr(e, "sqlstate", None)
        if isinstance(state, str) and (state[:2] in _UNAVAILABLE_SQLSTATE_CLASSES or state in _UNAVAILABLE_SQLSTATES):
            return True
        name = type(e).__name__
        if name in ("ConnectionDoesNotExistError", "ConnectionFailureError", "InternalClientError"):
            return True
        if name == "InterfaceError" and "closed" in str(e).lower():
            return True
        if name == "OperationalError" and any(m in str(e).lower() for m in _SQLITE_UNAVAILABLE):
            return True
        todo.extend((getattr(e, "orig", None), e.__cause__, e.__context__))
    return False


def _error_code(exc: BaseException) -> str:
    """The error's type and SQLSTATE for a log line: never its text (it may quote SQL or data)."""
    e: BaseException | None = exc
    while e is not None:
        state = getattr(e, "sqlstate", None)
        if isinstance(state, str):
            return f"{type(e).__name__}:{state}"
        e = getattr(e, "orig", None) or e.__cause__
    return type(exc.__cause__ or exc).__name__


class _NoExceptionText(logging.Filter):
    """SQLAlchemy logs pool and connection errors with a traceback whose text can quote SQL and
    its parameters: keep the line, drop the traceback, name the error's type."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            record.msg = f"{record.getMessage()} ({_error_code(record.exc_info[1])})"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


_NO_TEXT = _NoExceptionText()


def _quiet(logger: Any) -> None:
    """A logger's filters do not reach its children: filter the very loggers SQLAlchemy uses."""
    target = getattr(logger, "logger", logger)  # an echo-enabled engine wraps its logger
    if isinstance(target, logging.Logger) and _NO_TEXT not in target.filters:
        target.addFilter(_NO_TEXT)


class Database:
    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        echo: bool = False,
        name: str = "database",
        statement_timeout_ms: int = 0,
        lock_timeout_ms: int = 0,
        idle_in_transaction_timeout_ms: int = 0,
        connect_timeout_seconds: float = 10.0,
    ) -> None:
        self.url = url
        self.dependency = name  # how errors and logs name this database (never its URL)
        self.is_sqlite = url.startswith("sqlite")
        self.reachable = True
        # hide_parameters: an error's text never carries the statement's values (ID numbers)
        kwargs: dict[str, Any] = {"echo": echo, "hide_parameters": True}
        if not self.is_sqlite:
            server_settings = {
                k: str(v)
                for k, v in (
                    ("statement_timeout", statement_timeout_ms),
                    ("lock_timeout", lock_timeout_ms),
                    ("idle_in_transaction_session_timeout", idle_in_transaction_timeout_ms),
                )
                if v
            }
            connect_args: dict[str, Any] = {"timeout": connect_timeout_seconds, "server_settings": server_settings}
            if statement_timeout_ms:
                # a half-open connection (frozen network) answers nothing: give up on the client
                # side too, a little after the server would have cancelled the statement
                connect_args["command_timeout"] = statement_timeout_ms / 1000 + connect_timeout_seconds
            kwargs.update(
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_pre_ping=False,
                pool_timeout=connect_timeout_seconds,
                connect_args=connect_args,
            )
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        _quiet(getattr(self.engine.sync_engine, "logger", None))
        _quiet(getattr(self.engine.sync_engine.pool, "logger", None))
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_connect)
            event.listen(self.engine.sync_engine, "begin", _sqlite_begin)

    @classmethod
    def from_settings(cls, settings: Settings, service: str) -> Database:
        """The service's own database with the limits of the settings (MEDSETTLE_DB_*)."""
        return cls(
            settings.database_url(service),
            pool_size=settings.db_pool_size,
            echo=settings.db_echo,
            name=f"{service}-database",
            statement_timeout_ms=settings.db_statement_timeout_ms,
            lock_timeout_ms=settings.db_lock_timeout_ms,
            idle_in_transaction_timeout_ms=settings.db_idle_in_transaction_timeout_ms,
            connect_timeout_seconds=settings.db_connect_timeout_seconds,
        )

    # -- reachability -----------------------------------------------------------------------
    def _unavailable(self, exc: BaseException) -> DomainError:
        self.mark_down(exc)
        return DomainError(
            Reason.DEPENDENCY_UNAVAILABLE,
            f"{self.dependency} is unavailable; retry with the same request_id",
            metadata={"dependency": self.dependency},
        )

    def mark_down(self, exc: BaseException) -> None:
        """One log line when the database becomes unreachable, not one per call."""
        if self.reachable:
            self.reachable = False
            _log.warning("dependency_unavailable", dependency=self.dependency, error=_error_code(exc))

    def mark_up(self) -> None:
        if not self.reachable:
            self.reachable = True
            _log.info("dependency_available", dependency=self.dependency)

    async def ping(self, within: float = 2.0) -> bool:
        """Whether the database answers ``SELECT 1`` within ``within`` seconds (updates ``reachable``)."""
        try:
            async with asyncio.timeout(within):
                async with self.engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - any failure: not reachable
            self.mark_down(exc)
            return False
        self.mark_up()
        return True

    @contextlib.contextmanager
    def _classified(self) -> Iterator[None]:
        """Errors that say the database is down become DEPENDENCY_UNAVAILABLE (UNAVAILABLE); a
        transaction the server rolled back to break a deadlock (or a serialization failure)
        becomes :class:`TransactionConflict`, which :func:`~libs.platform.idempotency.run_once`
        runs again."""
        try:
            yield
        except CommitUnknown as exc:
            if is_unreachable(exc.__cause__ or exc):
                self.mark_down(exc.__cause__ or exc)
            raise
        except Exception as exc:
            if is_unreachable(exc):
                raise self._unavailable(exc) from exc
            if is_conflict(exc):
                raise TransactionConflict("the database rolled the transaction back to resolve a conflict") from exc
            raise

    # -- units of work ----------------------------------------------------------------------
    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One unit of work: commit on success, roll back on any exception. A failed COMMIT
        raises :class:`CommitUnknown` (see the module's docstring); a database that cannot be
        reached, DEPENDENCY_UNAVAILABLE."""
        with self._classified():
            async with self.engine.connect() as conn:
                trans = await conn.begin()
                try:
                    yield conn
                except BaseException:
                    with contextlib.suppress(Exception):  # the block's own error is the one to see
                        await trans.rollback()
                    raise
                pid = self._server_pid(conn)
                try:
                    await trans.commit()
                except Exception as exc:
                    raise CommitUnknown(self, pid, self.dependency) from exc
        self.mark_up()

    def _server_pid(self, conn: AsyncConnection) -> int | None:
        if self.is_sqlite:
            return None
        with contextlib.suppress(Exception):
            pid = conn.sync_connection.connection.driver_connection.get_server_pid()  # type: ignore[union-attr]
            return int(pid)
        return None

    @staticmethod
    def server_pid_of(driver: Any) -> int | None:
        """The server process of an asyncpg connection (for :class:`CommitUnknown`)."""
        with contextlib.suppress(Exception):
            return int(driver.get_server_pid())
        return None

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only unit (rolled back when the block ends)."""
        with self._classified():
            async with self.engine.connect() as conn:
                if self.is_sqlite:
                    await conn.execution_options(**{_READONLY: True})
                yield conn

    @asynccontextmanager
    async def driver_connection(self) -> AsyncIterator[Any]:
        """A pooled connection's own driver connection (asyncpg), for a hot path that speaks SQL
        directly instead of through SQLAlchemy (PostgreSQL only). The caller runs its own
        transaction on it (``async with conn.transaction():``) and ends it inside the block; a
        connection handed back still inside a transaction is discarded, never reused."""
        if self.is_sqlite:
            raise RuntimeError("driver_connection is for PostgreSQL; SQLite goes through SQLAlchemy")
        with self._classified():
            async with self.engine.connect() as conn:
                raw = await conn.get_raw_connection()
                driver = raw.driver_connection
                try:
                    yield driver
                finally:
                    if driver is None or driver.is_closed() or driver.is_in_transaction():
                        await conn.invalidate()

    async def dispose(self) -> None:
        await self.engine.dispose()


R = TypeVar("R")


class Store(Generic[R]):
    """A service's store over its own database: ``transaction()`` and ``read()`` each hand out
    the service's repository (``repository``, built on the unit's connection). A subclass names
    its repository class and adds what else its port asks for."""

    repository: Callable[[AsyncConnection], R]

    def __init__(self, db: Database) -> None:
        self.db = db

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[R]:
        async with self.db.transaction() as conn:
            yield self.repository(conn)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[R]:
        async with self.db.read() as conn:
            yield self.repository(conn)


async def upsert(conn: AsyncConnection, table: Table, key: str, row: dict[str, Any]) -> None:
    """Portable upsert (the same SQL on SQLite and PostgreSQL): update the row with this key,
    insert it when nothing matched. Callers hold the write lock or accept last-writer-wins."""
    values = {k: v for k, v in row.items() if k != key}
    result = await conn.execute(table.update().where(table.c[key] == row[key]).values(**values))
    if result.rowcount == 0:
        await conn.execute(table.insert().values(**row))
