"""Readings, orders, the interval cycle (exactly once, across a restart), the live stream."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from grid_server.config import GridConfig
from grid_server.storage.schema import fills, intervals, line_items, log_entries, reading_history
from p2p_energy_client.grid_client import GridClient
from p2p_energy_client.models import Event
from p2p_energy_client.protocol import (
    ErrorCode,
    OrderSpec,
    ProtocolError,
    Reading,
    Side,
)
from tests.support.factories import MAIN, PV
from tests.support.grid_server import RunningGrid, run_grid_server


async def refused(call: object) -> tuple[ErrorCode, str | None]:
    with pytest.raises(ProtocolError) as err:
        await call  # type: ignore[misc]
    return err.value.code, err.value.field


async def test_readings_duplicates_conflicts_corrections(grid: RunningGrid) -> None:
    alice = await grid.member("Alice")
    await alice.set_assets([PV], [MAIN])
    t = grid.grid.schedule.start_of(grid.clock.now())
    grid.clock.advance(minutes=15)
    first = await alice.send_readings([Reading(t, "pv", 900), Reading(t, "main", 300)])
    assert (first.accepted, first.duplicate) == (2, 0)
    again = await alice.send_readings(
        [Reading(t, "pv", 900), Reading(t + timedelta(minutes=15), "pv", 0)]
    )
    assert [a.status for a in again.readings] == ["duplicate", "accepted"]
    # A different value is a conflict unless sent as a correction; the batch is all-or-nothing.
    assert await refused(
        alice.send_readings([Reading(t - timedelta(minutes=15), "main", 1), Reading(t, "pv", 950)])
    ) == (ErrorCode.UNKNOWN_ASSET, "payload.readings[0].asset")
    assert await refused(alice.send_readings([Reading(t, "main", 300), Reading(t, "pv", 950)])) == (
        ErrorCode.READING_CONFLICT,
        "payload.readings[1].energy_wh",
    )
    fixed = await alice.send_readings([Reading(t, "pv", 950)], correction=True)
    assert fixed.corrected == 1
    stored = await alice.readings(t, t + timedelta(minutes=15))
    assert [(r.asset, r.energy_wh, r.corrections) for r in stored] == [
        ("main", 300, 0),
        ("pv", 950, 1),
    ]
    async with grid.grid.db.read() as conn:
        history = (await conn.execute(select(reading_history.c.energy_wh))).scalars().all()
    assert history == [900]
    # Beyond rated power, in the future, after the window.
    assert await refused(alice.send_readings([Reading(t, "main", 2_001)], correction=True)) == (
        ErrorCode.OVER_CAPACITY,
        "payload.readings[0].energy_wh",
    )
    future = t + timedelta(hours=1)
    assert await refused(alice.send_readings([Reading(future, "pv", 1)])) == (
        ErrorCode.INVALID_FIELD,
        "payload.readings[0].interval",
    )
    grid.clock.advance(seconds=grid.grid.config.settlement_window_seconds + 3600)
    assert await refused(alice.send_readings([Reading(t, "pv", 10)], correction=True)) == (
        ErrorCode.WINDOW_CLOSED,
        "payload.readings[0].interval",
    )
    assert await refused(alice.send_readings([Reading(t, "pv", -1)])) == (
        ErrorCode.INVALID_FIELD,
        "payload.readings[0].energy_wh",
    )


async def test_orders_place_replace_cancel_and_limits(grid: RunningGrid) -> None:
    alice = await grid.member("Alice")
    now = grid.clock.now()
    nxt = grid.grid.schedule.start_of(now) + timedelta(minutes=30)
    sell = OrderSpec("s1", Side.SELL, 500, "0.1000")
    assert await refused(alice.submit_orders(nxt, [sell])) == (
        ErrorCode.NO_SOURCES,
        "payload.place[0].side",
    )
    await alice.set_assets([PV], [MAIN])
    book = await alice.submit_orders(nxt, [sell, OrderSpec("b1", Side.BUY, 300, "0.2000")])
    assert [o.id for o in book.orders] == ["b1", "s1"]
    book = await alice.submit_orders(nxt, [OrderSpec("s1", Side.SELL, 600, "0.1200")])
    assert [(o.id, o.energy_wh) for o in book.orders] == [("b1", 300), ("s1", 600)]
    book = await alice.submit_orders(nxt, cancel=["b1", "never-placed"])
    assert [o.id for o in book.orders] == ["s1"]
    book = await alice.submit_orders(
        nxt, [OrderSpec("s2", Side.SELL, 100, "0.1500")], replace_all=True
    )
    assert [o.id for o in book.orders] == ["s2"]
    assert (await alice.orders(nxt)).orders == book.orders
    # Sources deliver at most 4 kW x 15 min = 1,000 Wh; meters take 2,000 Wh.
    assert await refused(alice.submit_orders(nxt, [OrderSpec("s3", Side.SELL, 901, "0.1000")])) == (
        ErrorCode.OVER_CAPACITY,
        "payload.place[0].energy_wh",
    )
    assert await refused(
        alice.submit_orders(nxt, [OrderSpec("b9", Side.BUY, 2_001, "0.2000")])
    ) == (ErrorCode.OVER_CAPACITY, "payload.place[0].energy_wh")
    # Gate closure and horizon.
    current = grid.grid.schedule.start_of(now)
    assert await refused(alice.submit_orders(current, [sell])) == (
        ErrorCode.GATE_CLOSED,
        "payload.interval",
    )
    far = current + timedelta(hours=49)
    assert await refused(alice.submit_orders(far, [sell])) == (
        ErrorCode.BEYOND_HORIZON,
        "payload.interval",
    )
    assert await refused(alice.submit_orders(nxt + timedelta(minutes=1), [sell])) == (
        ErrorCode.INVALID_FIELD,
        "payload.interval",
    )


async def _market(grid: RunningGrid) -> tuple[GridClient, GridClient, object]:
    seller = await grid.member("Seller")
    buyer = await grid.member("Buyer")
    await seller.set_assets([PV], [])
    await buyer.set_assets([], [MAIN])
    t = grid.grid.schedule.start_of(grid.clock.now()) + timedelta(minutes=30)
    await seller.submit_orders(t, [OrderSpec("s", Side.SELL, 800, "0.1000")])
    await buyer.submit_orders(t, [OrderSpec("b", Side.BUY, 500, "0.2500")])
    return seller, buyer, t


async def _count(grid: RunningGrid, table: object, *where: object) -> int:
    async with grid.grid.db.read() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table).where(*where)) or 0)  # type: ignore[arg-type]


async def test_cycle_clears_once_and_streams_with_resume(grid: RunningGrid) -> None:
    _seller, buyer, t = await _market(grid)
    received: list[Event] = []

    async def listen(since: int, until_kind: str) -> None:
        async for event in buyer.events(since):
            received.append(event)
            if event.kind == until_kind:
                return

    # Gate closure of t is 5 minutes before it.
    grid.clock.set(t - timedelta(minutes=5))  # type: ignore[operator]
    await asyncio.gather(grid.run_cycle(), grid.run_cycle())  # twice at once: clears once
    await grid.run_cycle()
    result = await buyer.market(t)  # type: ignore[arg-type]
    assert result.state == "cleared"
    assert [(f.order_id, f.filled_wh) for f in result.fills] == [("b", 500)]
    (zone,) = result.zones
    assert (zone.bought_wh, zone.sold_wh) == (500, 500)
    assert await _count(grid, fills) == 2
    assert await _count(grid, intervals, intervals.c.start == t) == 1
    assert await _count(grid, log_entries, log_entries.c.kind == "market_result") >= 1

    await asyncio.wait_for(listen(0, "fills"), 10)
    kinds = [e.kind for e in received]
    assert "market_result" in kinds and "fills" in kinds
    fills_event = next(e for e in received if e.kind == "fills")
    assert fills_event.data["fills"][0]["filled_wh"] == 500
    # Resume after the last seen event: only newer events arrive.
    last = received[-1].id
    received.clear()
    grid.clock.advance(minutes=15)
    await grid.run_cycle()
    await asyncio.wait_for(listen(last, "market_result"), 10)
    assert all(e.id > last for e in received)


async def test_restart_between_gate_closure_and_clearing(database_url: str) -> None:
    async with run_grid_server(database_url) as grid:
        _seller, _buyer, t = await _market(grid)
        clock = grid.clock
    # The server is down while the gate closes; it comes back later.
    clock.set(t + timedelta(minutes=10))  # type: ignore[operator]
    async with run_grid_server(database_url, clock=clock, run_cycle=True) as grid:
        for _ in range(100):
            if await _count(grid, fills) == 2:
                break
            await asyncio.sleep(0.05)
        await grid.run_cycle()
        assert await _count(grid, fills) == 2
        async with grid.grid.db.read() as conn:
            state = await conn.scalar(select(intervals.c.state).where(intervals.c.start == t))
        assert state == "cleared"
        assert (
            await _count(
                grid,
                log_entries,
                log_entries.c.kind == "market_result",
                log_entries.c.ref == t.strftime("%Y-%m-%dT%H:%M:%SZ"),  # type: ignore[attr-defined]
            )
            == 1
        )


class _LosingProxy:
    """Forwards to the grid but drops the first response: a client timeout after commit."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.dropped = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, drop: bool) -> None:
            try:
                while data := await src.read(65536):
                    if drop and self.dropped == 0 and b"/readings" not in data:
                        pass
                    if drop and self.dropped == 0 and data.startswith(b"HTTP/1.1 200"):
                        self.dropped += 1
                        dst.close()
                        return
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer, False), pipe(up_reader, writer, True))

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


