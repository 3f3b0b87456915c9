"""Fixtures every test package shares: loopback sockets, a grid server, throwaway databases.

``database_url`` runs a test twice, on a SQLite file and on a throwaway
PostgreSQL database (cloned from one migrated template per session). Without
``P2P_TEST_POSTGRES_URL`` the PostgreSQL half is skipped on a developer's
machine and **fails** in CI (``CI`` set): the PostgreSQL path must run there.
They are imported into ``tests/conftest.py``, so every package sees them; a
package's own conftest may override one by name (the Home Assistant tests
bring their own ``grid``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_socket

from tests.support.grid_server import (
    POSTGRES_ENV,
    PostgresDatabases,
    RunningGrid,
    postgres_databases,
    run_grid_server,
    sqlite_url,
)

# Home Assistant's test plugin turns SQLAlchemy's statement log on; it floods
# the output and slows every query.
logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
logging.getLogger("httpx").setLevel(logging.WARNING)


@pytest.fixture(autouse=True)
def _loopback(socket_enabled: None) -> None:
    """Servers and PostgreSQL listen on 127.0.0.1; Home Assistant's plugin blocks the rest."""
    pytest_socket.socket_allow_hosts(["127.0.0.1"])


@pytest.fixture(scope="session")
def pg_pool() -> Iterator[PostgresDatabases | None]:
    pytest_socket.enable_socket()
    with postgres_databases() as pool:
        yield pool
        pytest_socket.enable_socket()


async def _postgres(pg_pool: PostgresDatabases | None) -> AsyncIterator[str]:
    """A throwaway PostgreSQL database; skipped locally without one, a failure in CI."""
    if pg_pool is None:
        if os.environ.get("CI"):
            pytest.fail(f"{POSTGRES_ENV} must be set in CI")
        pytest.skip(f"set {POSTGRES_ENV} to run the PostgreSQL tests")
    url = await pg_pool.new()
    try:
        yield url
    finally:
        await pg_pool.drop(url)


@pytest.fixture
async def postgres_url(pg_pool: PostgresDatabases | None) -> AsyncIterator[str]:
    async for url in _postgres(pg_pool):
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, pg_pool: PostgresDatabases | None
) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
        return
    async for url in _postgres(pg_pool):
        yield url


@pytest.fixture
async def grid(database_url: str) -> AsyncIterator[RunningGrid]:
    async with run_grid_server(database_url) as running:
        yield running
