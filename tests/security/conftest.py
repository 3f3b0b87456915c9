"""The red-team suite: attacks against a real server on loopback, at the default limits.

Each test attacks a server started by ``run_grid_server`` with the limits a
production grid has (``default_limits=True``), on SQLite and on PostgreSQL
(``database_url``), and asserts the documented refusal and that nothing was
stored or paid (:func:`stored`). Attacks run bounded loops against
127.0.0.1; a second loopback address (``127.0.0.2``, :func:`http_from`)
plays an outsider next to a member, so per-address limits can be seen apart.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from grid_server.storage import schema
from tests.support.grid_server import RunningGrid, run_grid_server

OUTSIDER_ADDRESS = "127.0.0.2"
MEMBER_ADDRESS = "127.0.0.1"
# What an attack must not leave behind: every table a write, a payment or a payout fills.
WATCHED = (
    schema.participants,
    schema.envelopes,
    schema.log_entries,
    schema.readings,
    schema.orders,
    schema.payments,
    schema.payouts,
    schema.ledger_entries,
    schema.sessions,
    schema.dashboard_sessions,
)


@pytest.fixture
async def hardened(database_url: str) -> AsyncIterator[RunningGrid]:
    """A grid server with the default limits of a production grid."""
    async with run_grid_server(database_url, default_limits=True) as running:
        yield running


async def stored(grid: RunningGrid) -> dict[str, int]:
    """Rows in each watched table (compare before and after an attack)."""
    counts: dict[str, int] = {}
    async with grid.grid.db.read() as conn:
        for table in WATCHED:
            counts[table.name] = int(await conn.scalar(select(func.count()).select_from(table)))
    return counts


def http_from(grid: RunningGrid, address: str = OUTSIDER_ADDRESS, **kw: Any) -> httpx.AsyncClient:
    """An HTTP client whose requests come from ``address`` (a loopback address)."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    return httpx.AsyncClient(base_url=grid.url, transport=transport, timeout=10, **kw)