async def test_client_retry_after_lost_answer_counts_once(grid: RunningGrid) -> None:
    alice = await grid.member("Alice")
    await alice.set_assets([PV], [MAIN])
    t = grid.grid.schedule.start_of(grid.clock.now())
    port = int(grid.url.rsplit(":", 1)[1])
    proxy = _LosingProxy(port)
    url = await proxy.start()
    flaky = grid.client(alice.keys, last_seq=alice.last_seq, grid_id="test-grid")
    flaky._base = url  # the same key, through the lossy path
    try:
        result = await flaky.send_readings([Reading(t, "pv", 700)])
    finally:
        await proxy.stop()
    assert proxy.dropped == 1
    # The retry carried the identical envelope: the original answer, stored once.
    assert (result.accepted, result.duplicate) == (1, 0)
    stored = await alice.readings(t, t + timedelta(minutes=15))
    assert [(r.asset, r.energy_wh) for r in stored] == [("pv", 700)]
    envelopes_for_it = await _count(
        grid,
        log_entries,
        log_entries.c.kind == "envelope",
        log_entries.c.ref.like(f"{alice.address}/%"),
    )
    assert envelopes_for_it == 4  # join, assets, the readings once, the session for reads


async def test_settlement_statements_and_money_balance(database_url: str) -> None:
    config = GridConfig(
        id="test-grid", settlement_window_seconds=600, settlement_period_seconds=3600
    )
    async with run_grid_server(database_url, grid=config) as grid:
        seller, buyer, t = await _market(grid)
        grid.clock.set(t + timedelta(minutes=15, seconds=1))  # type: ignore[operator]
        await grid.run_cycle()
        await seller.send_readings([Reading(t, "pv", 700)])  # type: ignore[arg-type]
        await buyer.send_readings([Reading(t, "main", 600)])  # type: ignore[arg-type]
        # Past the window of every interval of t's hour: settle and issue statements.
        period_end = grid.grid.schedule.period_end(grid.grid.schedule.period_start(t))  # type: ignore[arg-type]
        grid.clock.set(period_end + timedelta(minutes=11))
        await grid.run_cycle()
        await grid.run_cycle()
        async with grid.grid.db.read() as conn:
            rows = (await conn.execute(select(line_items))).all()
        assert rows, "settlement stored no lines"
        by_interval: dict[object, int] = {}
        for row in rows:
            by_interval[row.interval_start] = (
                by_interval.get(row.interval_start, 0) + row.amount_micro
            )
        # Money is conserved to the micro-unit in every interval.
        assert set(by_interval.values()) == {0}
        lines = {(r.participant_id, r.kind): r for r in rows if r.interval_start == t}
        kinds = {kind for (_pid, kind) in lines}
        assert {"market_buy", "market_sell", "shortfall_retail", "surplus_feed_in"} <= kinds
        (buyer_statement,) = await buyer.statements()
        (seller_statement,) = await seller.statements()
        assert buyer_statement.amount_due_micro > 0 > seller_statement.amount_due_micro
        detail = await buyer.statement(buyer_statement.id)
        assert sum(x.amount_micro for x in detail.lines) == buyer_statement.amount_due_micro
        # Buyer: 500 Wh at the zone price plus 100 Wh shortfall at retail (0.30).
        shortfall = next(x for x in detail.lines if x.kind == "shortfall_retail")
        assert (shortfall.energy_wh, shortfall.amount_micro) == (100, 30_000)
        with pytest.raises(ProtocolError) as err:
            await seller.statement(buyer_statement.id)
        assert err.value.code is ErrorCode.NOT_FOUND
        # Issued exactly once even when the cycle runs again.
        await grid.run_cycle()
        assert len(await buyer.statements()) == 1
