"""Fixtures: a real grid server on loopback, on SQLite and on PostgreSQL."""

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


# Servers and PostgreSQL listen on 127.0.0.1; Home Assistant's test plugin
# blocks sockets unless a test asks for them.
pytestmark = pytest.mark.usefixtures("socket_enabled")


@pytest.fixture(autouse=True)
def _loopback(socket_enabled: None) -> None:
    pytest_socket.socket_allow_hosts(["127.0.0.1"])


@pytest.fixture(scope="session")
def pg_pool() -> Iterator[PostgresDatabases | None]:
    pytest_socket.enable_socket()
    with postgres_databases() as pool:
        yield pool
        pytest_socket.enable_socket()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, pg_pool: PostgresDatabases | None
) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
        return
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
async def grid(database_url: str) -> AsyncIterator[RunningGrid]:
    async with run_grid_server(database_url) as running:
        yield running
