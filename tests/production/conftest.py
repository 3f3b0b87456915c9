"""Fixtures: throwaway databases (SQLite file, PostgreSQL) and loopback sockets."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.server.conftest import _loopback, pg_pool
from tests.support.grid_server import POSTGRES_ENV, PostgresDatabases, sqlite_url

logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
logging.getLogger("httpx").setLevel(logging.WARNING)

__all__ = ["_loopback", "pg_pool"]


async def _postgres(pg_pool: PostgresDatabases | None) -> AsyncIterator[str]:
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
