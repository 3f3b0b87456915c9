"""kill -9 a server while it ingests, clears, settles and pays out; nothing is lost or doubled.

Real ``p2p-grid serve`` processes: on PostgreSQL two workers behind one
port (``--workers 2``; uvicorn starts a new worker for a killed one), on
SQLite one process that the test starts again. Test-only fault points
(``P2P_TEST_FAULTS``, :mod:`grid_server.service.faults`) make the process
halt inside the transaction of each step, so the kill lands exactly there:

* ``ingest.commit``: a writer batch of readings applied, not committed, while
  a dozen households have envelopes in flight;
* ``cycle.clear`` / ``cycle.settle``: an interval's market result or
  settlement written, not committed;
* ``payout.send``: a producer's payout applied on the local ledger and
  recorded, not committed (the grid pays from its float; a payout interrupted
  between storing its intent and sending it is tested in-process in
  ``tests/payments/test_concurrency.py``).

The households keep their live streams open through the kills; each resumes
after its last event. Afterwards every acknowledged reading is stored with its value, every
interval is cleared and settled once, each producer is paid exactly once on
the ledger, and ``p2p-grid audit verify`` passes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_socket

from grid_server.storage.db import Database
from p2p_energy_client.units import format_utc
from tests.support.processes import (
    GridProcess,
    Operator,
    SharedClock,
    audit_verify,
    fault_pid,
    grid_toml,
    kill,
    wait_gone,
)
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

pytestmark = [pytest.mark.usefixtures("socket_enabled"), pytest.mark.slow]

SELLERS = 6
BUYERS = 6


@pytest.fixture(autouse=True)
def _loopback_only(socket_enabled: None) -> None:
    pytest_socket.socket_allow_hosts(["127.0.0.1"])


async def test_kill_9_while_ingesting_clearing_settling_paying(
    database_url: str, tmp_path: Path
) -> None:
    postgres = database_url.startswith("postgresql")
    clock = SharedClock(tmp_path / "clock", START)
    faults = tmp_path / "faults"
    faults.mkdir()
    points = [
        "ingest.commit=readings@3",
        f"cycle.clear={format_utc(T0 + 2 * Q)}",
        f"cycle.settle={format_utc(T0 + 2 * Q)}",
        "payout.send",
    ]
    server = GridProcess(
        "grid",
        database_url,
        tmp_path,
        config=grid_toml(tmp_path / "grid.toml"),
        clock=clock,
        workers=2 if postgres else 1,
        env={"P2P_TEST_FAULTS": ",".join(points), "P2P_TEST_FAULT_DIR": str(faults)},
    )
    db = Database(database_url)
    operator = Operator(server.url)
    homes: list[Home] = []
    streams: Streams | None = None
    try:
        await server.run()

        async def crash(point: str) -> None:
            """kill -9 the process halted at ``point``; start it again (SQLite)."""
            pid = await fault_pid(faults, point)
            kill(pid)
            await wait_gone(pid)
            if not postgres:  # --workers: uvicorn replaces the worker by itself
                server.proc.wait()  # type: ignore[union-attr]
                await server.run()

        homes = await join(operator, [server.url], clock, SELLERS, BUYERS)
        # Streams stay open across the kills: each resumes from its last event.
        streams = Streams(homes)
        await operator.mint(await operator.grid_address(), 10**9)
        await drive(homes, clock, db, crash=crash)
        await streams.check_complete(db)
    finally:
        if streams is not None:
            await streams.stop()
        await close(homes)
        await operator.close()
        await server.stop()
    try:
        await check_history(db, homes, [T0 + n * Q for n in range(4)], T0)
    finally:
        await db.dispose()
    assert await audit_verify(database_url) == 0
