"""Interval roots on a running grid, receipts over HTTP, the public roots list."""

from __future__ import annotations

import base64
import itertools
import json
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from grid_server.storage.schema import audit_roots, log_entries
from p2p_energy_client.grid_client import GridClient
from p2p_energy_client.protocol import (
    ErrorCode,
    OrderSpec,
    ProtocolError,
    Reading,
    Side,
)
from p2p_energy_client.receipt_keeper import ReceiptKeeper
from p2p_energy_client.receipts import ReceiptPending, verify_receipt
from tests.support.factories import MAIN, PV
from tests.support.grid_server import RunningGrid


async def household(grid: RunningGrid, name: str) -> GridClient:
    client = await grid.member(name)
    await client.set_assets([PV], [MAIN])
    return client


async def test_a_household_verifies_its_readings_receipt_offline(grid: RunningGrid) -> None:
    alice = await household(grid, "Alice")
    bob = await household(grid, "Bob")
    t = grid.grid.schedule.start_of(grid.clock.now())
    grid.clock.advance(minutes=15)
    await alice.send_readings([Reading(t, "pv", 900), Reading(t, "main", 300)])
    await bob.send_readings([Reading(t, "pv", 10)])
    sent = alice.recent_envelopes[-1]
    assert sent.type == "readings"

    # Logged, but the interval is still open: pending.
    receipt = await alice.receipt(seq=sent.seq)
    assert receipt.state == "pending"
    with pytest.raises(ReceiptPending):
        verify_receipt(receipt, sent.wire)

    grid.clock.advance(minutes=15)
    await grid.run_cycle()
    receipt = await alice.receipt(seq=sent.seq)
    assert receipt.state == "rooted"
    verified = verify_receipt(receipt, sent.wire)
    assert verified.ref == f"{alice.address}/{sent.seq}"
    # The same receipt by log seq and by signature.
    by_log = await alice.receipt(log_seq=verified.seq)
    signature = base64.b64decode(json.loads(sent.wire)["signature"])
    by_signature = await alice.receipt(signature=signature)
    assert by_log == receipt == by_signature
    # The root is in the public list, which anyone can read.
    roots = await grid.client().audit_roots(since=t - timedelta(hours=1))
    public = next(r for r in roots if r.seq == verified.root_seq)
    assert verify_receipt(receipt, sent.wire, trusted_root=public).root == public.root
    assert public.computed_entry_hash() == public.entry_hash
    # The convenience on the client does the same.
    assert (await alice.verify_sent(sent)).seq == verified.seq


async def test_receipts_are_private_and_roots_cover_the_log(grid: RunningGrid) -> None:
    alice = await household(grid, "Alice")
    bob = await household(grid, "Bob")
    t = grid.grid.schedule.start_of(grid.clock.now())
    await bob.submit_orders(
        t + timedelta(minutes=30), place=[OrderSpec("b1", Side.BUY, 500, "0.2500")]
    )
    bob_sent = bob.recent_envelopes[-1]
    grid.clock.advance(minutes=15)
    await grid.run_cycle()
    log_seq = (await bob.receipt(seq=bob_sent.seq)).entry.seq
    with pytest.raises(ProtocolError) as err:
        await alice.receipt(log_seq=log_seq)
    assert err.value.code is ErrorCode.FORBIDDEN
    with pytest.raises(ProtocolError) as err:
        await alice.receipt(seq=bob_sent.seq + 1000)
    assert err.value.code is ErrorCode.NOT_FOUND
    # Roots cover every entry exactly once, in order, without gaps.
    grid.clock.advance(minutes=45)
    await grid.run_cycle()
    async with grid.grid.db.read() as conn:
        roots = (await conn.execute(select(audit_roots).order_by(audit_roots.c.seq))).all()
        head = await conn.scalar(select(text("max(seq)")).select_from(log_entries))
    assert roots[0].first_seq == 1
    for before, after in itertools.pairwise(roots):
        assert after.first_seq == before.last_seq + 1
        assert before.last_seq < before.seq <= after.last_seq
    assert roots[-1].seq == head
    # Public entries (market results, roots) have receipts for any member.
    market = await alice.receipt(log_seq=int(roots[0].seq))
    assert market.entry.kind == "root"


async def test_the_receipt_keeper_follows_what_the_client_sent(grid: RunningGrid) -> None:
    alice = await household(grid, "Alice")
    t = grid.grid.schedule.start_of(grid.clock.now())
    grid.clock.advance(minutes=15)
    await alice.send_readings([Reading(t, "pv", 900)])
    await alice.submit_orders(
        t + timedelta(minutes=45), place=[OrderSpec("s1", Side.SELL, 500, "0.1500")]
    )
    keeper = ReceiptKeeper()
    assert await keeper.check(alice) == []  # both pending
    assert len(keeper.pending) == 2
    grid.clock.advance(minutes=15)
    await grid.run_cycle()
    done = await keeper.check(alice)
    assert [v.envelope_type for v in done] == ["readings", "orders"]
    assert keeper.pending == {} and keeper.failures == {}
    assert keeper.last_verified == done[-1]
    # A restarted household (new client, stored state) keeps going.
    again = ReceiptKeeper.from_state(keeper.to_state())
    assert again.last_verified == done[-1]
    assert again.roots_seen == keeper.roots_seen
