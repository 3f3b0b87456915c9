"""What the operator's dashboard shows: read-only aggregates over the grid's tables.

Everything is exact: energy in Wh, prices in ticks (10^-6 of the currency
per kWh), money in micro-units, and savings in nano-units (ticks × Wh =
10^-9 of the currency), summed as integers in the database and in Python.
The JSON is built for the page (``grid_server/api/static/dashboard``) and
served by :mod:`grid_server.api.dashboard`; amounts that may outgrow a
JavaScript number (2^53) are also given as decimal strings.

**Community savings** (against the status quo, in which every seller sells
to the utility at the feed-in price and every buyer buys from it at the
retail price), for a cleared interval ``t`` with utility prices
``retail(t)`` and ``feed_in(t)``::

    savings(t) = Σ sell fills (price(zone) − feed_in(t)) × filled_wh
               + Σ buy fills  (retail(t) − price(zone)) × filled_wh

in nano-units. Every fill of a zone trades at the zone's one price, so this
equals ``Σ zones (price − feed_in) × sold_wh + (retail − price) × bought_wh``
over the zone results, which is how it is computed here (a handful of rows
per interval however many households trade; the tests check the identity
against the fills). It counts what was traded at gate closure; deviations
settled at the utility's prices afterwards save nothing against the status
quo, which would have priced them the same. Link fees are paid out of the
zone price differences, so they are not savings.

**Energy.** Of the energy participants sold in the market (``sold_wh``), the
utility bought ``utility_buy_wh`` ("sold to the utility"); the rest went to
neighbours ("matched locally"). Equally, participants bought
``bought_wh`` = matched locally + ``utility_sell_wh`` ("bought from the
utility").
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import orjson
from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from grid_server.storage import audit_store
from grid_server.storage.schema import (
    audit_anchor_attempts,
    audit_anchors,
    audit_roots,
    chain_heads,
    events,
    fills,
    intervals,
    ledger_accounts,
    ledger_entries,
    ledger_heads,
    line_items,
    log_entries,
    orders,
    participants,
    payments,
    payouts,
    statement_terms,
    statements,
    utility_prices,
    zone_results,
    zones,
)
from p2p_energy_client.api import format_utc_ms
from p2p_energy_client.protocol import LedgerKind
from p2p_energy_client.units import format_price, format_utc

if TYPE_CHECKING:
    from grid_server.domain.clock import Clock

    from .wiring import Grid as GridService

MAX_HOURS: Final = 7 * 24
DEFAULT_HOURS: Final = 24
MAX_FILLS: Final = 500
MAX_CURVE_STEPS: Final = 400
PAGE_LIMIT: Final = 500
RECENT: Final = 50
MICRO_PER_UNIT: Final = 1_000_000
NANO_PER_MICRO: Final = 1_000


# --- helpers ---------------------------------------------------------------------------


def money(micro: int) -> str:
    """Micro-units as an exact decimal string of the currency (``-1.250000``)."""
    sign = "-" if micro < 0 else ""
    whole, frac = divmod(abs(micro), MICRO_PER_UNIT)
    return f"{sign}{whole}.{frac:06d}"


def nano_to_micro(nano: int) -> int:
    """Nano-units to micro-units, rounded toward zero (what the page shows)."""
    return nano // NANO_PER_MICRO if nano >= 0 else -((-nano) // NANO_PER_MICRO)


def clock_speed(clock: Clock) -> float:
    """How fast grid time runs against real time (0: it only moves when told to)."""
    from grid_server.domain.clock import SystemClock  # noqa: PLC0415

    if isinstance(clock, SystemClock):
        return 1.0
    if getattr(clock, "running", True) is False:
        return 0.0
    speed = getattr(clock, "speed", None)
    return float(speed) if isinstance(speed, (int, float)) else 0.0


def clock_view(grid: GridService) -> dict[str, Any]:
    return {"now": format_utc_ms(grid.clock.now()), "speed": clock_speed(grid.clock)}


@dataclass(frozen=True, slots=True)
class PriceSteps:
    """The utility's prices over time: ``(effective_from, retail, feed_in)`` ascending."""

    starts: list[datetime]
    retail: list[int]
    feed_in: list[int]

    def at(self, t: datetime) -> tuple[int, int]:
        """``(retail, feed_in)`` ticks in force at ``t`` (the first step before any)."""
        i = max(bisect.bisect_right(self.starts, t) - 1, 0)
        return self.retail[i], self.feed_in[i]

    def ranges(self) -> list[tuple[datetime | None, datetime | None, int, int]]:
        """``(from, until, retail, feed_in)``; the first step also covers earlier times."""
        out: list[tuple[datetime | None, datetime | None, int, int]] = []
        for i in range(len(self.starts)):
            begin = None if i == 0 else self.starts[i]
            end = self.starts[i + 1] if i + 1 < len(self.starts) else None
            out.append((begin, end, self.retail[i], self.feed_in[i]))
        return out


