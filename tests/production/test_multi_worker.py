"""Several real worker processes on one PostgreSQL: exactly once, one chain, every event everywhere.

Two "hosts" share one database: ``p2p-grid serve --workers 2`` on one port
and a single ``p2p-grid serve`` on another. Households talk to both (and,
behind the first port, to whichever worker the kernel hands the connection
to); every worker runs the interval cycle and the payout loop. Over four
intervals (ingest, clearing, settlement, statements, payouts) each interval
is cleared and settled exactly once, each statement and payout exists once,
the audit log is one chain that ``p2p-grid audit verify`` accepts, and every
household's live stream, whichever worker it is connected to, delivers every
event visible to it: the same ids as the events table, in order, no gaps, no
repeats.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import pytest_socket

from grid_server.storage.db import Database
from tests.support.processes import GridProcess, Operator, SharedClock, audit_verify, grid_toml
from tests.support.production_scenario import (
    START,
    T0,
    Home,
    Q,
    Streams,
    check_history,
    close,
    drive,
    join,
)

pytestmark = [pytest.mark.usefixtures("socket_enabled"), pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture(autouse=True)
def _loopback_only(socket_enabled: None) -> None:
    pytest_socket.socket_allow_hosts(["127.0.0.1"])


async def test_workers_on_two_hosts_share_one_grid(postgres_url: str, tmp_path: Path) -> None:
    clock = SharedClock(tmp_path / "clock", START)
    config = grid_toml(tmp_path / "grid.toml")
    hosts = [
        GridProcess("a", postgres_url, tmp_path, config=config, clock=clock, workers=2),
        GridProcess("b", postgres_url, tmp_path, config=config, clock=clock),
    ]
    db = Database(postgres_url)
    operator = Operator(hosts[0].url)
    homes: list[Home] = []
    streams: Streams | None = None
    try:
        await asyncio.gather(*(host.run() for host in hosts))
        homes = await join(operator, [h.url for h in hosts], clock, sellers=4, buyers=4)
        streams = Streams(homes)
        await operator.mint(await operator.grid_address(), 10**9)
        await drive(homes, clock, db)
        # Every stream caught up with the events table (LISTEN/NOTIFY across workers).
        await streams.check_complete(db)
        for home in homes:
            kinds = {e.kind for e in streams.received[home.address]}
            assert {"market_result", "fills", "settled", "statement"} <= kinds
            assert ("payment" in kinds) is home.seller
    finally:
        if streams is not None:
            await streams.stop()
        await close(homes)
        await operator.close()
        await asyncio.gather(*(host.stop() for host in hosts))
    try:
        await check_history(db, homes, [T0 + n * Q for n in range(4)], T0)
    finally:
        await db.dispose()
    assert await audit_verify(postgres_url) == 0
