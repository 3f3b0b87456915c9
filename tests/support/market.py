"""A small market whose settlement gives one consumer and one producer statement."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from grid_server.config import GridConfig, LedgerConfig
from grid_server.storage.schema import ledger_accounts
from p2p_energy_client.grid_client import GridClient
from p2p_energy_client.models import Statement
from p2p_energy_client.protocol import OrderSpec, Reading, Side
from tests.support.factories import MAIN, PV
from tests.support.grid_server import RunningGrid


def grid_config(**ledger: Any) -> GridConfig:
    ledger.setdefault("payout_threshold_micro", 1_000)
    return GridConfig(
        id="test-grid",
        settlement_window_seconds=600,
        settlement_period_seconds=3600,
        ledger=LedgerConfig(**ledger),
    )


@dataclass
class Market:
    seller: GridClient
    buyer: GridClient
    interval: datetime


async def trade(
    grid: RunningGrid, *, buyers: int = 1
) -> tuple[GridClient, list[GridClient], datetime]:
    """A seller and ``buyers`` buyers trade in one interval; readings are sent."""
    seller = await grid.member("Seller")
    await seller.set_assets([PV], [])
    clients = []
    for n in range(buyers):
        buyer = await grid.member(f"Buyer {n}")
        await buyer.set_assets([], [MAIN])
        clients.append(buyer)
    t = grid.grid.schedule.start_of(grid.clock.now()) + timedelta(minutes=30)
    await seller.submit_orders(t, [OrderSpec("s", Side.SELL, 800, "0.1000")])
    for buyer in clients:
        await buyer.submit_orders(t, [OrderSpec("b", Side.BUY, 300, "0.2500")])
    grid.clock.set(t + timedelta(minutes=15, seconds=1))
    await grid.run_cycle()
    await seller.send_readings([Reading(t, "pv", 700)])
    for buyer in clients:
        await buyer.send_readings([Reading(t, "main", 400)])
    return seller, clients, t


async def trade_pairs(grid: RunningGrid, pairs: int) -> tuple[list[GridClient], datetime]:
    """``pairs`` sellers each sell 300 Wh to their own buyer in one interval; the sellers.

    Every seller makes more than it sold, so each is owed money (a producer
    statement); readings are sent.
    """
    sellers, buyers = [], []
    for n in range(pairs):
        seller = await grid.member(f"Seller {n}")
        await seller.set_assets([PV], [])
        buyer = await grid.member(f"Buyer {n}")
        await buyer.set_assets([], [MAIN])
        sellers.append(seller)
        buyers.append(buyer)
    t = grid.grid.schedule.start_of(grid.clock.now()) + timedelta(minutes=30)
    for seller, buyer in zip(sellers, buyers, strict=True):
        await seller.submit_orders(t, [OrderSpec("s", Side.SELL, 300, "0.1000")])
        await buyer.submit_orders(t, [OrderSpec("b", Side.BUY, 300, "0.2500")])
    grid.clock.set(t + timedelta(minutes=15, seconds=1))
    await grid.run_cycle()
    for seller, buyer in zip(sellers, buyers, strict=True):
        await seller.send_readings([Reading(t, "pv", 700)])
        await buyer.send_readings([Reading(t, "main", 400)])
    return sellers, t


async def issue_statements(grid: RunningGrid, t: datetime) -> None:
    schedule = grid.grid.schedule
    period_end = schedule.period_end(schedule.period_start(t))
    grid.clock.set(period_end + timedelta(minutes=11))
    await grid.run_cycle()
    await grid.run_cycle()


async def only_statement(client: GridClient) -> Statement:
    (statement,) = await client.statements()
    return await client.statement(statement.id)


async def local_balances(grid: RunningGrid) -> dict[str, int]:
    async with grid.grid.db.read() as conn:
        rows = await conn.execute(select(ledger_accounts.c.address, ledger_accounts.c.balance))
        return {r.address: int(r.balance) for r in rows}
