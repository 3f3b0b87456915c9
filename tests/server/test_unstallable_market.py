"""One bad order never stops the market; a cycle that falls behind shows; operator prices bounded.

Ingest refuses what the engine cannot clear (tests/engine/test_bounds.py), so a
bad order here is one stored as an older version with looser bounds did: placed
through the API, then its price set beyond the range in the database.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import aiohttp
import httpx
import pytest
from sqlalchemy import select, update

from grid_server.storage import cycle_queries as cq
from grid_server.storage.schema import log_entries, orders
from p2p_energy_client.grid_client import GridClient
from p2p_energy_client.models import Event
from p2p_energy_client.protocol import OrderSpec, Side
from p2p_energy_client.units import MAX_PRICE_TICKS, format_price
from tests.support.factories import MAIN, PV
from tests.support.grid_server import RunningGrid
from tests.support.neighbourhood import AUTH


async def _market_with_a_bad_order(grid: RunningGrid) -> tuple[GridClient, GridClient, datetime]:
    """Seller and Buyer trade 500 Wh in ``t``; Mallory's order in it is beyond the engine."""
    seller = await grid.member("Seller")
    buyer = await grid.member("Buyer")
    mallory = await grid.member("Mallory")
    await seller.set_assets([PV], [])
    await buyer.set_assets([], [MAIN])
    await mallory.set_assets([], [MAIN])
    t = grid.grid.schedule.start_of(grid.clock.now()) + timedelta(minutes=30)
    await seller.submit_orders(t, [OrderSpec("s", Side.SELL, 800, "0.1000")])
    await buyer.submit_orders(t, [OrderSpec("b", Side.BUY, 500, "0.2500")])
    await mallory.submit_orders(t, [OrderSpec("m", Side.BUY, 300, "0.2000")])
    async with grid.grid.db.write() as conn:
        await conn.execute(
            update(orders)
            .where(orders.c.order_id == "m")
            .values(price_ticks=MAX_PRICE_TICKS + 1, price="1000000.000001")
        )
    return buyer, mallory, t


async def _operator_events(grid: RunningGrid, kind: str) -> list[dict[str, object]]:
    """The ``kind`` events on the operator's live stream, read until it has nothing more."""
    url = grid.url.replace("http", "ws", 1) + "/api/v1/operator/stream"
    found: list[dict[str, object]] = []
    async with aiohttp.ClientSession() as http, http.ws_connect(url, headers=AUTH) as ws:
        while True:
            try:
                message = await ws.receive(timeout=1.0)
            except TimeoutError:
                return found
            event = json.loads(message.data)
            if event["kind"] == kind:
                found.append(event["data"])


async def test_a_bad_order_is_quarantined_and_the_interval_clears(grid: RunningGrid) -> None:
    buyer, mallory, t = await _market_with_a_bad_order(grid)
    grid.clock.set(t - timedelta(minutes=5))
    await grid.run_cycle()

    result = await buyer.market(t)
    assert result.state == "cleared"
    assert [(f.order_id, f.filled_wh) for f in result.fills] == [("b", 500)]
    (zone,) = result.zones
    assert (zone.bought_wh, zone.sold_wh) == (500, 500)
    # Mallory's order is left out: no fill, not counted in the interval.
    assert (await mallory.market(t)).fills == ()
    # Mallory learns why on its own stream; the operator sees it on theirs.
    mine: list[Event] = []
    async for event in mallory.events(0):
        mine.append(event)
        if event.kind == "order_quarantined":
            break
    quarantined = mine[-1].data
    assert (quarantined["order_id"], quarantined["participant"]) == ("m", mallory.address)
    assert "out of range" in str(quarantined["reason"])
    (seen,) = await _operator_events(grid, "order_quarantined")
    assert seen == quarantined
    # Buyer's stream does not carry Mallory's quarantine.
    theirs: list[Event] = []
    async for event in buyer.events(0):
        theirs.append(event)
        if event.kind == "fills":
            break
    assert "order_quarantined" not in {e.kind for e in theirs}
    # Stored with the interval's result in the audit log, and counted.
    async with httpx.AsyncClient(base_url=grid.url, timeout=10) as http:
        metrics = (await http.get("/metrics")).text
    assert "p2p_orders_quarantined_total 1.0" in metrics
    async with grid.grid.db.read() as conn:
        body = await conn.scalar(
            select(log_entries.c.body)
            .where(log_entries.c.kind == "market_result")
            .order_by(log_entries.c.seq.desc())
            .limit(1)
        )
    assert json.loads(bytes(body))["quarantined"] == [
        {"participant": mallory.address, "order_id": "m", "reason": quarantined["reason"]}
    ]


async def _health(grid: RunningGrid) -> dict[str, object]:
    async with httpx.AsyncClient(base_url=grid.url, timeout=10) as http:
        response = await http.get("/api/v1/health")
    assert response.status_code == 200
    body: dict[str, object] = response.json()
    return body


async def _behind(grid: RunningGrid, step: str) -> float:
    async with httpx.AsyncClient(base_url=grid.url, timeout=10) as http:
        text = (await http.get("/metrics")).text
    line = next(
        x for x in text.splitlines() if x.startswith(f'p2p_cycle_behind_seconds{{step="{step}"}}')
    )
    return float(line.split()[-1])


async def test_a_cycle_that_falls_behind_shows_in_health_and_metrics(grid: RunningGrid) -> None:
    t = grid.grid.schedule.start_of(grid.clock.now()) + timedelta(minutes=30)
    grid.clock.set(t - timedelta(minutes=5))  # t's gate closes
    await grid.run_cycle()
    assert (await _health(grid))["status"] == "ok"
    assert await _behind(grid, "clearing") == 0
    # The cycle stops (a stuck step, a dead worker): time runs on, nothing clears.
    grid.clock.set(t + timedelta(minutes=12))  # t+15's gate closed 2 min ago
    health = await _health(grid)
    assert health["status"] == "degraded"
    late = health["late"]
    assert isinstance(late, dict)
    nxt = t + timedelta(minutes=15)
    assert late["clearing"] == {
        "interval": nxt.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "due": (nxt - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "behind_seconds": 60,
    }
    assert await _behind(grid, "clearing") == 60
    # It catches up: ok again.
    await grid.run_cycle()
    assert (await _health(grid))["status"] == "ok"
    assert await _behind(grid, "clearing") == 0


@pytest.mark.parametrize(
    ("retail", "feed_in", "field"),
    [
        ("1000000.000001", "0.0800", "retail"),
        ("0.3000", "-1000000.000001", "feed_in"),
        ("1000001", "0.0800", "retail"),
    ],
)
async def test_operator_prices_beyond_the_bounds_are_refused(
    grid: RunningGrid, retail: str, feed_in: str, field: str
) -> None:
    effective = grid.grid.schedule.start_of(grid.clock.now()) + timedelta(hours=1)
    async with httpx.AsyncClient(base_url=grid.url, timeout=10, headers=AUTH) as http:
        response = await http.post(
            "/api/v1/operator/prices",
            json={
                "effective_from": effective.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "retail": retail,
                "feed_in": feed_in,
            },
        )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == field
    assert "price range" in error["message"]
    # Nothing stored: the interval still has the configured prices.
    assert await _prices_at(grid, effective) == ("0.3000", "0.0800")


async def _prices_at(grid: RunningGrid, t: datetime) -> tuple[str, str]:
    async with grid.grid.db.read() as conn:
        prices = await cq.prices_at(conn, t)
    return format_price(prices.retail_ticks), format_price(prices.feed_in_ticks)