async def price_steps(conn: AsyncConnection) -> PriceSteps:
    rows = (
        await conn.execute(
            select(
                utility_prices.c.effective_from,
                utility_prices.c.retail_ticks,
                utility_prices.c.feed_in_ticks,
            ).order_by(utility_prices.c.effective_from)
        )
    ).all()
    return PriceSteps(
        [r.effective_from for r in rows],
        [int(r.retail_ticks) for r in rows],
        [int(r.feed_in_ticks) for r in rows],
    )


def savings_nano(
    sold_wh: int, sold_value: int, bought_wh: int, bought_value: int, *, retail: int, feed_in: int
) -> int:
    """Savings of sales worth ``sold_value`` and purchases worth ``bought_value`` (ticks × Wh)."""
    return (sold_value - feed_in * sold_wh) + (retail * bought_wh - bought_value)


async def _zones(conn: AsyncConnection) -> list[dict[str, Any]]:
    return [
        {
            "id": z.id,
            "name": z.name or z.id,
            "parent": z.parent,
            "fee": z.fee,
            "fee_ticks": int(z.fee_ticks),
            "capacity_up_wh": z.capacity_up_wh,
            "capacity_down_wh": z.capacity_down_wh,
        }
        for z in await conn.execute(select(zones).order_by(zones.c.parent.is_not(None), zones.c.id))
    ]


async def last_event_id(conn: AsyncConnection) -> int:
    return int(await conn.scalar(select(func.coalesce(func.max(events.c.id), 0))) or 0)


# --- overview --------------------------------------------------------------------------


async def overview(grid: GridService, hours: int = DEFAULT_HOURS) -> dict[str, Any]:
    """Now, the next gate closure, participants by zone, and the last ``hours`` of the market."""
    hours = min(max(hours, 1), MAX_HOURS)
    schedule = grid.schedule
    config = grid.config
    now = grid.clock.now()
    current = schedule.start_of(now)
    # The next interval still taking orders, and when its gate closes.
    next_open = schedule.last_gate_closed(now) + schedule.length
    gate = schedule.gate_closure(next_open)
    # Up to the last interval whose gate has closed (it may start after now).
    until = next_open
    since = until - timedelta(hours=hours)
    async with grid.db.read() as conn:
        steps = await price_steps(conn)
        zone_list = await _zones(conn)
        state_rows = (
            await conn.execute(
                select(intervals.c.start, intervals.c.state).where(
                    intervals.c.start >= since, intervals.c.start < until
                )
            )
        ).all()
        states = {r.start: str(r.state) for r in state_rows}
        current_state = await conn.scalar(
            select(intervals.c.state).where(intervals.c.start == current)
        )
        counts = (
            await conn.execute(
                select(
                    func.count().filter(intervals.c.state.in_(("cleared", "settled"))),
                    func.count().filter(intervals.c.state == "settled"),
                    func.max(intervals.c.start).filter(
                        intervals.c.state.in_(("cleared", "settled"))
                    ),
                )
            )
        ).one()
        zr = (
            await conn.execute(
                select(zone_results)
                .where(
                    zone_results.c.interval_start >= since, zone_results.c.interval_start < until
                )
                .order_by(zone_results.c.interval_start, zone_results.c.zone)
            )
        ).all()
        totals = await _market_totals(conn, steps)
        people = (
            await conn.execute(
                select(
                    participants.c.zone,
                    participants.c.role,
                    participants.c.status,
                    func.count(),
                ).group_by(participants.c.zone, participants.c.role, participants.c.status)
            )
        ).all()
        last_event = await last_event_id(conn)

    by_interval: dict[datetime, list[Any]] = defaultdict(list)
    for row in zr:
        by_interval[row.interval_start].append(row)
    series = []
    window_savings = 0
    for t in sorted(by_interval):
        rows = by_interval[t]
        retail, feed_in = steps.at(t)
        sold = sum(int(r.sold_wh) for r in rows)
        bought = sum(int(r.bought_wh) for r in rows)
        to_utility = sum(int(r.utility_buy_wh) for r in rows)
        from_utility = sum(int(r.utility_sell_wh) for r in rows)
        saved = sum(
            savings_nano(
                int(r.sold_wh),
                int(r.price_ticks) * int(r.sold_wh),
                int(r.bought_wh),
                int(r.price_ticks) * int(r.bought_wh),
                retail=retail,
                feed_in=feed_in,
            )
            for r in rows
        )
        window_savings += saved
        series.append(
            {
                "interval": format_utc(t),
                "state": states.get(t, "cleared"),
                "retail_ticks": retail,
                "feed_in_ticks": feed_in,
                "price_ticks": {r.zone: int(r.price_ticks) for r in rows},
                "sold_wh": sold,
                "bought_wh": bought,
                "local_wh": sold - to_utility,
                "from_utility_wh": from_utility,
                "to_utility_wh": to_utility,
                "savings_nano": saved,
            }
        )

    by_zone: dict[str, dict[str, int]] = {
        z["id"]: {"consumer": 0, "producer": 0, "prosumer": 0, "active": 0, "inactive": 0}
        for z in zone_list
    }
    for zone, role, status, n in people:
        entry = by_zone.setdefault(
            zone, {"consumer": 0, "producer": 0, "prosumer": 0, "active": 0, "inactive": 0}
        )
        if status == "removed":
            continue
        entry[role] = entry.get(role, 0) + int(n)
        entry["active" if status == "active" else "inactive"] += int(n)
    retail_now, feed_in_now = steps.at(current)
    return {
        "grid": {
            "id": grid.grid_id,
            "name": config.name,
            "currency": config.currency,
            "interval_minutes": config.interval_minutes,
            "gate_closure_seconds": config.gate_closure_seconds,
            "ledger": str(config.ledger.kind),
            "zones": zone_list,
        },
        "clock": clock_view(grid),
        "current": {
            "interval": format_utc(current),
            "state": str(current_state or "open"),
            "next_interval": format_utc(next_open),
            "gate_closure": format_utc(gate),
            "seconds_to_gate_closure": max(int((gate - now).total_seconds()), 0),
        },
        "prices": {
            "retail": format_price(retail_now),
            "feed_in": format_price(feed_in_now),
            "retail_ticks": retail_now,
            "feed_in_ticks": feed_in_now,
        },
        "participants": {
            "total": sum(v["active"] + v["inactive"] for v in by_zone.values()),
            "active": sum(v["active"] for v in by_zone.values()),
            "by_zone": [{"zone": zone, **counts_} for zone, counts_ in by_zone.items()],
        },
        "window": {"since": format_utc(since), "until": format_utc(until), "hours": hours},
        "series": series,
        "window_savings_nano": window_savings,
        "totals": {
            "intervals_cleared": int(counts[0]),
            "intervals_settled": int(counts[1]),
            "last_cleared": None if counts[2] is None else format_utc(counts[2]),
            **totals,
        },
        "last_event": last_event,
    }


