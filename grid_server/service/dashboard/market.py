"""One interval: order curves per zone with the clearing point, fills and link flows."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from grid_server.domain.schedule import Schedule
from grid_server.storage import grid_setup, orders
from grid_server.storage import intervals as stored_intervals
from p2p_energy_client.units import format_price, format_utc

from .common import MAX_CURVE_STEPS, MAX_FILLS, zone_view
from .savings import price_steps
from .source import Source

RECENT_INTERVALS = 96  # offered for navigation: a day of quarter hours

Level = tuple[int, int, int]  # price ticks, Wh, orders


@dataclass(frozen=True, slots=True)
class MarketRows:
    interval: datetime
    recent: list[datetime]
    prices: tuple[int, int]  # retail, feed-in ticks in force
    row: Any  # the ``intervals`` row, None while open
    zones: list[dict[str, Any]]
    results: dict[str, Any]  # zone → its ``zone_results`` row
    levels: Sequence[Any]
    fills_total: int
    fills: Sequence[Any]
    previous: datetime | None
    next: datetime | None


def pick_interval(recent: Sequence[Any], schedule: Schedule, now: datetime) -> datetime:
    """The latest cleared interval that had orders (an empty one shows nothing), else the
    latest cleared one, else the next one still open."""
    traded: list[datetime] = [r.start for r in recent if r.orders]
    if traded:
        return traded[0]
    if recent:
        latest: datetime = recent[0].start
        return latest
    return schedule.last_gate_closed(now) + schedule.length


async def fetch(
    conn: AsyncConnection, interval: datetime | None, schedule: Schedule, now: datetime
) -> MarketRows:
    recent = await stored_intervals.recent_closed(conn, RECENT_INTERVALS)
    if interval is None:
        interval = pick_interval(recent, schedule, now)
    steps = await price_steps(conn)
    return MarketRows(
        interval,
        [r.start for r in recent],
        steps.at(interval),
        await stored_intervals.interval(conn, interval),
        [zone_view(z) for z in await grid_setup.zone_rows(conn, roots_first=True)],
        {r.zone: r for r in await stored_intervals.zone_results_at(conn, interval)},
        await orders.price_levels(conn, interval),
        await stored_intervals.fill_count(conn, interval),
        await stored_intervals.largest_fills(conn, interval, MAX_FILLS),
        *await stored_intervals.neighbours(conn, interval),
    )


async def market(source: Source, interval: datetime | None) -> dict[str, Any]:
    """One interval (``None``: the latest that traded, see :func:`pick_interval`)."""
    async with source.db.read() as conn:
        rows = await fetch(conn, interval, source.schedule, source.clock.now())
    return build(rows, source.schedule)


# --- builders ----------------------------------------------------------------------------


def build(rows: MarketRows, schedule: Schedule) -> dict[str, Any]:
    retail, feed_in = rows.prices
    return {
        "interval": format_utc(rows.interval),
        **_state(rows.row),
        "gate_closure": format_utc(schedule.gate_closure(rows.interval)),
        **_timing(rows.row),
        "retail": format_price(retail),
        "feed_in": format_price(feed_in),
        "retail_ticks": retail,
        "feed_in_ticks": feed_in,
        "zones": zone_curves(rows.zones, rows.results, rows.levels),
        "links": links(rows.zones, rows.results),
        "fills": [fill_view(f) for f in rows.fills],
        "fills_total": rows.fills_total,
        "previous": _time(rows.previous),
        "next": _time(rows.next),
        "recent": [format_utc(t) for t in rows.recent],
    }


def _time(t: datetime | None) -> str | None:
    return None if t is None else format_utc(t)


def _state(row: Any) -> dict[str, Any]:
    return {"state": "open" if row is None else str(row.state)}


def _timing(row: Any) -> dict[str, Any]:
    if row is None:
        return dict.fromkeys(("welfare", "orders", "cleared_at", "settled_at", "clearing_ms"), None)
    return {
        "welfare": row.welfare,
        "orders": row.orders,
        "cleared_at": _time(row.cleared_at),
        "settled_at": _time(row.settled_at),
        "clearing_ms": row.clearing_ms,
    }


def zone_curves(
    zones: list[dict[str, Any]], results: dict[str, Any], levels: Sequence[Any]
) -> list[dict[str, Any]]:
    """Each zone with its supply and demand curves and its clearing result."""
    curves: dict[str, dict[str, list[Level]]] = defaultdict(lambda: {"buy": [], "sell": []})
    for zone, side, price, wh, n in levels:
        curves[zone][side].append((int(price), int(wh), int(n)))
    out = []
    for z in zones:
        sells = sorted(curves[z["id"]]["sell"])
        buys = sorted(curves[z["id"]]["buy"], reverse=True)
        out.append(
            {
                **z,
                "orders": {"sell": sum(n for _, _, n in sells), "buy": sum(n for _, _, n in buys)},
                "supply": curve_steps(sells),
                "demand": curve_steps(buys),
                "result": result_view(results.get(z["id"])),
            }
        )
    return out


def result_view(result: Any) -> dict[str, Any] | None:
    if result is None:
        return None
    return {
        "price": format_price(int(result.price_ticks)),
        "price_ticks": int(result.price_ticks),
        "bought_wh": int(result.bought_wh),
        "sold_wh": int(result.sold_wh),
        "utility_buy_wh": int(result.utility_buy_wh),
        "utility_sell_wh": int(result.utility_sell_wh),
        "flow_to_parent_wh": int(result.flow_to_parent_wh),
    }


def links(zones: list[dict[str, Any]], results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each zone's link to its parent with the energy that crossed it."""
    return [
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
        for z in zones
        if z["parent"] is not None
    ]


def fill_view(f: Any) -> dict[str, Any]:
    return {
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


def curve_steps(levels: list[Level]) -> list[list[int]]:
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


__all__ = ["MarketRows", "build", "curve_steps", "fetch", "market", "pick_interval"]
