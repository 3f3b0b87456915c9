"""Roots anchored on IOTA through IOTA Notarization, against the stand-in node."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from grid_server.config import AuditConfig, GridConfig, LedgerConfig
from grid_server.service.audit_verify import verify_log
from grid_server.storage.schema import audit_anchor_attempts, audit_anchors
from p2p_energy_client.grid_client import GridClient
from p2p_energy_client.ledger.iota import IotaRpcClient
from p2p_energy_client.ledger.iota.notarization import read_anchored_payload, read_state
from p2p_energy_client.protocol import Reading, canonical_json
from p2p_energy_client.receipts import verify_receipt
from tests.support.audit_scenario import Surgeon
from tests.support.factories import MAIN, PV
from tests.support.grid_server import RunningGrid, run_grid_server
from tests.support.iota_node import Fault, StandInIotaNode
from tests.support.iota_notarization import TEST_PACKAGE

IOTA = 10**9
FAST: dict[str, Any] = {
    "request_timeout": 2.0,
    "execute_timeout": 0.3,
    "submit_deadline": 1.0,
    "checkpoint_timeout": 1.0,
    "poll_interval": 0.01,
}


@asynccontextmanager
async def iota_grid(
    url: str, node: StandInIotaNode, *, every: int = 1
) -> AsyncIterator[RunningGrid]:
    config = GridConfig(
        id="test-grid",
        settlement_window_seconds=900,
        settlement_period_seconds=3600,
        ledger=LedgerConfig(kind="iota", iota_price="0.25", iota={"url": node.url, **FAST}),
        audit=AuditConfig(anchor_every=every, notarization_package=TEST_PACKAGE),
    )
    async with run_grid_server(url, grid=config) as grid:
        node.mint(grid.grid.payments.address, 5 * IOTA)
        yield grid


async def interval(grid: RunningGrid, clients: list[GridClient], wh: int = 500) -> None:
    t = grid.grid.schedule.start_of(grid.clock.now())
    grid.clock.advance(minutes=15)
    for client in clients:
        await client.send_readings([Reading(t, "pv", wh), Reading(t, "main", 100)])
    await grid.run_cycle()
    await grid.grid.anchoring.run_once()


async def test_roots_are_anchored_and_receipts_verify_against_the_chain(
    database_url: str, iota_node: StandInIotaNode
) -> None:
    async with iota_grid(database_url, iota_node) as grid:
        alice = await grid.member("Alice")
        await alice.set_assets([PV], [MAIN])
        await interval(grid, [alice])
        await interval(grid, [alice], 600)
        await interval(grid, [alice], 700)
        async with grid.grid.db.read() as conn:
            anchors = (
                await conn.execute(select(audit_anchors).order_by(audit_anchors.c.last_root_seq))
            ).all()
        assert [a.state_version for a in anchors] == list(range(len(anchors)))
        assert len(anchors) >= 3
        assert len({a.object_id for a in anchors}) == 1
        async with IotaRpcClient(iota_node.url) as rpc:
            state = await read_state(rpc, anchors[0].object_id)
            assert state.owner == grid.grid.payments.address
            assert state.data == bytes(anchors[-1].payload)
            assert state.state_version == anchors[-1].state_version
            # A household checks its reading's receipt against the chain itself.
            sent = next(e for e in reversed(alice.recent_envelopes) if e.type == "readings")
            receipt = await alice.receipt(seq=sent.seq)
            anchor = receipt.anchor
            assert anchor is not None and anchor.package == TEST_PACKAGE
            on_chain = await read_anchored_payload(
                rpc, anchor.digest, anchor.object_id, anchor.object_version
            )
            verified = verify_receipt(receipt, sent.wire, anchored_payload=on_chain)
            assert verified.anchored and verified.anchor_checked
        # The public roots list shows the anchors too.
        roots = await alice.audit_roots(from_seq=1)
        assert all(r.anchor is not None for r in roots)
    report = await verify_log(database_url, workers=0, node=iota_node.url, anchors="all")
    assert report.ok, report.problem
    assert report.anchors_checked_on_chain == report.anchors >= 3


async def test_batches_crash_recovery_and_a_rewrite_the_chain_exposes(
    database_url: str, iota_node: StandInIotaNode, tmp_path: Any
) -> None:
    async with iota_grid(database_url, iota_node, every=2) as grid:
        alice = await grid.member("Alice")
        await alice.set_assets([PV], [MAIN])
        await interval(grid, [alice])
        async with grid.grid.db.read() as conn:
            assert (await conn.execute(select(audit_anchors))).all() == []  # one root waits
        await interval(grid, [alice], 600)
        async with grid.grid.db.read() as conn:
            (first,) = (await conn.execute(select(audit_anchors))).all()
        assert first.last_root_seq > first.first_root_seq  # two roots in one batch
        # The node fails after the transaction was stored: the next pass submits the same bytes.
        await interval(grid, [alice], 700)
        iota_node.inject("iota_executeTransactionBlock", Fault.UNAVAILABLE, times=50)
        iota_node.inject("iota_getTransactionBlock", Fault.UNAVAILABLE, times=50)
        t = grid.grid.schedule.start_of(grid.clock.now())
        grid.clock.advance(minutes=15)
        await alice.send_readings([Reading(t, "pv", 1), Reading(t, "main", 1)])
        await grid.run_cycle()
        runner = grid.grid.anchoring
        with pytest.raises(Exception):
            await runner.run_once()
        iota_node._faults.clear()
        async with grid.grid.db.read() as conn:
            attempts = (await conn.execute(select(audit_anchor_attempts))).all()
        stored = attempts[-1]
        await runner.run_once()  # (or the cycle's background pass) submits the same bytes
        if runner._task is not None:
            await runner._task
        async with grid.grid.db.read() as conn:
            digests = (await conn.execute(select(audit_anchors.c.digest))).scalars().all()
        assert stored.digest in digests
        assert iota_node.submitted_digests.count(stored.digest) >= 2
        assert sum(1 for d in iota_node.transactions if d == stored.digest) == 1
    url = database_url
    assert (await verify_log(url, workers=0, node=iota_node.url, anchors="all")).ok

    # Someone with the database rewrites an operator decision and every hash after it.
    surgeon = Surgeon(url)
    try:
        (entry,) = await surgeon.rows(
            "SELECT seq, body FROM log_entries WHERE kind = 'operator' ORDER BY seq LIMIT 1"
        )
        record = json.loads(bytes(entry.body))
        record["fee"] = "0.0500"
        record["fee_ticks"] = 50_000
        await surgeon.drop_triggers()
        await surgeon.run(
            "UPDATE log_entries SET body = :b WHERE seq = :s", b=canonical_json(record), s=entry.seq
        )
        await surgeon.run("UPDATE zones SET fee = '0.0500', fee_ticks = 50000")
        await surgeon.rewrite_chain(entry.seq)
    finally:
        await surgeon.close()
    local = await verify_log(url, workers=0)
    assert local.ok, local.problem  # the database alone is consistent again
    online = await verify_log(url, workers=0, node=iota_node.url)
    assert not online.ok  # but IOTA holds the original anchor
    assert "the notarized bytes on chain differ from the log's anchor" in str(online.problem)


async def test_the_local_ledger_publishes_roots_without_anchoring(grid: RunningGrid) -> None:
    alice = await grid.member("Alice")
    await alice.set_assets([PV], [MAIN])
    t = grid.grid.schedule.start_of(grid.clock.now())
    grid.clock.advance(minutes=15)
    await alice.send_readings([Reading(t, "pv", 5)])
    grid.clock.advance(minutes=15)
    await grid.run_cycle()
    assert await grid.grid.anchoring.run_once() is None
    roots = await alice.audit_roots(since=t - timedelta(hours=1))
    assert roots and all(r.anchor is None for r in roots)