async def _market_totals(conn: AsyncConnection, steps: PriceSteps) -> dict[str, Any]:
    """Energy and savings over every cleared interval, one query per utility price step."""
    sold = bought = to_utility = from_utility = 0
    saved = 0
    for begin, end, retail, feed_in in steps.ranges():
        query = select(
            func.coalesce(func.sum(zone_results.c.sold_wh), 0),
            func.coalesce(func.sum(zone_results.c.sold_wh * zone_results.c.price_ticks), 0),
            func.coalesce(func.sum(zone_results.c.bought_wh), 0),
            func.coalesce(func.sum(zone_results.c.bought_wh * zone_results.c.price_ticks), 0),
            func.coalesce(func.sum(zone_results.c.utility_buy_wh), 0),
            func.coalesce(func.sum(zone_results.c.utility_sell_wh), 0),
        )
        if begin is not None:
            query = query.where(zone_results.c.interval_start >= begin)
        if end is not None:
            query = query.where(zone_results.c.interval_start < end)
        s, sv, b, bv, ub, us = (int(x) for x in (await conn.execute(query)).one())
        sold, bought, to_utility, from_utility = (
            sold + s,
            bought + b,
            to_utility + ub,
            from_utility + us,
        )
        saved += savings_nano(s, sv, b, bv, retail=retail, feed_in=feed_in)
    micro = nano_to_micro(saved)
    return {
        "sold_wh": sold,
        "bought_wh": bought,
        "local_wh": sold - to_utility,
        "from_utility_wh": from_utility,
        "to_utility_wh": to_utility,
        "savings_nano": str(saved),
        "savings_micro": micro,
        "savings": money(micro),
    }


# --- market view -----------------------------------------------------------------------


