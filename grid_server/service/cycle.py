"""The interval cycle: clear at gate closure, settle when the window closes, issue statements.

Each step for an interval is one database transaction that stores the
results, appends them to the audit log, adds the live events and moves the
interval's state by compare-and-set (``open → cleared → settled``). If the
state has already moved, the transaction does nothing: an interval is cleared
and settled exactly once, also with several workers (on PostgreSQL each step
additionally runs under ``pg_try_advisory_xact_lock`` of the interval, so one
worker does the work while the others skip it) and after a restart, when the
overdue intervals are processed in order.

Statements: when every interval of a settlement period is settled, each
participant with line items in it gets one statement (total due to or from
the grid); a ``periods`` row (inserted once) makes that exactly once too.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from grid_server.domain import market
from grid_server.domain.market.book import as_ints
from grid_server.storage import audit_log
from grid_server.storage.db import advisory_key
from grid_server.storage.schema import (
    assets,
    fills,
    grid_state,
    intervals,
    line_items,
    orders,
    participants,
    periods,
    readings,
    statements,
    utility_prices,
    zone_results,
    zones,
)
from p2p_energy_client.api import Fill, LineItem, MarketResult, Statement, ZoneResult
from p2p_energy_client.protocol import canonical_json
from p2p_energy_client.units import format_nano, format_price, format_utc

from . import audit, settlement_port
from .background import BackgroundLoop
from .events import add_events

if TYPE_CHECKING:
    from .grid import GridService

_LOGGER = logging.getLogger(__name__)

# Clear big books off the event loop so requests keep flowing meanwhile.
THREAD_CLEARING_ORDERS = 20_000
# Ids per ``IN (...)`` list: a query may have at most 32,767 parameters (asyncpg).
IN_LIST_SLICE = 10_000


@dataclass(frozen=True, slots=True)
class Prices:
    retail_ticks: int
    feed_in_ticks: int


class IntervalCycle:
    def __init__(self, grid: GridService) -> None:
        self.grid = grid
        self._loop = BackgroundLoop(
            "p2p-cycle",
            self.run_due,
            self._next_pass_delay,
            failure="interval cycle step failed; retrying",
            logger=_LOGGER,
        )
        self._stopping = False

    def start(self) -> None:
        self._stopping = False
        self._loop.start()

    def wake(self) -> None:
        self._loop.wake()

    async def stop(self) -> None:
        self._stopping = True
        await audit.stop(self.grid)
        await self._loop.stop()

    def _next_pass_delay(self) -> float:
        """Until the next gate closure or window close (at most 5 s, at least 10 ms)."""
        return max(min(self._seconds_to_next(), 5.0), 0.01)

    def _seconds_to_next(self) -> float:
        grid = self.grid
        now = grid.clock.now()
        schedule = grid.schedule
        next_gate = schedule.gate_closure(schedule.last_gate_closed(now) + schedule.length)
        next_window = schedule.window_close(schedule.last_window_closed(now) + schedule.length)
        return grid.clock.seconds_until(min(next_gate, next_window))

    async def run_due(self) -> None:
        """Do every step that is due at the grid clock's now, in order."""
        grid = self.grid
        schedule = grid.schedule
        now = grid.clock.now()
        async with grid.db.read() as conn:
            cycle_from = await conn.scalar(
                select(grid_state.c.cycle_from).where(grid_state.c.grid == grid.grid_id)
            )
            last_cleared = await conn.scalar(
                select(func.max(intervals.c.start)).where(
                    intervals.c.state.in_(("cleared", "settled"))
                )
            )
            first_unsettled = await conn.scalar(
                select(func.min(intervals.c.start)).where(intervals.c.state == "cleared")
            )
        if cycle_from is None:
            return
        t = cycle_from if last_cleared is None else max(cycle_from, last_cleared + schedule.length)
        last_due = schedule.last_gate_closed(now)
        while t <= last_due and not self._stopping:
            if not await self.clear_interval(t):
                break
            t += schedule.length
        settle_from = first_unsettled
        if settle_from is not None:
            t = settle_from
            last_window = schedule.last_window_closed(grid.clock.now())
            while t <= last_window and not self._stopping:
                if not await self.settle_interval(t):
                    break
                t += schedule.length
        await self.issue_due_statements(cycle_from)
        await audit.close_due(grid)

    # --- clearing -----------------------------------------------------------------

    async def clear_interval(self, t: datetime) -> bool:
        """Clear interval ``t``; False when another worker holds it (try again later)."""
        grid = self.grid
        db = grid.db
        started = time.perf_counter()
        async with db.write() as conn:
            if not await db.advisory_xact_lock(conn, grid.interval_lock_key(t), wait=False):
                return False
            state = await self._ensure_interval(conn, t)
            if state != "open":
                return True
            now = grid.clock.now()
            book_rows = (
                await conn.execute(
                    select(
                        orders.c.participant_id,
                        orders.c.order_id,
                        orders.c.side,
                        orders.c.energy_wh,
                        orders.c.price_ticks,
                        orders.c.zone,
                        participants.c.address,
                    )
                    .join(participants, participants.c.id == orders.c.participant_id)
                    .where(orders.c.interval_start == t, participants.c.status == "active")
                    .order_by(orders.c.participant_id, orders.c.order_id)
                )
            ).all()
            zone_list = await load_zones(conn)
            prices = await prices_at(conn, t)
            book = market.Book(
                market.Utility(prices.retail_ticks, prices.feed_in_ticks),
                tuple(zone_list),
                tuple(
                    market.Order(
                        f"{r.participant_id}:{r.order_id}",
                        r.zone,
                        "buy" if r.side == "buy" else "sell",
                        r.energy_wh,
                        r.price_ticks,
                    )
                    for r in book_rows
                ),
            )
            if len(book.orders) > THREAD_CLEARING_ORDERS:
                result = await asyncio.to_thread(market.clear, book)
            else:
                result = market.clear(book)
            fills_wh = as_ints(result.fills_wh)
            prices_by_zone = dict(zip(result.zone_ids, as_ints(result.price_ticks), strict=True))
            bought: dict[str, int] = defaultdict(int)
            sold: dict[str, int] = defaultdict(int)
            fill_rows: list[dict[str, Any]] = []
            per_participant: dict[int, list[Fill]] = defaultdict(list)
            for r, filled in zip(book_rows, fills_wh, strict=True):
                (bought if r.side == "buy" else sold)[r.zone] += filled
                price = prices_by_zone[r.zone]
                fill_rows.append(
                    {
                        "interval_start": t,
                        "participant_id": r.participant_id,
                        "order_id": r.order_id,
                        "side": r.side,
                        "zone": r.zone,
                        "energy_wh": r.energy_wh,
                        "filled_wh": filled,
                        "price_ticks": price,
                        "limit_ticks": r.price_ticks,
                    }
                )
                per_participant[r.participant_id].append(
                    Fill(
                        t,
                        r.order_id,
                        r.side,
                        r.zone,
                        r.energy_wh,
                        filled,
                        format_price(price),
                        format_price(r.price_ticks),
                    )
                )
            zone_views = [
                ZoneResult(
                    zone_id,
                    format_price(price),
                    bought[zone_id],
                    sold[zone_id],
                    ubuy,
                    usell,
                    flow,
                )
                for zone_id, price, ubuy, usell, flow in zip(
                    result.zone_ids,
                    as_ints(result.price_ticks),
                    as_ints(result.utility_buy_wh),
                    as_ints(result.utility_sell_wh),
                    as_ints(result.flow_to_parent_wh),
                    strict=True,
                )
            ]
            welfare = format_nano(result.welfare_nano)
            changed = await conn.execute(
                update(intervals)
                .where(intervals.c.start == t, intervals.c.state == "open")
                .values(
                    state="cleared",
                    cleared_at=now,
                    welfare=welfare,
                    orders=len(book_rows),
                    clearing_ms=int((time.perf_counter() - started) * 1000),
                )
            )
            if changed.rowcount != 1:
                raise RuntimeError(f"interval {t} changed state during clearing")
            await conn.execute(
                insert(zone_results),
                [
                    {
                        "interval_start": t,
                        "zone": z.zone,
                        "price_ticks": prices_by_zone[z.zone],
                        "bought_wh": z.bought_wh,
                        "sold_wh": z.sold_wh,
                        "utility_buy_wh": z.utility_buy_wh,
                        "utility_sell_wh": z.utility_sell_wh,
                        "flow_to_parent_wh": z.flow_to_parent_wh,
                    }
                    for z in zone_views
                ],
            )
            if fill_rows:
                await conn.execute(insert(fills), fill_rows)
            public = MarketResult(t, "cleared", tuple(zone_views), (), welfare)
            record = {
                **public.to_wire(),
                "fills": [
                    {"participant": r.address, "order_id": r.order_id, "filled_wh": f}
                    for r, f in zip(book_rows, fills_wh, strict=True)
                ],
                "utility": {
                    "retail": format_price(prices.retail_ticks),
                    "feed_in": format_price(prices.feed_in_ticks),
                },
            }
            await audit_log.append(
                conn,
                db,
                grid.grid_id,
                [("market_result", format_utc(t), canonical_json(record))],
                now,
            )
            events: list[tuple[int | None, str, dict[str, Any]]] = [
                (None, "market_result", public.to_wire())
            ]
            events.extend(
                (pid, "fills", {"interval": format_utc(t), "fills": [f.to_wire() for f in fl]})
                for pid, fl in per_participant.items()
            )
            await add_events(conn, events, now, postgres=db.is_postgres)
            await grid.faults.reach("cycle.clear", format_utc(t))
        grid.hub.notify()
        grid.metrics.clearing_seconds.observe(time.perf_counter() - started)
        grid.metrics.intervals.labels("cleared").inc()
        _LOGGER.info("cleared %s: %d orders, welfare %s", format_utc(t), len(book_rows), welfare)
        return True

    async def _ensure_interval(self, conn: AsyncConnection, t: datetime) -> str:
        state = await conn.scalar(select(intervals.c.state).where(intervals.c.start == t))
        if state is None:
            await conn.execute(insert(intervals).values(start=t, state="open"))
            return "open"
        return str(state)

    # --- settlement ---------------------------------------------------------------

    async def settle_interval(self, t: datetime) -> bool:
        grid = self.grid
        db = grid.db
        started = time.perf_counter()
        async with db.write() as conn:
            if not await db.advisory_xact_lock(conn, grid.interval_lock_key(t), wait=False):
                return False
            state = await conn.scalar(select(intervals.c.state).where(intervals.c.start == t))
            if state != "cleared":
                return True
            now = grid.clock.now()
            inputs = await self._settlement_inputs(conn, t)
            lines = settlement_port.settle(inputs)
            changed = await conn.execute(
                update(intervals)
                .where(intervals.c.start == t, intervals.c.state == "cleared")
                .values(
                    state="settled",
                    settled_at=now,
                    settlement_ms=int((time.perf_counter() - started) * 1000),
                )
            )
            if changed.rowcount != 1:
                raise RuntimeError(f"interval {t} changed state during settlement")
            if lines:
                await conn.execute(
                    insert(line_items),
                    [
                        {
                            "interval_start": t,
                            "participant_id": line.participant_id,
                            "kind": line.kind,
                            "energy_wh": line.energy_wh,
                            "price_ticks": line.price_ticks,
                            "amount_micro": line.amount_micro,
                        }
                        for line in lines
                    ],
                )
            addresses = inputs.addresses
            record = {
                "interval": format_utc(t),
                "lines": [
                    {
                        "participant": None
                        if line.participant_id is None
                        else addresses[line.participant_id],
                        "kind": line.kind,
                        "energy_wh": line.energy_wh,
                        "price": format_price(line.price_ticks),
                        "amount_micro": line.amount_micro,
                    }
                    for line in lines
                ],
            }
            await audit_log.append(
                conn,
                db,
                grid.grid_id,
                [("settlement", format_utc(t), canonical_json(record))],
                now,
            )
            by_participant: dict[int, list[LineItem]] = defaultdict(list)
            for line in lines:
                if line.participant_id is not None:
                    by_participant[line.participant_id].append(
                        LineItem(
                            t,
                            line.kind,
                            line.energy_wh,
                            format_price(line.price_ticks),
                            line.amount_micro,
                        )
                    )
            await add_events(
                conn,
                [
                    (
                        pid,
                        "settled",
                        {"interval": format_utc(t), "lines": [x.to_wire() for x in items]},
                    )
                    for pid, items in by_participant.items()
                ],
                now,
                postgres=db.is_postgres,
            )
            await grid.faults.reach("cycle.settle", format_utc(t))
        grid.hub.notify()
        grid.metrics.settlement_seconds.observe(time.perf_counter() - started)
        grid.metrics.intervals.labels("settled").inc()
        return True

    async def _settlement_inputs(
        self, conn: AsyncConnection, t: datetime
    ) -> settlement_port.IntervalInputs:
        prices = await prices_at(conn, t)
        zone_rows = (
            await conn.execute(select(zone_results).where(zone_results.c.interval_start == t))
        ).all()
        zone_prices = {r.zone: r.price_ticks for r in zone_rows}
        zone_flows = {
            r.zone: (r.utility_buy_wh, r.utility_sell_wh, r.flow_to_parent_wh) for r in zone_rows
        }
        fill_rows = (
            await conn.execute(
                select(
                    fills.c.participant_id,
                    fills.c.order_id,
                    fills.c.side,
                    fills.c.zone,
                    fills.c.filled_wh,
                    fills.c.price_ticks,
                ).where(fills.c.interval_start == t)
            )
        ).all()
        # Metered energy per participant: sources produce, meters consume.
        # The asset's category is the one of its version in force during t.
        end = t + self.grid.schedule.length
        metered_rows = (
            await conn.execute(
                select(
                    readings.c.participant_id,
                    readings.c.asset_id,
                    readings.c.energy_wh,
                    assets.c.category,
                    assets.c.valid_from,
                )
                .join(
                    assets,
                    (assets.c.participant_id == readings.c.participant_id)
                    & (assets.c.asset_id == readings.c.asset_id)
                    & (assets.c.valid_from < end)
                    & ((assets.c.valid_until.is_(None)) | (assets.c.valid_until > t)),
                )
                .where(readings.c.interval_start == t)
                .order_by(readings.c.participant_id, readings.c.asset_id, assets.c.valid_from)
            )
        ).all()
        produced: dict[int, int] = defaultdict(int)
        consumed: dict[int, int] = defaultdict(int)
        seen: set[tuple[int, str]] = set()
        for r in metered_rows:
            key = (r.participant_id, r.asset_id)
            if key in seen:  # several versions overlapped t: count the reading once
                continue
            seen.add(key)
            (produced if r.category == "source" else consumed)[r.participant_id] += r.energy_wh
        pids = {r.participant_id for r in fill_rows} | set(produced) | set(consumed)
        addresses: dict[int, str] = {}
        zone_of: dict[int, str] = {}
        ids = sorted(pids)
        for first in range(0, len(ids), IN_LIST_SLICE):
            for r in await conn.execute(
                select(participants.c.id, participants.c.address, participants.c.zone).where(
                    participants.c.id.in_(ids[first : first + IN_LIST_SLICE])
                )
            ):
                addresses[r.id] = r.address
                zone_of[r.id] = r.zone
        return settlement_port.IntervalInputs(
            interval=t,
            interval_minutes=self.grid.schedule.interval_minutes,
            retail_ticks=prices.retail_ticks,
            feed_in_ticks=prices.feed_in_ticks,
            zone_prices=zone_prices,
            zone_flows=zone_flows,
            zones=tuple(await load_zones(conn)),
            fills=tuple(
                settlement_port.FillInput(
                    r.participant_id, r.order_id, r.side, r.zone, r.filled_wh, r.price_ticks
                )
                for r in fill_rows
            ),
            metered={
                pid: settlement_port.Metered(produced.get(pid, 0), consumed.get(pid, 0))
                for pid in pids
            },
            zone_of=zone_of,
            addresses=addresses,
        )

    # --- statements ---------------------------------------------------------------

    async def issue_due_statements(self, cycle_from: datetime) -> None:
        grid = self.grid
        schedule = grid.schedule
        async with grid.db.read() as conn:
            last_settled = await conn.scalar(
                select(func.max(intervals.c.start)).where(intervals.c.state == "settled")
            )
            first_open = await conn.scalar(
                select(func.min(intervals.c.start)).where(intervals.c.state != "settled")
            )
            last_issued = await conn.scalar(select(func.max(periods.c.start)))
        if last_settled is None:
            return
        # Everything before this moment is settled.
        settled_until = first_open if first_open is not None else last_settled + schedule.length
        p = (
            schedule.period_start(cycle_from)
            if last_issued is None
            else schedule.period_end(last_issued)
        )
        while schedule.period_end(p) <= settled_until and not self._stopping:
            if not await self.issue_statements(p):
                break
            p = schedule.period_end(p)

    async def issue_statements(self, period_start: datetime) -> bool:
        grid = self.grid
        db = grid.db
        period_end = grid.schedule.period_end(period_start)
        # The ledger terms (rate, amount in ledger units, due time) of this period.
        terms = await grid.payments.terms_factory(grid.clock.now())
        async with db.write() as conn:
            key = advisory_key(grid.grid_id, "period", period_start.isoformat())
            if not await db.advisory_xact_lock(conn, key, wait=False):
                return False
            if (
                await conn.scalar(select(periods.c.start).where(periods.c.start == period_start))
                is not None
            ):
                return True
            now = grid.clock.now()
            await conn.execute(
                insert(periods).values(start=period_start, state="issued", issued_at=now)
            )
            totals = (
                await conn.execute(
                    select(
                        line_items.c.participant_id,
                        func.sum(line_items.c.amount_micro).label("due"),
                        func.count(func.distinct(line_items.c.interval_start)).label("n"),
                        participants.c.address,
                    )
                    .join(participants, participants.c.id == line_items.c.participant_id)
                    .where(
                        line_items.c.interval_start >= period_start,
                        line_items.c.interval_start < period_end,
                    )
                    .group_by(line_items.c.participant_id, participants.c.address)
                    .order_by(line_items.c.participant_id)
                )
            ).all()
            issued = [
                Statement(
                    statement_id(grid.grid_id, r.address, period_start),
                    r.address,
                    period_start,
                    period_end,
                    grid.config.currency,
                    int(r.due),
                    0,
                    "issued",
                    now,
                    int(r.n),
                    ledger=terms.for_amount(int(r.due), now),
                )
                for r in totals
            ]
            if issued:
                await conn.execute(
                    insert(statements),
                    [
                        {
                            "id": s.id,
                            "participant_id": r.participant_id,
                            "period_start": period_start,
                            "period_end": period_end,
                            "currency": s.currency,
                            "amount_due_micro": s.amount_due_micro,
                            "paid_micro": 0,
                            # Nothing to pay either way is paid by definition.
                            "status": "issued" if s.amount_due_micro else "paid",
                            "issued_at": now,
                            "intervals": s.intervals,
                        }
                        for s, r in zip(issued, totals, strict=True)
                    ],
                )
                await grid.payments.record_terms(conn, issued)
                await audit_log.append(
                    conn,
                    db,
                    grid.grid_id,
                    [("statement", s.id, canonical_json(s.to_wire())) for s in issued],
                    now,
                )
                await add_events(
                    conn,
                    [
                        (r.participant_id, "statement", s.to_wire())
                        for s, r in zip(issued, totals, strict=True)
                    ],
                    now,
                    postgres=db.is_postgres,
                )
        grid.hub.notify()
        grid.payments.wake_payouts()
        grid.metrics.intervals.labels("statements").inc()
        return True


def statement_id(grid: str, address: str, period_start: datetime) -> str:
    digest = hashlib.sha256(f"{grid}|{address}|{format_utc(period_start)}".encode()).hexdigest()
    return f"st-{period_start:%Y%m%d%H%M}-{digest[:16]}"


async def load_zones(conn: AsyncConnection) -> list[market.Zone]:
    rows = (await conn.execute(select(zones).order_by(zones.c.id))).all()
    return [
        market.Zone(r.id, r.parent, r.fee_ticks, r.capacity_up_wh, r.capacity_down_wh) for r in rows
    ]


async def prices_at(conn: AsyncConnection, t: datetime) -> Prices:
    row = (
        await conn.execute(
            select(utility_prices.c.retail_ticks, utility_prices.c.feed_in_ticks)
            .where(utility_prices.c.effective_from <= t)
            .order_by(utility_prices.c.effective_from.desc())
            .limit(1)
        )
    ).one_or_none()
    if row is None:
        raise RuntimeError(f"no utility price in force at {format_utc(t)}")
    return Prices(row.retail_ticks, row.feed_in_ticks)


__all__ = ["IntervalCycle", "load_zones", "prices_at", "statement_id"]
