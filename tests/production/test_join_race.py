"""Joins racing for one invitation across server processes on one PostgreSQL: one member each.

Two ``p2p-grid serve`` processes share the database, so two joins with one
code can be in two transactions at once (within one process the writer
applies them one after the other). Whatever the timing, each code makes
exactly one member, a refused join leaves no participant behind, and the
audit log still explains every row.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import pytest_socket
from sqlalchemy import func, select

from grid_server.storage.db import Database
from grid_server.storage.schema import participants
from p2p_energy_client.crypto import KeyPair
from p2p_energy_client.grid_client import GridClient
from p2p_energy_client.protocol import ErrorCode, ProtocolError
from tests.support.processes import GridProcess, Operator, SharedClock, audit_verify, grid_toml
from tests.support.production_scenario import START

pytestmark = [pytest.mark.usefixtures("socket_enabled"), pytest.mark.postgres, pytest.mark.slow]

ROUNDS = 12
JOINERS = 6  # per code, half to each process


@pytest.fixture(autouse=True)
def _loopback_only(socket_enabled: None) -> None:
    pytest_socket.socket_allow_hosts(["127.0.0.1"])


async def test_one_code_one_member_across_processes(postgres_url: str, tmp_path: Path) -> None:
    clock = SharedClock(tmp_path / "clock", START)
    config = grid_toml(tmp_path / "grid.toml")
    # Every loser is a failed code from 127.0.0.1: lift the brute-force guard for this test.
    lifted = {"P2P_JOIN_FAILURES_PER_HOUR": "100000"}
    hosts = [
        GridProcess(name, postgres_url, tmp_path, config=config, clock=clock, env=lifted)
        for name in "ab"
    ]
    operator = Operator(hosts[0].url)
    clients: list[GridClient] = []
    outcomes: list[list[object]] = []
    try:
        await asyncio.gather(*(host.run() for host in hosts))
        for _ in range(ROUNDS):
            code = await operator.invite()
            group = [
                GridClient(hosts[n % 2].url, KeyPair.generate(), clock=clock.now, timeout=30)
                for n in range(JOINERS)
            ]
            clients += group
            outcomes.append(
                await asyncio.gather(
                    *(c.join(code, f"House {n}") for n, c in enumerate(group)),
                    return_exceptions=True,
                )
            )
    finally:
        for client in clients:
            await client.close()
        await operator.close()
        await asyncio.gather(*(host.stop() for host in hosts))
    for results in outcomes:
        refused = [r for r in results if isinstance(r, BaseException)]
        assert len(results) - len(refused) == 1, results
        assert all(
            isinstance(e, ProtocolError) and e.code is ErrorCode.INVITATION_USED for e in refused
        ), refused
    db = Database(postgres_url)
    try:
        async with db.read() as conn:
            members = await conn.scalar(select(func.count()).select_from(participants))
    finally:
        await db.dispose()
    assert members == ROUNDS
    assert await audit_verify(postgres_url) == 0