async def market(grid: GridService, interval: datetime | None) -> dict[str, Any]:
    """One interval: order curves per zone with the clearing point, fills and link flows.

    ``interval`` None: the last cleared one (or, before any, the next open one).
    """
    schedule = grid.schedule
    now = grid.clock.now()
    async with grid.db.read() as conn:
        recent_rows = (
            await conn.execute(
                select(intervals.c.start, intervals.c.orders)
                .where(intervals.c.state.in_(("cleared", "settled")))
                .order_by(intervals.c.start.desc())
                .limit(96)
            )
        ).all()
        recent = [r.start for r in recent_rows]
        if interval is None:
            # The latest interval that had orders (an empty one shows nothing).
            traded = [r.start for r in recent_rows if r.orders]
            if traded or recent:
                interval = (traded or recent)[0]
            else:
                interval = schedule.last_gate_closed(now) + schedule.length
        steps = await price_steps(conn)
        retail, feed_in = steps.at(interval)
        row = (
            await conn.execute(select(intervals).where(intervals.c.start == interval))
        ).one_or_none()
        zone_list = await _zones(conn)
        results = {
            r.zone: r
            for r in await conn.execute(
                select(zone_results).where(zone_results.c.interval_start == interval)
            )
        }
        levels = (
            await conn.execute(
                select(
                    orders.c.zone,
                    orders.c.side,
                    orders.c.price_ticks,
                    func.sum(orders.c.energy_wh),
                    func.count(),
                )
                .where(orders.c.interval_start == interval)
                .group_by(orders.c.zone, orders.c.side, orders.c.price_ticks)
            )
        ).all()
        fill_total = int(
            await conn.scalar(
                select(func.count()).select_from(fills).where(fills.c.interval_start == interval)
            )
            or 0
        )
        fill_rows = (
            await conn.execute(
                select(fills, participants.c.name, participants.c.address)
                .join(participants, participants.c.id == fills.c.participant_id)
                .where(fills.c.interval_start == interval)
                .order_by(fills.c.filled_wh.desc(), fills.c.zone, participants.c.name)
                .limit(MAX_FILLS)
            )
        ).all()
        earlier = await conn.scalar(
            select(func.max(zone_results.c.interval_start)).where(
                zone_results.c.interval_start < interval
            )
        )
        later = await conn.scalar(
            select(func.min(zone_results.c.interval_start)).where(
                zone_results.c.interval_start > interval
            )
        )

    curves: dict[str, dict[str, list[tuple[int, int, int]]]] = defaultdict(
        lambda: {"buy": [], "sell": []}
    )
    for zone, side, price, wh, n in levels:
        curves[zone][side].append((int(price), int(wh), int(n)))
    zone_views = []
    for z in zone_list:
        result = results.get(z["id"])
        sells = sorted(curves[z["id"]]["sell"])
        buys = sorted(curves[z["id"]]["buy"], reverse=True)
        zone_views.append(
            {
                **z,
                "orders": {
                    "sell": sum(n for _, _, n in sells),
                    "buy": sum(n for _, _, n in buys),
                },
                "supply": _steps(sells),
                "demand": _steps(buys),
                "result": None
                if result is None
                else {
                    "price": format_price(int(result.price_ticks)),
                    "price_ticks": int(result.price_ticks),
                    "bought_wh": int(result.bought_wh),
                    "sold_wh": int(result.sold_wh),
                    "utility_buy_wh": int(result.utility_buy_wh),
                    "utility_sell_wh": int(result.utility_sell_wh),
                    "flow_to_parent_wh": int(result.flow_to_parent_wh),
                },
            }
        )
    links = [
        {
            "zone": z["id"],
            "name": z["name"],
            "parent": z["parent"],
            "fee": z["fee"],
            "capacity_up_wh": z["capacity_up_wh"],
            "capacity_down_wh": z["capacity_down_wh"],
            "flow_to_parent_wh": None
            if z["id"] not in results
            else int(results[z["id"]].flow_to_parent_wh),
        }
        for z in zone_list
        if z["parent"] is not None
    ]
    return {
        "interval": format_utc(interval),
        "state": "open" if row is None else str(row.state),
        "gate_closure": format_utc(schedule.gate_closure(interval)),
        "welfare": None if row is None else row.welfare,
        "orders": None if row is None else row.orders,
        "cleared_at": None if row is None or row.cleared_at is None else format_utc(row.cleared_at),
        "settled_at": None if row is None or row.settled_at is None else format_utc(row.settled_at),
        "clearing_ms": None if row is None else row.clearing_ms,
        "retail": format_price(retail),
        "feed_in": format_price(feed_in),
        "retail_ticks": retail,
        "feed_in_ticks": feed_in,
        "zones": zone_views,
        "links": links,
        "fills": [
            {
                "participant": f.address,
                "name": f.name,
                "order_id": f.order_id,
                "side": f.side,
                "zone": f.zone,
                "energy_wh": int(f.energy_wh),
                "filled_wh": int(f.filled_wh),
                "price": format_price(int(f.price_ticks)),
                "limit_price": format_price(int(f.limit_ticks)),
            }
            for f in fill_rows
        ],
        "fills_total": fill_total,
        "previous": None if earlier is None else format_utc(earlier),
        "next": None if later is None else format_utc(later),
        "recent": [format_utc(t) for t in recent],
    }


