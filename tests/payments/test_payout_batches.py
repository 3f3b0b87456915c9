"""Payouts in batches: every producer paid once, through crashes, refusals and recovery.

Local ledger: a batch is one database transaction (``LOCAL_BATCH_SIZE``
made small so a handful of producers make several batches). IOTA: a batch is
one programmable transaction on the stand-in node.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import func, select

from grid_server.service import payouts as payout_module
from grid_server.service.local_ledger import verify_ledger
from grid_server.service.payouts import PayoutWorker
from grid_server.storage import payout_queries
from grid_server.storage.schema import (
    ledger_entries,
    log_entries,
    participants,
    payout_batches,
    payouts,
)
from p2p_energy_client.grid_client import GridClient
from p2p_energy_client.ledger.base import Payment
from p2p_energy_client.ledger.iota import IotaLedger
from p2p_energy_client.ledger.local import SignedTransfer
from tests.payments.test_iota_flow import IOTA, household_ledger, iota_config, received_by
from tests.support.grid_server import RunningGrid, run_grid_server
from tests.support.iota_node import StandInIotaNode
from tests.support.market import grid_config, issue_statements, only_statement, trade_pairs

SELLERS = 5
FLOAT = 10_000_000


class Crash(Exception):
    """The process dies here (the test's stand-in for kill -9)."""


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(payout_module, "LOCAL_BATCH_SIZE", 2)


def crash_on(monkeypatch: pytest.MonkeyPatch, method: str, call: int = 1) -> None:
    """Make ``PayoutWorker.<method>`` crash on its ``call``-th call (earlier calls run)."""
    original = getattr(PayoutWorker, method)
    calls = 0

    async def maybe_crash(self: PayoutWorker, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == call:
            raise Crash
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(PayoutWorker, method, maybe_crash)


@asynccontextmanager
async def local_grid(database_url: str, **kwargs: Any) -> AsyncIterator[RunningGrid]:
    async with run_grid_server(
        database_url, grid=grid_config(payout_policy="float"), **kwargs
    ) as grid:
        yield grid


async def owed_producers(grid: RunningGrid) -> list[GridClient]:
    sellers, t = await trade_pairs(grid, SELLERS)
    await issue_statements(grid, t)
    for seller in sellers:
        assert (await only_statement(seller)).amount_due_micro < 0
    return sellers


async def entries_to(grid: RunningGrid) -> Counter[str]:
    """How many local-ledger entries paid each address."""
    async with grid.grid.db.read() as conn:
        rows = await conn.execute(
            select(ledger_entries.c.recipient, func.count())
            .where(ledger_entries.c.kind == "transfer")
            .group_by(ledger_entries.c.recipient)
        )
        return Counter({r[0]: int(r[1]) for r in rows})


async def states(grid: RunningGrid, table: Any) -> Counter[str]:
    async with grid.grid.db.read() as conn:
        rows = await conn.execute(select(table.c.state, func.count()).group_by(table.c.state))
        return Counter({r[0]: int(r[1]) for r in rows})


async def assert_paid_once(grid: RunningGrid, sellers: list[GridClient]) -> None:
    """Every seller's statement paid in full, by exactly one transfer; the ledger holds."""
    received = await entries_to(grid)
    for seller in sellers:
        statement = await only_statement(grid.client(seller.keys))
        assert (statement.status, statement.paid_micro) == ("paid", statement.amount_due_micro)
        assert received[seller.address] == 1
        assert [p.direction for p in statement.payments] == ["out"]
    async with grid.grid.db.read() as conn:
        report = await verify_ledger(grid.grid.payments.store, conn)
    assert report["ok"], report


async def test_local_batches_pay_every_producer_once(
    database_url: str, small_batches: None
) -> None:
    async with local_grid(database_url) as grid:
        sellers = await owed_producers(grid)
        payments = grid.grid.payments
        await payments.mint(payments.address, FLOAT)
        report = await grid.grid.payouts.run_once()
        assert sorted(p["recipient"] for p in report.paid) == sorted(s.address for s in sellers)
        assert not (await grid.grid.payouts.run_once()).paid
        await assert_paid_once(grid, sellers)
        async with grid.grid.db.read() as conn:
            sizes = (await conn.execute(select(payout_batches.c.size))).scalars().all()
            logged = await conn.scalar(
                select(func.count()).select_from(log_entries).where(log_entries.c.kind == "payout")
            )
        assert sorted(sizes) == [1, 2, 2]  # 5 producers, batches of 2
        assert await states(grid, payout_batches) == {"done": 3}
        assert logged == 2 * SELLERS  # each payout: its intent, then its completion


@pytest.mark.parametrize(
    ("method", "what"),
    [
        ("_send", "the second batch stored, not sent"),
        ("_paid_events", "the second batch applied and recorded, not committed"),
    ],
)
async def test_local_crash_in_the_middle_then_recovery(
    database_url: str,
    small_batches: None,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    what: str,
) -> None:
    async with local_grid(database_url) as grid:
        sellers = await owed_producers(grid)
        payments = grid.grid.payments
        await payments.mint(payments.address, FLOAT)
        crash_on(monkeypatch, method, call=2)
        with pytest.raises(Crash):
            await grid.grid.payouts.run_once()
        clock = grid.clock
        # The first batch is paid; the second is only an intent; the third was never made.
        assert await states(grid, payout_batches) == {"done": 1, "prepared": 1}
        assert sum((await entries_to(grid)).values()) == 2, what
    monkeypatch.undo()
    monkeypatch.setattr(payout_module, "LOCAL_BATCH_SIZE", 2)
    async with local_grid(database_url, clock=clock) as grid:
        report = await grid.grid.payouts.run_once()
        assert report.recovered == 2 and len(report.paid) == 3 and not report.failed
        assert not (await grid.grid.payouts.run_once()).paid
        await assert_paid_once(grid, sellers)
        assert await states(grid, payout_batches) == {"done": 3}


async def test_local_batch_refused_is_paid_again_exactly_once(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stored batch whose transfers can no longer apply fails whole; only its statements
    become payable again, and the same pass pays them with a new batch."""
    async with local_grid(database_url) as grid:
        sellers = await owed_producers(grid)
        payments = grid.grid.payments
        await payments.mint(payments.address, FLOAT)
        crash_on(monkeypatch, "_send")
        with pytest.raises(Crash):
            await grid.grid.payouts.run_once()
        # Meanwhile the grid's account moved on: its next ledger sequence number is used.
        stranger = (await grid.member("Stranger")).address
        async with grid.grid.db.write() as conn:
            _, seq = await payments.store.account(conn, payments.address)
            transfer = SignedTransfer.sign(
                payments.grid_keys,
                grid=grid.grid.grid_id,
                recipient=stranger,
                amount=1,
                seq=seq + 1,
            )
            await payments.store.apply_transfer(
                conn, transfer, signer=payments.grid_keys.public_key, now=grid.clock.now()
            )
        monkeypatch.undo()
        report = await grid.grid.payouts.run_once()
        assert len(report.failed) == SELLERS and len(report.paid) == SELLERS
        assert "seq" in report.failed[0]["error"]
        assert await states(grid, payout_batches) == {"failed": 1, "done": 1}
        assert await states(grid, payouts) == {"failed": SELLERS, "done": SELLERS}
        await assert_paid_once(grid, sellers)


# --- IOTA ---------------------------------------------------------------------------


@asynccontextmanager
async def iota_grid(
    database_url: str, node: StandInIotaNode, **kwargs: Any
) -> AsyncIterator[RunningGrid]:
    config = iota_config(node, payout_policy="float")
    async with run_grid_server(database_url, grid=config, **kwargs) as grid:
        yield grid


async def iota_producers(
    grid: RunningGrid, node: StandInIotaNode
) -> tuple[list[GridClient], dict[str, int]]:
    """Producers owed money, the grid funded on the node; address → nanos owed."""
    sellers, t = await trade_pairs(grid, 3)
    node.mint(grid.grid.payments.address, 20 * IOTA)
    await issue_statements(grid, t)
    owed = {}
    for seller in sellers:
        statement = await only_statement(seller)
        assert statement.ledger is not None
        owed[seller.address] = -statement.ledger.amount_due
    return sellers, owed


async def iota_statuses(grid: RunningGrid, addresses: list[str]) -> set[str]:
    async with grid.grid.db.read() as conn:
        rows = await conn.execute(
            select(payouts.c.recipient, payouts.c.state).where(payouts.c.recipient.in_(addresses))
        )
        return {r.state for r in rows}


async def test_iota_one_transaction_pays_every_producer(
    database_url: str, iota_node: StandInIotaNode
) -> None:
    async with iota_grid(database_url, iota_node) as grid:
        _, owed = await iota_producers(grid, iota_node)
        before = len(iota_node.transactions)
        report = await grid.grid.payouts.run_once()
        assert {p["recipient"]: p["amount"] for p in report.paid} == owed
        assert len({p["tx_id"] for p in report.paid}) == 1  # one transaction
        assert len(iota_node.transactions) == before + 1
        digest = report.paid[0]["tx_id"]
        found = await household_ledger(iota_node).lookup(digest)
        assert found is not None
        assert sorted(found.payments, key=lambda p: p.recipient) == sorted(
            (Payment(a, n) for a, n in owed.items()), key=lambda p: p.recipient
        )
        assert not (await grid.grid.payouts.run_once()).paid


async def test_iota_crash_after_send_before_record(
    database_url: str, iota_node: StandInIotaNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with iota_grid(database_url, iota_node) as grid:
        _, owed = await iota_producers(grid, iota_node)
        crash_on(monkeypatch, "_complete")
        with pytest.raises(Crash):
            await grid.grid.payouts.run_once()
        clock = grid.clock
    for address, nanos in owed.items():
        assert received_by(iota_node, address) == [nanos]  # sent
    monkeypatch.undo()
    async with iota_grid(database_url, iota_node, clock=clock) as grid:
        assert await iota_statuses(grid, list(owed)) == {"prepared"}
        report = await grid.grid.payouts.run_once()
        assert report.recovered == 3 and len(report.paid) == 3
        assert not (await grid.grid.payouts.run_once()).paid
        for address, nanos in owed.items():
            assert received_by(iota_node, address) == [nanos]  # exactly once
        assert await iota_statuses(grid, list(owed)) == {"done"}


async def test_iota_partial_failure_pays_the_failed_batch_again_once(
    database_url: str, iota_node: StandInIotaNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches of one pass stand alone: the first lands; the second, stored but not sent,
    can never land after its coin is spent elsewhere, fails, and is paid by a new batch."""
    monkeypatch.setattr(
        IotaLedger,
        "plan_batches",
        lambda self, payments: [tuple(payments[:1]), tuple(payments[1:])],
    )
    async with iota_grid(database_url, iota_node) as grid:
        sellers, owed = await iota_producers(grid, iota_node)
        crash_on(monkeypatch, "_send", call=2)
        with pytest.raises(Crash):
            await grid.grid.payouts.run_once()
        # The grid's coins are spent by another transaction meanwhile.
        payments = grid.grid.payments
        stranger = await grid.member("Stranger")
        await household_ledger(iota_node).transfer(payments.grid_keys, stranger.address, IOTA)
        report = await grid.grid.payouts.run_once()
        assert report.recovered == 2 and len(report.failed) == 2 and len(report.paid) == 2
        assert not (await grid.grid.payouts.run_once()).paid
        for seller in sellers:
            assert received_by(iota_node, seller.address) == [owed[seller.address]]
            assert (await only_statement(seller)).status == "paid"
        assert await states(grid, payout_batches) == {"done": 3, "failed": 1}


async def test_a_pass_reads_the_addresses_of_more_producers_than_a_query_may_name(
    database_url: str,
) -> None:
    """A regional pass pays tens of thousands of producers: their addresses are read in
    slices (one list of 50,000 ids broke asyncpg's 32,767 parameters at 100,000 households)."""
    async with local_grid(database_url) as grid:
        member = await grid.member("Producer")
        async with grid.grid.db.read() as conn:
            (pid,) = (await conn.execute(select(participants.c.id))).scalars().all()
            found = await payout_queries.addresses_of(conn, {pid, *range(10**6, 10**6 + 50_000)})
    assert found == {pid: member.address}
