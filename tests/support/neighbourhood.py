"""A small neighbourhood on a real grid server for the dashboard tests.

Three zones (a substation and two feeders with fees and capacities), five
households trading over two intervals, metered, cleared, settled, with
statements issued, one consumer's statement paid on the local ledger and a
producer paid out. :func:`trade_interval` adds another cleared interval (for
the live-update test).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx

from grid_server.config import GridConfig, LedgerConfig, PriceConfig, ZoneConfig
from p2p_energy_client.grid_client import GridClient
from p2p_energy_client.models import Statement
from p2p_energy_client.payments import LocalPayer
from p2p_energy_client.protocol import MeterDecl, OrderSpec, Reading, Side, SourceDecl, SourceKind
from tests.support.grid_server import OPERATOR_TOKEN, RunningGrid

AUTH = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
WALLET = 20_000_000  # 20 EUR for every household
FLOAT = 5_000_000  # the grid's float for payouts


def grid_config() -> GridConfig:
    return GridConfig(
        id="dash-grid",
        name="Linden Street",
        settlement_window_seconds=600,
        settlement_period_seconds=3600,
        prices=(PriceConfig(retail="0.3000", feed_in="0.0800"),),
        zones=(
            ZoneConfig(id="root", name="Substation"),
            ZoneConfig(
                id="north",
                name="North feeder",
                parent="root",
                fee="0.0100",
                capacity_up_wh=800,
                capacity_down_wh=800,
            ),
            ZoneConfig(
                id="south",
                name="South feeder",
                parent="root",
                fee="0.0100",
                capacity_up_wh=2000,
                capacity_down_wh=2000,
            ),
        ),
        default_zone="root",
        ledger=LedgerConfig(payout_policy="float", payout_threshold_micro=1_000),
    )


@dataclass
class Neighbourhood:
    grid: RunningGrid
    members: dict[str, GridClient] = field(default_factory=dict)
    intervals: list[datetime] = field(default_factory=list)
    paid: list[str] = field(default_factory=list)  # transaction ids of statement payments

    def __getitem__(self, name: str) -> GridClient:
        return self.members[name]


# name: (zone, role, sources, meters)
HOUSEHOLDS: dict[str, tuple[str, str, list[SourceDecl], list[MeterDecl]]] = {
    "Ada": ("north", "producer", [SourceDecl("pv", "Roof", SourceKind.SOLAR, 4_000)], []),
    "Bo": (
        "north",
        "prosumer",
        [SourceDecl("pv", "Roof", SourceKind.SOLAR, 3_000)],
        [MeterDecl("main", "Main meter", 8_000)],
    ),
    "Cy": ("south", "consumer", [], [MeterDecl("main", "Main meter", 8_000)]),
    "Di": ("south", "consumer", [], [MeterDecl("main", "Main meter", 8_000)]),
    "Ed": ("root", "consumer", [], [MeterDecl("main", "Main meter", 8_000)]),
}

# Orders per interval: name -> [(side, Wh, limit price)]
BOOKS: list[dict[str, list[tuple[Side, int, str]]]] = [
    {
        "Ada": [(Side.SELL, 600, "0.1000"), (Side.SELL, 300, "0.1400")],
        "Bo": [(Side.SELL, 400, "0.1200")],
        "Cy": [(Side.BUY, 600, "0.2500")],
        "Di": [(Side.BUY, 500, "0.2200"), (Side.BUY, 200, "0.3200")],
        "Ed": [(Side.BUY, 300, "0.2800")],
    },
    {
        "Ada": [(Side.SELL, 800, "0.0900")],
        "Bo": [(Side.SELL, 200, "0.1100"), (Side.BUY, 100, "0.2000")],
        "Cy": [(Side.BUY, 400, "0.2600")],
        "Di": [(Side.BUY, 300, "0.2400")],
        "Ed": [(Side.BUY, 700, "0.2900")],
    },
    {
        "Ada": [(Side.SELL, 700, "0.0850")],
        "Bo": [(Side.SELL, 500, "0.1000")],
        "Cy": [(Side.BUY, 900, "0.2700")],
        "Di": [(Side.BUY, 200, "0.2500")],
        "Ed": [(Side.BUY, 400, "0.2900")],
    },
]

# Metered per interval: name -> {asset: Wh} (close to, not exactly, what was traded)
METERS: dict[str, dict[str, int]] = {
    "Ada": {"pv": 850},
    "Bo": {"pv": 380, "main": 120},
    "Cy": {"main": 640},
    "Di": {"main": 520},
    "Ed": {"main": 330},
}


async def operator(grid: RunningGrid, method: str, path: str, body: object = None) -> object:
    async with httpx.AsyncClient(base_url=grid.url, timeout=10, headers=AUTH) as http:
        response = await http.request(method, f"/api/v1/operator{path}", json=body)
    assert response.status_code < 300, response.text
    return response.json()


async def join_all(grid: RunningGrid) -> Neighbourhood:
    hood = Neighbourhood(grid)
    for name, (zone, role, sources, meters) in HOUSEHOLDS.items():
        client = await grid.member(name, zone=zone, role=role)
        await client.set_assets(sources, meters)
        hood.members[name] = client
    return hood


async def trade_interval(hood: Neighbourhood, book: int, *, meter: bool = True) -> datetime:
    """Orders for the next interval that takes them, cleared; then its readings."""
    grid = hood.grid
    schedule = grid.grid.schedule
    now = grid.clock.now()
    t = schedule.last_gate_closed(now) + schedule.length
    for name, orders in BOOKS[book].items():
        specs = [OrderSpec(f"o{i}", side, wh, limit) for i, (side, wh, limit) in enumerate(orders)]
        await hood[name].submit_orders(t, specs)
    grid.clock.set(t + timedelta(minutes=15, seconds=1))
    await grid.run_cycle()
    if meter:
        for name, assets in METERS.items():
            await hood[name].send_readings([Reading(t, a, wh) for a, wh in assets.items()])
    hood.intervals.append(t)
    return t


async def populate(grid: RunningGrid) -> Neighbourhood:
    """Two traded, settled intervals; statements issued; one paid; a producer paid out."""
    hood = await join_all(grid)
    wallets = [(c.address, WALLET) for c in hood.members.values()]
    async with httpx.AsyncClient(base_url=grid.url, timeout=10, headers=AUTH) as http:
        for address, amount in [*wallets, (grid.grid.payments.address, FLOAT)]:
            minted = await http.post(
                "/api/v1/operator/ledger/mint", json={"address": address, "amount": amount}
            )
            assert minted.status_code == 201, minted.text
    await trade_interval(hood, 0)
    await trade_interval(hood, 1)
    # Past the settlement window and the period's end: settle, then issue statements.
    schedule = grid.grid.schedule
    period_end = schedule.period_end(schedule.period_start(hood.intervals[-1]))
    grid.clock.set(period_end + timedelta(minutes=11))
    await grid.run_cycle()
    await grid.run_cycle()
    bill = await only_statement(hood["Cy"])
    hood.paid.append(await LocalPayer(hood["Cy"]).pay(bill))
    await grid.grid.payouts.run_once()
    return hood


async def only_statement(client: GridClient) -> Statement:
    (statement,) = await client.statements()
    return await client.statement(statement.id)