def _steps(levels: list[tuple[int, int, int]]) -> list[list[int]]:
    """``[price_ticks, cumulative_wh]`` steps of a curve already in merit order.

    Beyond ``MAX_CURVE_STEPS`` price levels, neighbouring levels are merged
    (keeping the total energy and the curve's end points): the page draws a
    curve, not every order.
    """
    out: list[list[int]] = []
    total = 0
    stride = max(1, -(-len(levels) // MAX_CURVE_STEPS))
    for i in range(0, len(levels), stride):
        chunk = levels[i : i + stride]
        total += sum(wh for _, wh, _ in chunk)
        out.append([chunk[-1][0], total])
    return out


# --- participants ----------------------------------------------------------------------


async def participants_view(
    grid: GridService, *, limit: int = PAGE_LIMIT, offset: int = 0, zone: str | None = None
) -> dict[str, Any]:
    """Per household (one page, by zone and name): energy, money, savings, statements."""
    limit = min(max(limit, 1), PAGE_LIMIT)
    now = grid.clock.now()
    async with grid.db.read() as conn:
        base = select(participants)
        count = select(func.count()).select_from(participants)
        if zone is not None:
            base = base.where(participants.c.zone == zone)
            count = count.where(participants.c.zone == zone)
        total = int(await conn.scalar(count) or 0)
        rows = (
            await conn.execute(
                base.order_by(participants.c.zone, participants.c.name, participants.c.id)
                .limit(limit)
                .offset(max(offset, 0))
            )
        ).all()
        ids = [int(r.id) for r in rows]
        stats = await _participant_stats(conn, ids, now)
    return {
        "currency": grid.config.currency,
        "total": total,
        "limit": limit,
        "offset": max(offset, 0),
        "participants": [_participant_row(r, stats.get(int(r.id), {})) for r in rows],
    }


def _participant_row(r: Any, s: dict[str, Any]) -> dict[str, Any]:
    saved = int(s.get("savings_nano", 0))
    net = int(s.get("net_micro", 0))
    return {
        "address": r.address,
        "name": r.name,
        "zone": r.zone,
        "role": r.role,
        "status": r.status,
        "joined_at": format_utc(r.joined_at),
        "bought_wh": int(s.get("bought_wh", 0)),
        "sold_wh": int(s.get("sold_wh", 0)),
        "shortfall_wh": int(s.get("shortfall_wh", 0)),
        "surplus_wh": int(s.get("surplus_wh", 0)),
        # > 0: the household paid (net) for what it settled; < 0: it earned.
        "net_micro": net,
        "net": money(net),
        "savings_nano": saved,
        "savings_micro": nano_to_micro(saved),
        "statements": s.get(
            "statements",
            {"count": 0, "paid": 0, "open": 0, "overdue": 0, "due_micro": 0, "paid_micro": 0},
        ),
    }


async def _participant_stats(
    conn: AsyncConnection, ids: list[int], now: datetime
) -> dict[int, dict[str, Any]]:
    if not ids:
        return {}
    out: dict[int, dict[str, Any]] = defaultdict(dict)
    steps = await price_steps(conn)
    # Traded energy and savings, per utility price step (exact, see the module doc).
    for begin, end, retail, feed_in in steps.ranges():
        query = (
            select(
                fills.c.participant_id,
                fills.c.side,
                func.sum(fills.c.filled_wh),
                func.sum(fills.c.filled_wh * fills.c.price_ticks),
            )
            .where(fills.c.participant_id.in_(ids))
            .group_by(fills.c.participant_id, fills.c.side)
        )
        if begin is not None:
            query = query.where(fills.c.interval_start >= begin)
        if end is not None:
            query = query.where(fills.c.interval_start < end)
        for pid, side, wh_sum, value_sum in await conn.execute(query):
            s = out[int(pid)]
            wh, value = int(wh_sum or 0), int(value_sum or 0)
            if side == "sell":
                s["sold_wh"] = s.get("sold_wh", 0) + wh
                saved = savings_nano(wh, value, 0, 0, retail=retail, feed_in=feed_in)
            else:
                s["bought_wh"] = s.get("bought_wh", 0) + wh
                saved = savings_nano(0, 0, wh, value, retail=retail, feed_in=feed_in)
            s["savings_nano"] = s.get("savings_nano", 0) + saved
    for pid, kind, wh, amount in await conn.execute(
        select(
            line_items.c.participant_id,
            line_items.c.kind,
            func.sum(line_items.c.energy_wh),
            func.sum(line_items.c.amount_micro),
        )
        .where(line_items.c.participant_id.in_(ids))
        .group_by(line_items.c.participant_id, line_items.c.kind)
    ):
        s = out[int(pid)]
        s["net_micro"] = s.get("net_micro", 0) + int(amount or 0)
        if kind == "shortfall_retail":
            s["shortfall_wh"] = int(wh or 0)
        elif kind == "surplus_feed_in":
            s["surplus_wh"] = int(wh or 0)
    overdue = and_(
        statement_terms.c.amount_due > 0,
        statement_terms.c.paid < statement_terms.c.amount_due,
        statement_terms.c.due_at < now,
    )
    for r in await conn.execute(
        select(
            statements.c.participant_id,
            func.count(),
            func.count().filter(statements.c.status == "paid"),
            func.count().filter(statements.c.status != "paid"),
            func.count(statement_terms.c.statement_id).filter(overdue),
            func.coalesce(func.sum(statements.c.amount_due_micro), 0),
            func.coalesce(func.sum(statements.c.paid_micro), 0),
        )
        .select_from(
            statements.outerjoin(statement_terms, statement_terms.c.statement_id == statements.c.id)
        )
        .where(statements.c.participant_id.in_(ids))
        .group_by(statements.c.participant_id)
    ):
        out[int(r[0])]["statements"] = {
            "count": int(r[1]),
            "paid": int(r[2]),
            "open": int(r[3]),
            "overdue": int(r[4]),
            "due_micro": int(r[5]),
            "paid_micro": int(r[6]),
        }
    return out


async def participant_detail(grid: GridService, address: str) -> dict[str, Any] | None:
    """One household: its row, its statements with payments, its ledger balance."""
    now = grid.clock.now()
    async with grid.db.read() as conn:
        row = (
            await conn.execute(select(participants).where(participants.c.address == address))
        ).one_or_none()
        if row is None:
            return None
        pid = int(row.id)
        stats = await _participant_stats(conn, [pid], now)
        st_rows = (
            await conn.execute(
                select(statements, statement_terms.c.due_at, statement_terms.c.unit)
                .outerjoin(statement_terms, statement_terms.c.statement_id == statements.c.id)
                .where(statements.c.participant_id == pid)
                .order_by(statements.c.period_start.desc())
                .limit(200)
            )
        ).all()
        ids = [r.id for r in st_rows]
        paid_in: dict[str, list[dict[str, Any]]] = defaultdict(list)
        if ids:
            for p in await conn.execute(
                select(payments).where(payments.c.statement_id.in_(ids)).order_by(payments.c.id)
            ):
                paid_in[p.statement_id].append(
                    {
                        "direction": "in",
                        "tx_id": p.tx_id,
                        "amount": int(p.credited),
                        "at": format_utc(p.recorded_at),
                    }
                )
            from grid_server.storage.schema import payout_items  # noqa: PLC0415

            for p in await conn.execute(
                select(payout_items.c.statement_id, payout_items.c.amount, payouts)
                .join(payouts, payouts.c.id == payout_items.c.payout_id)
                .where(payout_items.c.statement_id.in_(ids))
                .order_by(payouts.c.id)
            ):
                paid_in[p.statement_id].append(
                    {
                        "direction": "out",
                        "tx_id": p.tx_id,
                        "amount": int(p.amount),
                        "state": p.state,
                        "at": None if p.completed_at is None else format_utc(p.completed_at),
                    }
                )
        balance = await conn.scalar(
            select(ledger_accounts.c.balance).where(ledger_accounts.c.address == address)
        )
    return {
        "currency": grid.config.currency,
        "participant": _participant_row(row, stats.get(pid, {})),
        "balance_micro": None if balance is None else int(balance),
        "statements": [
            {
                "id": s.id,
                "period_start": format_utc(s.period_start),
                "period_end": format_utc(s.period_end),
                "amount_due_micro": int(s.amount_due_micro),
                "paid_micro": int(s.paid_micro),
                "status": s.status,
                "issued_at": format_utc(s.issued_at),
                "due_at": None if s.due_at is None else format_utc(s.due_at),
                "overdue": s.due_at is not None
                and s.amount_due_micro > 0
                and s.paid_micro < s.amount_due_micro
                and s.due_at < now,
                "intervals": int(s.intervals),
                "payments": paid_in.get(s.id, []),
            }
            for s in st_rows
        ],
    }


# --- payments and the ledger -----------------------------------------------------------


async def payments_view(grid: GridService) -> dict[str, Any]:
    """Recent transfers, payments and payouts with their ids; balances; overdue statements."""
    now = grid.clock.now()
    grid_address = grid.payments.address
    async with grid.db.read() as conn:
        head = (
            await conn.execute(select(ledger_heads).where(ledger_heads.c.grid == grid.grid_id))
        ).one_or_none()
        balances_total = int(
            await conn.scalar(select(func.coalesce(func.sum(ledger_accounts.c.balance), 0))) or 0
        )
        accounts = int(
            await conn.scalar(
                select(func.count())
                .select_from(ledger_accounts)
                .where(ledger_accounts.c.balance > 0)
            )
            or 0
        )
        grid_balance = await conn.scalar(
            select(ledger_accounts.c.balance).where(ledger_accounts.c.address == grid_address)
        )
        entries = (
            await conn.execute(
                select(ledger_entries).order_by(ledger_entries.c.index.desc()).limit(RECENT)
            )
        ).all()
        top = (
            await conn.execute(
                select(ledger_accounts.c.address, ledger_accounts.c.balance)
                .where(ledger_accounts.c.balance > 0)
                .order_by(ledger_accounts.c.balance.desc(), ledger_accounts.c.address)
                .limit(RECENT)
            )
        ).all()
        paid = (
            await conn.execute(
                select(payments, participants.c.name, participants.c.address)
                .join(participants, participants.c.id == payments.c.participant_id)
                .order_by(payments.c.id.desc())
                .limit(RECENT)
            )
        ).all()
        paid_out = (
            await conn.execute(
                select(payouts, participants.c.name)
                .join(participants, participants.c.id == payouts.c.participant_id)
                .order_by(payouts.c.id.desc())
                .limit(RECENT)
            )
        ).all()
        by_status = {
            str(r[0]): {"count": int(r[1]), "due_micro": int(r[2]), "paid_micro": int(r[3])}
            for r in await conn.execute(
                select(
                    statements.c.status,
                    func.count(),
                    func.coalesce(func.sum(statements.c.amount_due_micro), 0),
                    func.coalesce(func.sum(statements.c.paid_micro), 0),
                ).group_by(statements.c.status)
            )
        }
        owed = (
            await conn.execute(
                select(
                    statements.c.id,
                    statements.c.period_start,
                    statements.c.amount_due_micro,
                    statements.c.paid_micro,
                    statements.c.status,
                    statement_terms.c.due_at,
                    participants.c.name,
                    participants.c.address,
                )
                .join(statement_terms, statement_terms.c.statement_id == statements.c.id)
                .join(participants, participants.c.id == statements.c.participant_id)
                .where(
                    statement_terms.c.amount_due > 0,
                    statement_terms.c.paid < statement_terms.c.amount_due,
                    statement_terms.c.due_at < now,
                )
                .order_by(statement_terms.c.due_at, statements.c.id)
                .limit(PAGE_LIMIT)
            )
        ).all()
        addresses = {e.sender for e in entries if e.sender} | {e.recipient for e in entries}
        addresses |= {a.address for a in top}
        names = await _names(conn, addresses)
    names[grid_address] = "the grid"

    def unit_of(ledger: str) -> str:
        return "nanos" if ledger == LedgerKind.IOTA else f"micro-{grid.config.currency}"

    def who(address: str | None) -> str | None:
        return None if address is None else names.get(address)

    return {
        "currency": grid.config.currency,
        "ledger": {
            "kind": str(grid.payments.kind),
            "address": grid_address,
            "unit": grid.payments.unit,
            "entries": 0 if head is None else int(head.entries),
            "minted": 0 if head is None else int(head.minted),
            "head_hash": None if head is None else bytes(head.hash).hex(),
            "balances_total": balances_total,
            "accounts": accounts,
            # The grid's balance on the local ledger (with IOTA, see the node).
            "grid_balance": None if grid_balance is None else int(grid_balance),
        },
        "transfers": [
            {
                "index": int(e._mapping["index"]),
                "tx_id": e.tx_id,
                "kind": e.kind,
                "sender": e.sender,
                "sender_name": who(e.sender),
                "recipient": e.recipient,
                "recipient_name": who(e.recipient),
                "amount": int(e.amount),
                "memo": e.memo,
                "time": format_utc_ms(e.created_at),
            }
            for e in entries
        ],
        "balances": [
            {"address": a.address, "name": who(a.address), "balance": int(a.balance)} for a in top
        ],
        "payments": [
            {
                "tx_id": p.tx_id,
                "statement": p.statement_id,
                "participant": p.address,
                "name": p.name,
                "ledger": p.ledger,
                "unit": unit_of(p.ledger),
                "received": int(p.received),
                "credited": int(p.credited),
                "recorded_at": format_utc(p.recorded_at),
            }
            for p in paid
        ],
        "payouts": [
            {
                "id": int(p.id),
                "tx_id": p.tx_id,
                "recipient": p.recipient,
                "name": p.name,
                "ledger": p.ledger,
                "unit": unit_of(p.ledger),
                "amount": int(p.amount),
                "state": p.state,
                "created_at": format_utc(p.created_at),
                "completed_at": None if p.completed_at is None else format_utc(p.completed_at),
                "error": p.error,
            }
            for p in paid_out
        ],
        "statements": by_status,
        "overdue": [
            {
                "statement": o.id,
                "participant": o.address,
                "name": o.name,
                "period_start": format_utc(o.period_start),
                "due_at": format_utc(o.due_at),
                "overdue_seconds": int((now - o.due_at).total_seconds()),
                "amount_due_micro": int(o.amount_due_micro),
                "paid_micro": int(o.paid_micro),
                "status": o.status,
            }
            for o in owed
        ],
    }


async def _names(conn: AsyncConnection, addresses: set[str]) -> dict[str, str]:
    if not addresses:
        return {}
    return {
        r.address: r.name
        for r in await conn.execute(
            select(participants.c.address, participants.c.name).where(
                participants.c.address.in_(sorted(addresses))
            )
        )
    }


# --- audit -----------------------------------------------------------------------------


async def audit_view(grid: GridService) -> dict[str, Any]:
    """The chain head, the latest log entries, interval roots and their anchoring."""
    async with grid.db.read() as conn:
        head = (
            await conn.execute(select(chain_heads).where(chain_heads.c.grid == grid.grid_id))
        ).one_or_none()
        recent = (
            await conn.execute(
                select(
                    log_entries.c.seq,
                    log_entries.c.kind,
                    log_entries.c.ref,
                    log_entries.c.hash,
                    log_entries.c.created_at,
                )
                .where(log_entries.c.grid == grid.grid_id)
                .order_by(log_entries.c.seq.desc())
                .limit(20)
            )
        ).all()
        roots_total = int(
            await conn.scalar(
                select(func.count())
                .select_from(audit_roots)
                .where(audit_roots.c.grid == grid.grid_id)
            )
            or 0
        )
        roots = (
            await conn.execute(
                select(audit_roots)
                .where(audit_roots.c.grid == grid.grid_id)
                .order_by(audit_roots.c.seq.desc())
                .limit(RECENT)
            )
        ).all()
        anchors = (
            await conn.execute(
                select(audit_anchors)
                .where(audit_anchors.c.grid == grid.grid_id)
                .order_by(audit_anchors.c.last_root_seq.desc())
                .limit(RECENT)
            )
        ).all()
        anchor_count = int(
            await conn.scalar(
                select(func.count())
                .select_from(audit_anchors)
                .where(audit_anchors.c.grid == grid.grid_id)
            )
            or 0
        )
        anchored_to = await conn.scalar(
            select(func.max(audit_anchors.c.last_root_seq)).where(
                audit_anchors.c.grid == grid.grid_id
            )
        )
        waiting = int(
            await conn.scalar(
                select(func.count())
                .select_from(audit_roots)
                .where(
                    audit_roots.c.grid == grid.grid_id,
                    audit_roots.c.seq > (anchored_to if anchored_to is not None else 0),
                )
            )
            or 0
        )
        attempts = int(
            await conn.scalar(
                select(func.count())
                .select_from(audit_anchor_attempts)
                .where(
                    audit_anchor_attempts.c.grid == grid.grid_id,
                    audit_anchor_attempts.c.last_root_seq
                    > (anchored_to if anchored_to is not None else 0),
                )
            )
            or 0
        )
        last_check = await audit_store.latest_verification(conn, grid.grid_id)
    audit = grid.config.audit
    anchoring = grid.config.ledger.kind == LedgerKind.IOTA and audit.anchor
    verification = None
    if last_check is not None:
        verification = {
            "ok": bool(last_check.ok),
            "at": format_utc(last_check.verified_at),
            "first_seq": int(last_check.first_seq),
            "last_seq": int(last_check.last_seq),
            "entries": int(last_check.entries),
            "tables_compared": bool(last_check.state_checked),
            "problem": last_check.problem,
            "seconds": round(float(last_check.seconds), 2),
        }

    def anchor_of(seq: int) -> dict[str, Any] | None:
        for a in anchors:
            if int(a.first_root_seq) <= seq <= int(a.last_root_seq):
                return {
                    "digest": a.digest,
                    "ledger": a.ledger,
                    "network": a.network,
                    "object_id": a.object_id,
                    "state_version": int(a.state_version),
                    "created_at": format_utc(a.created_at),
                }
        return None

    return {
        "grid": grid.grid_id,
        "head": None if head is None else {"seq": int(head.seq), "hash": bytes(head.hash).hex()},
        "entries": [
            {
                "seq": int(e.seq),
                "kind": e.kind,
                "ref": e.ref,
                "hash": bytes(e.hash).hex(),
                "created_at": format_utc(e.created_at),
            }
            for e in recent
        ],
        "roots_total": roots_total,
        "roots": [
            {
                "seq": int(r.seq),
                "interval_from": format_utc(r.interval_from),
                "interval_to": format_utc(r.interval_to),
                "first_seq": int(r.first_seq),
                "last_seq": int(r.last_seq),
                "entries": max(int(r.last_seq) - int(r.first_seq) + 1, 0),
                "root": bytes(r.root).hex(),
                "anchor": anchor_of(int(r.seq)),
            }
            for r in roots
        ],
        "anchoring": {
            "enabled": anchoring,
            "every": audit.anchor_every,
            "anchors": anchor_count,
            "waiting_roots": waiting,
            "pending_attempts": attempts,
            "last": None if not anchors else anchor_of(int(anchors[0].last_root_seq)),
        },
        "verification": verification,
    }


# --- live updates ----------------------------------------------------------------------


async def events_after(conn: AsyncConnection, since: int) -> dict[str, Any] | None:
    """What happened after event ``since``: counts by kind, the newest id, cleared intervals.

    One aggregate over the new rows however many households they concern
    (each household's fills and settlements are events of their own).
    """
    rows = (
        await conn.execute(
            select(events.c.kind, func.count(), func.max(events.c.id))
            .where(events.c.id > since)
            .group_by(events.c.kind)
        )
    ).all()
    if not rows:
        return None
    kinds = {str(r[0]): int(r[1]) for r in rows}
    last = max(int(r[2]) for r in rows)
    cleared: list[str] = []
    if "market_result" in kinds:
        for body in await conn.scalars(
            select(events.c.body)
            .where(
                events.c.id > since,
                events.c.id <= last,
                events.c.kind == "market_result",
                events.c.public.is_(True),
            )
            .order_by(events.c.id)
            .limit(100)
        ):
            interval = orjson.loads(body).get("interval")
            if isinstance(interval, str):
                cleared.append(interval)
    return {"last": last, "kinds": kinds, "cleared": cleared}


__all__ = [
    "DEFAULT_HOURS",
    "MAX_HOURS",
    "audit_view",
    "clock_view",
    "events_after",
    "last_event_id",
    "market",
    "money",
    "overview",
    "participant_detail",
    "participants_view",
    "payments_view",
    "savings_nano",
]
