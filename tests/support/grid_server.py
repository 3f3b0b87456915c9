"""Run a real grid server on 127.0.0.1 for tests (reusable by every test package).

Usage::

    async with run_grid_server(database_url) as grid:
        code = await grid.invite()
        client = grid.client()            # a GridClient signing with the grid's test clock
        await client.join(code, "Alice")
        grid.clock.advance(minutes=15)    # time only moves when the test says so
        await grid.run_cycle()            # clear/settle what is due now

The server is uvicorn on an ephemeral loopback port in the test's own event
loop, with a :class:`ManualClock`. For PostgreSQL, :func:`postgres_databases`
makes a throwaway database per test from a migrated template.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

from grid_server.api import create_app
from grid_server.config import GridConfig, Settings
from grid_server.domain.clock import ManualClock
from grid_server.service.wiring import Grid
from p2p_energy_client.crypto import KeyPair
from p2p_energy_client.grid_client import GridClient

# A Friday morning; tests move the clock from here.
DEFAULT_START = datetime(2026, 11, 27, 10, 3, tzinfo=UTC)
OPERATOR_TOKEN = "test-operator-token"
POSTGRES_ENV = "P2P_TEST_POSTGRES_URL"


@dataclass
class RunningGrid:
    url: str
    app: FastAPI
    grid: Grid
    clock: ManualClock
    server: uvicorn.Server
    task: asyncio.Task[None]
    operator_token: str = OPERATOR_TOKEN
    clients: list[GridClient] = field(default_factory=list)

    async def invite(
        self,
        *,
        zone: str | None = None,
        role: str | None = None,
        expires_at: datetime | None = None,
    ) -> str:
        issued = await self.grid.operator.create_invitation(
            zone=zone, role=role, expires_at=expires_at
        )
        return issued.code

    def client(self, keys: KeyPair | None = None, **kwargs: Any) -> GridClient:
        kwargs.setdefault("clock", self.clock.now)
        kwargs.setdefault("timeout", 10.0)
        client = GridClient(self.url, keys or KeyPair.generate(), **kwargs)
        self.clients.append(client)
        return client

    async def member(self, name: str = "Household", **invite: Any) -> GridClient:
        """A client that has already joined."""
        client = self.client()
        await client.join(await self.invite(**invite), name)
        return client

    async def run_cycle(self) -> None:
        await self.grid.cycle.run_due()

    async def stop(self) -> None:
        for client in self.clients:
            await client.close()
        self.server.should_exit = True
        await self.task


def test_ledger_key(database_url: str) -> KeyPair:
    """The grid's ledger key in tests: derived from the database, stable across restarts."""
    return KeyPair(hashlib.sha256(b"p2p-test-ledger-key|" + database_url.encode()).digest())


LOAD_TEST_LIMITS: dict[str, Any] = {
    "rate_per_key": 1000.0,
    "burst_per_key": 10_000,
    "rate_per_address": 5000.0,
    "burst_per_address": 20_000,
    "refusals_per_address": 1000.0,
    "refusal_burst_per_address": 10_000,
}


def test_settings(database_url: str, **overrides: Any) -> Settings:
    grid = overrides.pop("grid", None) or GridConfig(id="test-grid", name="Test grid")
    overrides.setdefault("operator_token", OPERATOR_TOKEN)
    # The grid's ledger key, the same for every server on one database (a key
    # file would land in the working directory on PostgreSQL).
    overrides.setdefault("ledger_key", test_ledger_key(database_url).seed_hex)
    overrides.setdefault("run_cycle", False)  # tests drive the cycle with run_cycle()
    if not overrides.pop("default_limits", False):
        # Tests send from one loopback address, many envelopes per key in a
        # moment: the limits of a load test. tests/security runs the defaults.
        for name, value in LOAD_TEST_LIMITS.items():
            overrides.setdefault(name, value)
    return Settings(database_url=database_url, grid=grid, **overrides)


@asynccontextmanager
async def run_grid_server(
    database_url: str,
    *,
    clock: ManualClock | None = None,
    settings: Settings | None = None,
    port: int = 0,
    **overrides: Any,
) -> AsyncIterator[RunningGrid]:
    clock = clock or ManualClock(DEFAULT_START)
    settings = settings or test_settings(database_url, **overrides)
    app = create_app(settings, clock)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", ws="auto"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # raises the start-up error
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    running = RunningGrid(f"http://127.0.0.1:{port}", app, app.state.grid, clock, server, task)
    try:
        yield running
    finally:
        await running.stop()


# --- databases ------------------------------------------------------------------


def sqlite_url(directory: Path) -> str:
    return f"sqlite:///{directory / 'grid.db'}"


class PostgresDatabases:
    """Throwaway databases on the test PostgreSQL, cloned from one migrated template."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.prefix = f"p2p_test_{secrets.token_hex(4)}"
        self.template = f"{self.prefix}_tpl"
        self.created: list[str] = []
        self._n = 0

    def _url(self, name: str) -> str:
        head, _, _ = self.base_url.rpartition("/")
        return f"{head}/{name}"

    async def _admin(self, *statements: str) -> None:
        import asyncpg  # noqa: PLC0415

        conn = await asyncpg.connect(self.base_url)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    async def setup(self) -> None:
        from grid_server.storage.db import Database  # noqa: PLC0415
        from grid_server.storage.migrate import upgrade  # noqa: PLC0415

        await self._admin(f'CREATE DATABASE "{self.template}"')
        self.created.append(self.template)
        db = Database(self._url(self.template))
        try:
            await upgrade(db)
        finally:
            await db.dispose()

    async def new(self) -> str:
        self._n += 1
        name = f"{self.prefix}_{self._n}"
        await self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        self.created.append(name)
        return self._url(name)

    async def drop(self, url: str) -> None:
        name = url.rpartition("/")[2]
        await self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if name in self.created:
            self.created.remove(name)

    async def teardown(self) -> None:
        for name in reversed(self.created):
            await self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.created.clear()


@contextmanager
def postgres_databases() -> Iterator[PostgresDatabases | None]:
    """A :class:`PostgresDatabases` when ``P2P_TEST_POSTGRES_URL`` is set, else None."""
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        yield None
        return
    pool = PostgresDatabases(base)
    asyncio.run(pool.setup())
    try:
        yield pool
    finally:
        asyncio.run(pool.teardown())
