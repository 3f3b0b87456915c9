"""Database engines: SQLite (one file, WAL) by default, PostgreSQL by URL.

SQLite allows one writer at a time. Write transactions start with ``BEGIN
IMMEDIATE`` on their own engine, so a transaction that reads and then writes
never fails to upgrade its lock; reads use a separate engine and never wait
for writers (WAL). On PostgreSQL both roles share one engine.

The group-commit writer's transactions (:meth:`Database.write_batch`) are the
hot path: on SQLite they run on one long-lived connection of the synchronous
driver. ``BEGIN IMMEDIATE`` (which may wait for another writer) and
``COMMIT`` (the fsync) run in that connection's own thread, so the event loop
never blocks on them; the statements in between run inline, without a thread
hop each — they are microseconds of SQLite work, while a hop through
aiosqlite's thread costs a wake-up of two threads and, on a busy machine,
often a scheduler time slice.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import weakref
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Connection, Engine, Executable, create_engine, event, text
from sqlalchemy.engine import CursorResult, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from .files import ensure_private


def normalise_url(url: str) -> str:
    """``postgresql://`` → asyncpg, ``sqlite://`` → aiosqlite; a bare path means SQLite."""
    if "://" not in url:
        return f"sqlite+aiosqlite:///{url}"
    scheme, rest = url.split("://", 1)
    if scheme in ("postgres", "postgresql", "postgresql+psycopg", "postgresql+psycopg2"):
        return f"postgresql+asyncpg://{rest}"
    if scheme == "sqlite":
        return f"sqlite+aiosqlite://{rest}"
    return url


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (None for another database), without touching it."""
    parsed = make_url(normalise_url(url))
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return Path(parsed.database)


def _private_file(dialect: Any, conn_rec: Any, cargs: Any, cparams: Any) -> None:
    """Before SQLite opens (and so creates) the database: create it 0600, not world-readable.

    SQLite gives its journal and WAL files the database file's mode.
    """
    database = cargs[0] if cargs else cparams.get("database")
    if isinstance(database, str) and database not in ("", ":memory:"):
        if database.startswith("file:"):
            return  # a URI (tests, read-only opens): SQLite's own rules
        ensure_private(Path(database))


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Transactions are begun explicitly (see _begin_*), not by the driver.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit is on disk before the grid acknowledges anything.
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA cache_size=-65536")
    cur.execute("PRAGMA temp_store=MEMORY")
    cur.close()


class Database:
    def __init__(self, url: str, *, pool_size: int = 5) -> None:
        # aiosqlite runs each connection in a thread of its own; dispose() waits for them.
        self._workers: weakref.WeakSet[threading.Thread] = weakref.WeakSet()
        self.url = normalise_url(url)
        parsed = make_url(self.url)
        self.dialect = parsed.get_backend_name()
        self.is_sqlite = self.dialect == "sqlite"
        self.is_postgres = self.dialect == "postgresql"
        if self.is_sqlite:
            if parsed.database in (None, "", ":memory:"):
                raise ValueError("SQLite needs a file (an in-memory database is not shared)")
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            # Kept open between transactions: opening an aiosqlite connection
            # (a thread, the pragmas) costs more than most write transactions.
            self.write_engine = create_async_engine(self.url, pool_size=2, max_overflow=10)
            self.read_engine = create_async_engine(self.url, pool_size=pool_size)
            for engine, begin in (
                (self.write_engine, "BEGIN IMMEDIATE"),
                (self.read_engine, "BEGIN"),
            ):
                event.listen(engine.sync_engine, "do_connect", _private_file)
                event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
                event.listen(engine.sync_engine, "connect", self._track_worker)
                event.listen(engine.sync_engine, "begin", _make_begin(begin))
            self._batch_engine: Engine | None = None
            self._batch_conn: Connection | None = None
            self._batch_thread: ThreadPoolExecutor | None = None
        else:
            self.write_engine = create_async_engine(
                self.url,
                pool_size=pool_size,
                max_overflow=10,
                pool_pre_ping=False,
                # Plan every execution with its values. asyncpg prepares each statement,
                # and after five runs PostgreSQL may keep a generic plan that ignores
                # them: for a writer batch's "participant_id IN (512 ids) AND
                # interval_start = $513" it scanned the whole interval through
                # ix_readings_interval and filtered: 600-825 ms a batch once the
                # interval held 100,000-150,000 readings, against about 10 ms planned
                # with the values (measured on a copy of the table's shape; the
                # 100,000-household benchmark's readings phase). Planning costs less.
                connect_args={"server_settings": {"plan_cache_mode": "force_custom_plan"}},
            )
            self.read_engine = self.write_engine

    @property
    def sqlite_path(self) -> Path | None:
        return sqlite_file(self.url)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction: committed when the block ends without an exception."""
        async with self.write_engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def write_batch(self) -> AsyncIterator[AsyncConnection]:
        """The group-commit writer's transaction: committed when the block ends cleanly.

        PostgreSQL: :meth:`write`. SQLite: the writer's own connection (see the
        module documentation); what the block gets behaves like an
        :class:`AsyncConnection` for ``execute`` and ``scalar``, the only calls
        the writer's code makes. One batch at a time (the writer is one task).
        """
        if not self.is_sqlite:
            async with self.write() as conn:
                yield conn
            return
        loop = asyncio.get_running_loop()
        thread, sync_conn = self._batch_connection()
        try:
            await loop.run_in_executor(thread, sync_conn.begin)
            yield cast(AsyncConnection, InlineConnection(sync_conn))
            await loop.run_in_executor(thread, sync_conn.commit)
        except BaseException:
            # Queued in the connection's thread behind a BEGIN or COMMIT that
            # may still run there (after a cancellation), never beside it.
            thread.submit(_rollback_quietly, sync_conn)
            raise

    def _batch_connection(self) -> tuple[ThreadPoolExecutor, Connection]:
        if self._batch_thread is None:
            self._batch_thread = ThreadPoolExecutor(1, thread_name_prefix="p2p-sqlite-writer")
        if self._batch_conn is None:
            engine = create_engine(
                self.url.replace("sqlite+aiosqlite://", "sqlite+pysqlite://", 1),
                poolclass=NullPool,
                # Used from the loop and from its own thread, never at once.
                connect_args={"check_same_thread": False},
            )
            event.listen(engine, "connect", _sqlite_pragmas)
            event.listen(engine, "begin", _make_begin("BEGIN IMMEDIATE"))
            self._batch_engine = engine
            self._batch_conn = engine.connect()
        return self._batch_thread, self._batch_conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.read_engine.connect() as conn:
            yield conn

    async def advisory_xact_lock(self, conn: AsyncConnection, lock_id: int, *, wait: bool) -> bool:
        """Take a transaction-scoped PostgreSQL advisory lock (always True on SQLite).

        SQLite's single writer already serialises; on PostgreSQL this makes
        one worker of many do a given job (clear an interval, append to the
        log chain).
        """
        if not self.is_postgres:
            return True
        if wait:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_id})
            return True
        got = await conn.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": lock_id})
        return bool(got)

    async def dispose(self) -> None:
        if self.is_sqlite and self._batch_thread is not None:
            thread, conn = self._batch_thread, self._batch_conn
            self._batch_thread = self._batch_conn = None
            if conn is not None:
                await asyncio.get_running_loop().run_in_executor(thread, conn.close)
            thread.shutdown(wait=True)
            if self._batch_engine is not None:
                self._batch_engine.dispose()
                self._batch_engine = None
        await self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            await self.read_engine.dispose()
        await self._workers_gone()

    def _track_worker(self, dbapi_conn: Any, _record: Any) -> None:
        thread = getattr(getattr(dbapi_conn, "driver_connection", None), "_thread", None)
        if isinstance(thread, threading.Thread):
            self._workers.add(thread)

    async def _workers_gone(self, seconds: float = 5.0) -> None:
        """Return once the closed connections' threads have ended (they end right after).

        aiosqlite resolves ``close()`` just before its thread returns; a caller
        that checks for leftover threads the moment ``dispose()`` returns (or a
        process that exits then) would otherwise race it.
        """
        deadline = asyncio.get_running_loop().time() + seconds
        for thread in list(self._workers):
            # A thread has nothing to await: poll its end, briefly.
            while thread.is_alive() and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.001)


