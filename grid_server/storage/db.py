"""Database engines: SQLite (one file, WAL) by default, PostgreSQL by URL.

SQLite allows one writer at a time. Write transactions start with ``BEGIN
IMMEDIATE`` on their own engine, so a transaction that reads and then writes
never fails to upgrade its lock; reads use a separate engine and never wait
for writers (WAL). On PostgreSQL both roles share one engine.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool


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
        self.url = normalise_url(url)
        parsed = make_url(self.url)
        self.dialect = parsed.get_backend_name()
        self.is_sqlite = self.dialect == "sqlite"
        self.is_postgres = self.dialect == "postgresql"
        if self.is_sqlite:
            if parsed.database in (None, "", ":memory:"):
                raise ValueError("SQLite needs a file (an in-memory database is not shared)")
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            self.write_engine = create_async_engine(self.url, poolclass=NullPool)
            self.read_engine = create_async_engine(self.url, pool_size=pool_size)
            for engine, begin in (
                (self.write_engine, "BEGIN IMMEDIATE"),
                (self.read_engine, "BEGIN"),
            ):
                event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
                event.listen(engine.sync_engine, "begin", _make_begin(begin))
        else:
            self.write_engine = create_async_engine(
                self.url, pool_size=pool_size, max_overflow=10, pool_pre_ping=False
            )
            self.read_engine = self.write_engine

    @property
    def sqlite_path(self) -> Path | None:
        if not self.is_sqlite:
            return None
        database = make_url(self.url).database
        return Path(database) if database else None

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction: committed when the block ends without an exception."""
        async with self.write_engine.begin() as conn:
            yield conn

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
        await self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            await self.read_engine.dispose()


def advisory_key(*parts: str) -> int:
    """A signed 64-bit advisory lock id from a stable hash of ``parts``."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _make_begin(statement: str) -> Any:
    def begin(conn: Any) -> None:
        conn.exec_driver_sql(statement)

    return begin
