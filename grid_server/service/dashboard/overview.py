"""The overview: now, the next gate closure, participants by zone, the market's recent past."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from grid_server.domain.schedule import Schedule
from grid_server.storage import events, grid_setup, participants
from grid_server.storage import intervals as stored_intervals
from grid_server.storage.intervals import IntervalCounts
from p2p_energy_client.units import format_price, format_utc

from .common import DEFAULT_HOURS, MAX_HOURS, money, shown_micro, zone_view
from .live import clock_view
from .savings import MarketTotals, PriceSteps, market_totals, price_steps
from .source import Source

ROLES = ("consumer", "producer", "prosumer")


@dataclass(frozen=True, slots=True)
class Window:
    """The current interval, the next one still taking orders, and the hours shown."""

    now: datetime
    current: datetime
    next_open: datetime
    gate: datetime
    since: datetime
    until: datetime
    hours: int

    @classmethod
    def at(cls, schedule: Schedule, now: datetime, hours: int) -> Window:
        hours = min(max(hours, 1), MAX_HOURS)
        next_open = schedule.last_gate_closed(now) + schedule.length
        # Up to the last interval whose gate has closed (it may start after now).
        until = next_open
        return cls(
            now,
            schedule.start_of(now),
            next_open,
            schedule.gate_closure(next_open),
            until - timedelta(hours=hours),
            until,
            hours,
        )


@dataclass(frozen=True, slots=True)
class OverviewRows:
    steps: PriceSteps
    zones: list[dict[str, Any]]
    states: dict[datetime, str]
    current_state: str | None
    counts: IntervalCounts
    results: Sequence[Any]
    totals: MarketTotals
    people: Sequence[Any]
    last_event: int
    shared: dict[datetime, int]  # Wh shared after delivery per settled interval in the window
    shared_total: int  # ... over every settled interval


async def fetch(conn: AsyncConnection, window: Window) -> OverviewRows:
    steps = await price_steps(conn)
    current = await stored_intervals.interval(conn, window.current)
    return OverviewRows(
        steps,
        [zone_view(z) for z in await grid_setup.zone_rows(conn, roots_first=True)],
        await stored_intervals.states(conn, window.since, window.until),
        None if current is None else str(current.state),
        await stored_intervals.counts(conn),
        await stored_intervals.zone_results_between(conn, window.since, window.until),
        await market_totals(conn, steps),
        await participants.counts_by_zone(conn),
        await events.last_event_id(conn),
        await stored_intervals.shared_by_interval(conn, window.since, window.until),
        await stored_intervals.shared_total(conn),
    )


async def overview(source: Source, hours: int = DEFAULT_HOURS) -> dict[str, Any]:
    """Now, the next gate closure, participants by zone, and the last ``hours`` of the market."""
    window = Window.at(source.schedule, source.clock.now(), hours)
    async with source.db.read() as conn:
        rows = await fetch(conn, window)
    return build(source, window, rows)


# --- builders ----------------------------------------------------------------------------


def build(source: Source, window: Window, rows: OverviewRows) -> dict[str, Any]:
    series = market_series(rows.results, rows.steps, rows.states, rows.shared)
    retail_now, feed_in_now = rows.steps.at(window.current)
    counts = rows.counts
    return {
        "grid": grid_view(source, rows.zones),
        "clock": clock_view(source.clock),
        "current": current_view(window, rows.current_state),
        "prices": {
            "retail": format_price(retail_now),
            "feed_in": format_price(feed_in_now),
            "retail_ticks": retail_now,
            "feed_in_ticks": feed_in_now,
        },
        "participants": participant_counts(rows.zones, rows.people),
        "window": {
            "since": format_utc(window.since),
            "until": format_utc(window.until),
            "hours": window.hours,
        },
        "series": series,
        "window_savings_nano": sum(point["savings_nano"] for point in series),
        "totals": {
            "intervals_cleared": counts.cleared,
            "intervals_settled": counts.settled,
            "last_cleared": None
            if counts.last_cleared is None
            else format_utc(counts.last_cleared),
            **totals_view(rows.totals),
            **sharing_view(rows.totals, rows.shared_total),
        },
        "last_event": rows.last_event,
    }


def grid_view(source: Source, zones: list[dict[str, Any]]) -> dict[str, Any]:
    config = source.config
    return {
        "id": source.grid_id,
        "name": config.name,
        "currency": config.currency,
        "interval_minutes": config.interval_minutes,
        "gate_closure_seconds": config.gate_closure_seconds,
        "ledger": str(config.ledger.kind),
        "zones": zones,
        "sharing": config.sharing.info().to_wire(),
    }


def current_view(window: Window, state: str | None) -> dict[str, Any]:
    return {
        "interval": format_utc(window.current),
        "state": str(state or "open"),
        "next_interval": format_utc(window.next_open),
        "gate_closure": format_utc(window.gate),
        "seconds_to_gate_closure": max(int((window.gate - window.now).total_seconds()), 0),
    }


def totals_view(totals: MarketTotals) -> dict[str, Any]:
    """Energy and savings over every cleared interval (savings also as text: may exceed 2^53)."""
    micro = shown_micro(totals.savings_nano)
    return {
        "sold_wh": totals.sold_wh,
        "bought_wh": totals.bought_wh,
        "local_wh": totals.local_wh,
        "from_utility_wh": totals.from_utility_wh,
        "to_utility_wh": totals.to_utility_wh,
        "savings_nano": str(totals.savings_nano),
        "savings_micro": micro,
        "savings": money(micro),
    }


def sharing_view(totals: MarketTotals, shared_wh: int) -> dict[str, Any]:
    """Energy shared after delivery, and with what the market matched, what stayed local."""
    return {"shared_wh": shared_wh, "neighbourhood_wh": totals.local_wh + shared_wh}


def market_series(
    results: Sequence[Any],
    steps: PriceSteps,
    states: dict[datetime, str],
    shared: dict[datetime, int],
) -> list[dict[str, Any]]:
    """One point per cleared interval from its zone results, oldest first; with the
    energy shared after delivery once the interval is settled."""
    by_interval: dict[datetime, list[Any]] = defaultdict(list)
    for row in results:
        by_interval[row.interval_start].append(row)
    series = []
    for t in sorted(by_interval):
        zones = by_interval[t]
        retail, feed_in = steps.at(t)
        point = MarketTotals().plus(
            stored_intervals.ZoneTotals(
                sum(int(r.sold_wh) for r in zones),
                sum(int(r.price_ticks) * int(r.sold_wh) for r in zones),
                sum(int(r.bought_wh) for r in zones),
                sum(int(r.price_ticks) * int(r.bought_wh) for r in zones),
                sum(int(r.utility_buy_wh) for r in zones),
                sum(int(r.utility_sell_wh) for r in zones),
            ),
            retail=retail,
            feed_in=feed_in,
        )
        series.append(
            {
                "interval": format_utc(t),
                "state": states.get(t, "cleared"),
                "retail_ticks": retail,
                "feed_in_ticks": feed_in,
                "price_ticks": {r.zone: int(r.price_ticks) for r in zones},
                "sold_wh": point.sold_wh,
                "bought_wh": point.bought_wh,
                "local_wh": point.local_wh,
                "from_utility_wh": point.from_utility_wh,
                "to_utility_wh": point.to_utility_wh,
                "shared_wh": shared.get(t, 0),
                "savings_nano": point.savings_nano,
            }
        )
    return series


def participant_counts(zones: list[dict[str, Any]], people: Sequence[Any]) -> dict[str, Any]:
    """Members by zone and role, active or not (removed ones are not counted)."""

    def empty() -> dict[str, int]:
        return {**dict.fromkeys(ROLES, 0), "active": 0, "inactive": 0}

    by_zone: dict[str, dict[str, int]] = {z["id"]: empty() for z in zones}
    for zone, role, status, n in people:
        entry = by_zone.setdefault(zone, empty())
        if status == "removed":
            continue
        entry[role] = entry.get(role, 0) + int(n)
        entry["active" if status == "active" else "inactive"] += int(n)
    return {
        "total": sum(v["active"] + v["inactive"] for v in by_zone.values()),
        "active": sum(v["active"] for v in by_zone.values()),
        "by_zone": [{"zone": zone, **counts} for zone, counts in by_zone.items()],
    }


__all__ = ["OverviewRows", "Window", "build", "fetch", "overview", "totals_view"]