def advisory_key(*parts: str) -> int:
    """A signed 64-bit advisory lock id from a stable hash of ``parts``."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def interval_lock_key(grid: str, interval: datetime) -> int:
    """The advisory lock of one interval: the cycle takes it to clear and settle it, the
    writer shares it while it accepts orders and readings for the interval."""
    return advisory_key(grid, "interval", interval.isoformat())


def join_lock_key(grid: str, address: str) -> int:
    """The advisory lock of a key joining the grid: a writer holds it while it may insert
    the participant, so two workers never both insert (or both admit) one key."""
    return advisory_key(grid, "join", address)


class InlineConnection:
    """The async connection interface the writer uses, run inline on a synchronous one."""

    __slots__ = ("_conn",)

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def execute(
        self,
        statement: Executable,
        parameters: Any = None,
        *,
        execution_options: Any = None,
    ) -> CursorResult[Any]:
        return self._conn.execute(statement, parameters, execution_options=execution_options)

    async def scalar(
        self,
        statement: Executable,
        parameters: Any = None,
        *,
        execution_options: Any = None,
    ) -> Any:
        return self._conn.scalar(statement, parameters, execution_options=execution_options)


def _rollback_quietly(conn: Connection) -> None:
    if conn.in_transaction():
        try:
            conn.rollback()
        except Exception:  # the connection is unusable: start afresh next time
            conn.invalidate()


def _make_begin(statement: str) -> Any:
    def begin(conn: Any) -> None:
        conn.exec_driver_sql(statement)

    return begin
