"""Parallel transfers keep Σ balances == Σ minted; a payout interrupted by a crash lands once."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
from sqlalchemy import func, select

from grid_server.config import GridConfig
from grid_server.service.local_ledger import verify_ledger
from grid_server.service.payouts import PayoutWorker
from grid_server.storage.schema import ledger_entries, payouts
from p2p_energy_client.grid_client import GridClient
from p2p_energy_client.ledger.base import InsufficientFunds, LedgerError
from p2p_energy_client.ledger.local_client import LocalLedger
from tests.support.grid_server import RunningGrid, run_grid_server
from tests.support.market import (
    grid_config,
    issue_statements,
    local_balances,
    only_statement,
    trade,
)

HOUSEHOLDS = 6
TRANSFERS = 6
START = 1_000


@asynccontextmanager
async def workers(
    database_url: str, count: int, config: GridConfig | None = None
) -> AsyncIterator[list[RunningGrid]]:
    """``count`` grid servers on one database (several workers on PostgreSQL)."""
    config = config or grid_config()
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(run_grid_server(database_url, grid=config))
        grids = [first]
        for _ in range(count - 1):
            grids.append(
                await stack.enter_async_context(
                    run_grid_server(database_url, clock=first.clock, grid=config)
                )
            )
        yield grids


async def test_parallel_transfers_conserve_money(database_url: str) -> None:
    several = 2 if "postgresql" in database_url else 1
    async with workers(database_url, several) as grids:
        main = grids[0]
        payments = main.grid.payments
        households: list[GridClient] = []
        for n in range(HOUSEHOLDS):
            client = await main.member(f"H{n}")
            # Households talk to different workers.
            households.append(grids[n % several].client(client.keys, last_seq=client.last_seq))
        sent: dict[str, int] = dict.fromkeys((h.address for h in households), 0)
        received: dict[str, int] = dict.fromkeys((h.address for h in households), 0)
        minted: dict[str, int] = dict.fromkeys((h.address for h in households), 0)
        refused = 0
        rng = random.Random(7)

        async def mint(address: str, amount: int) -> None:
            await payments.mint(address, amount)
            minted[address] += amount

        async def spend(client: GridClient) -> None:
            nonlocal refused
            ledger = LocalLedger(client)
            for _ in range(TRANSFERS):
                other = rng.choice([h for h in households if h is not client])
                amount = rng.randint(START // 3, START)
                try:
                    await ledger.transfer(client.keys, other.address, amount)
                except InsufficientFunds:
                    refused += 1
                    continue
                except LedgerError:
                    refused += 1  # e.g. a mint landed between seq read and send: retry later
                    continue
                sent[client.address] += amount
                received[other.address] += amount

        await asyncio.gather(*(mint(h.address, START) for h in households))
        await asyncio.gather(
            *(spend(h) for h in households),
            *(mint(h.address, 100) for h in households),
        )
        balances = await local_balances(main)
        assert sum(balances.values()) == sum(minted.values()) == HOUSEHOLDS * (START + 100)
        assert min(balances.values()) >= 0
        for h in households:
            assert (
                balances.get(h.address, 0)
                == minted[h.address] + received[h.address] - sent[h.address]
            )
        assert refused > 0  # the balances did run out: the refusals were exercised
        async with main.grid.db.read() as conn:
            report = await verify_ledger(main.grid.payments.store, conn)
            entries = await conn.scalar(select(func.count()).select_from(ledger_entries))
        assert report["ok"], report
        transfers = HOUSEHOLDS * TRANSFERS - refused
        assert entries == 2 * HOUSEHOLDS + transfers


async def test_crash_between_payout_intent_and_record_local(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Crash(Exception):
        pass

    async def crash(self: PayoutWorker, *args: object) -> None:
        raise Crash

    config = grid_config(payout_policy="float")
    async with run_grid_server(database_url, grid=config) as grid:
        payments = grid.grid.payments
        seller, _, t = await trade(grid)
        await issue_statements(grid, t)
        await payments.mint(payments.address, 1_000_000)
        monkeypatch.setattr(PayoutWorker, "_send", crash)
        with pytest.raises(Crash):
            await grid.grid.payouts.run_once()
        clock = grid.clock
        address = payments.address
    monkeypatch.undo()
    async with run_grid_server(database_url, clock=clock, grid=config) as grid:
        payments = grid.grid.payments
        assert (await only_statement(grid.client(seller.keys))).status == "issued"
        report = await grid.grid.payouts.run_once()
        assert report.recovered == 1 and len(report.paid) == 1
        assert not (await grid.grid.payouts.run_once()).paid
        statement = await only_statement(grid.client(seller.keys))
        assert (statement.status, statement.paid_micro) == ("paid", statement.amount_due_micro)
        balances = await local_balances(grid)
        assert balances[seller.address] == -statement.amount_due_micro
        assert balances[address] == 1_000_000 + statement.amount_due_micro
        async with grid.grid.db.read() as conn:
            to_seller = await conn.scalar(
                select(func.count())
                .select_from(ledger_entries)
                .where(ledger_entries.c.recipient == seller.address)
            )
            states = (await conn.execute(select(payouts.c.state))).scalars().all()
        assert to_seller == 1 and states == ["done"]


async def test_one_worker_pays_out(database_url: str) -> None:
    several = 2 if "postgresql" in database_url else 1
    async with workers(database_url, several, grid_config(payout_policy="float")) as grids:
        first = grids[0]
        seller, _, t = await trade(first)
        await issue_statements(first, t)
        await first.grid.payments.mint(first.grid.payments.address, 1_000_000)
        reports = await asyncio.gather(
            *(g.grid.payouts.run_once() for g in grids for _ in range(2))
        )
        assert sum(len(r.paid) for r in reports) == 1
        async with first.grid.db.read() as conn:
            count = await conn.scalar(
                select(func.count())
                .select_from(ledger_entries)
                .where(ledger_entries.c.recipient == seller.address)
            )
        assert count == 1
