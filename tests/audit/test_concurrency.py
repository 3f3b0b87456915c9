"""One chain under concurrent appends: two workers on one PostgreSQL ingest and close roots."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest

from grid_server.config import GridConfig
from grid_server.domain.clock import ManualClock
from grid_server.service.audit_verify import verify_log
from grid_server.service.wiring import build_grid
from p2p_energy_client.crypto import KeyPair
from p2p_energy_client.protocol import (
    Assets,
    Join,
    MeterDecl,
    Reading,
    Readings,
    open_envelope,
    sign,
)
from tests.support.grid_server import DEFAULT_START
from tests.support.grid_server import test_settings as settings_for

pytestmark = pytest.mark.postgres


async def test_two_workers_append_to_one_chain(database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("several workers share PostgreSQL only")
    clock = ManualClock(DEFAULT_START)
    config = GridConfig(id="test-grid", settlement_window_seconds=900)
    workers = [build_grid(settings_for(database_url, grid=config), clock) for _ in range(2)]
    for worker in workers:
        await worker.open()
        worker.writer.start()
    try:
        keys = [KeyPair.generate() for _ in range(40)]
        codes = await workers[0].operator.create_invitations(len(keys))
        seqs = dict.fromkeys(range(len(keys)), 0)

        async def send(i: int, body: object) -> None:
            seqs[i] += 1
            wire = sign(keys[i], "test-grid", seqs[i], body, ts=clock.now())  # type: ignore[arg-type]
            raw = json.dumps(wire, separators=(",", ":")).encode()
            outcome = await workers[i % 2].writer.submit(raw, open_envelope(wire))
            assert outcome.status == 200, outcome.body

        await asyncio.gather(*(send(i, Join(codes[i].code, f"H{i}")) for i in range(len(keys))))
        meters = Assets((), (MeterDecl("main", "Main", 8_000),))
        await asyncio.gather(*(send(i, meters) for i in range(len(keys))))
        for _ in range(4):
            t = workers[0].schedule.start_of(clock.now())
            clock.advance(minutes=15)
            # Readings through both workers while both run the cycle and close roots.
            await asyncio.gather(
                *(send(i, Readings((Reading(t, "main", 100 + i),))) for i in range(len(keys))),
                workers[0].cycle.run_due(),
                workers[1].cycle.run_due(),
                workers[0].audit.close_due(),
                workers[1].audit.close_due(),
                workers[1].operator.set_price(t + timedelta(hours=2), "0.3000", "0.0800"),
            )
        clock.advance(minutes=30)
        await asyncio.gather(workers[0].cycle.run_due(), workers[1].cycle.run_due())
    finally:
        for worker in workers:
            await worker.writer.drain()
            await worker.db.dispose()
    report = await verify_log(database_url, workers=0)
    assert report.ok, report.problem
    assert report.roots >= 4 and report.envelopes == 40 * 6
