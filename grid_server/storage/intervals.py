"""Delivery intervals and what came of them (reads): their state, the market's results
per zone, the fills, and the settlement's line items.

Ranges are half-open, ``[since, until)``, over interval starts; ``None``
leaves that end open.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from .schema import fills, intervals, line_items, participants, zone_results

CLOSED: tuple[str, ...] = ("cleared", "settled")  # the states of an interval after its gate


def _within(
    query: Select[Any],
    column: ColumnElement[datetime],
    since: datetime | None,
    until: datetime | None,
) -> Select[Any]:
    if since is not None:
        query = query.where(column >= since)
    if until is not None:
        query = query.where(column < until)
    return query


# --- intervals ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IntervalCounts:
    """Intervals cleared (settled ones included) and settled, the last cleared, their orders."""

    cleared: int
    settled: int
    last_cleared: datetime | None
    orders: int


async def counts(
    conn: AsyncConnection, since: datetime | None = None, until: datetime | None = None
) -> IntervalCounts:
    closed = intervals.c.state.in_(CLOSED)
    query = select(
        func.count().filter(closed),
        func.count().filter(intervals.c.state == "settled"),
        func.max(intervals.c.start).filter(closed),
        func.coalesce(func.sum(intervals.c.orders), 0),
    )
    row = (await conn.execute(_within(query, intervals.c.start, since, until))).one()
    return IntervalCounts(int(row[0]), int(row[1]), row[2], int(row[3]))


async def interval(conn: AsyncConnection, start: datetime) -> Any:
    """The ``intervals`` row, or None before anything happened in it."""
    return (await conn.execute(select(intervals).where(intervals.c.start == start))).one_or_none()


async def states(conn: AsyncConnection, since: datetime, until: datetime) -> dict[datetime, str]:
    query = _within(select(intervals.c.start, intervals.c.state), intervals.c.start, since, until)
    return {r.start: str(r.state) for r in await conn.execute(query)}


async def recent_closed(conn: AsyncConnection, limit: int) -> Sequence[Any]:
    """``(start, orders)`` of the latest cleared intervals, newest first."""
    return (
        await conn.execute(
            select(intervals.c.start, intervals.c.orders)
            .where(intervals.c.state.in_(CLOSED))
            .order_by(intervals.c.start.desc())
            .limit(limit)
        )
    ).all()


async def between(
    conn: AsyncConnection, since: datetime, until: datetime, limit: int
) -> Sequence[Any]:
    """``(start, state, welfare)`` of the intervals in ``[since, until)``, oldest first."""
    query = select(intervals.c.start, intervals.c.state, intervals.c.welfare)
    query = _within(query, intervals.c.start, since, until)
    return (await conn.execute(query.order_by(intervals.c.start).limit(limit))).all()


# --- zone results ------------------------------------------------------------------------


async def zone_results_at(conn: AsyncConnection, start: datetime) -> Sequence[Any]:
    """The ``zone_results`` rows of one interval, by zone."""
    return (
        await conn.execute(
            select(zone_results)
            .where(zone_results.c.interval_start == start)
            .order_by(zone_results.c.zone)
        )
    ).all()


async def zone_results_between(
    conn: AsyncConnection, since: datetime, until: datetime
) -> Sequence[Any]:
    """The ``zone_results`` rows of ``[since, until)`` by interval and zone."""
    query = _within(select(zone_results), zone_results.c.interval_start, since, until)
    return (
        await conn.execute(query.order_by(zone_results.c.interval_start, zone_results.c.zone))
    ).all()


async def neighbours(
    conn: AsyncConnection, start: datetime
) -> tuple[datetime | None, datetime | None]:
    """The cleared intervals right before and right after ``start``."""
    column = zone_results.c.interval_start
    earlier = await conn.scalar(select(func.max(column)).where(column < start))
    later = await conn.scalar(select(func.min(column)).where(column > start))
    return earlier, later


@dataclass(frozen=True, slots=True)
class ZoneTotals:
    """Sums over zone results: energy in Wh, values in ticks × Wh (10^-9 of the currency)."""

    sold_wh: int = 0
    sold_value: int = 0
    bought_wh: int = 0
    bought_value: int = 0
    utility_buy_wh: int = 0
    utility_sell_wh: int = 0


async def zone_totals(
    conn: AsyncConnection, since: datetime | None = None, until: datetime | None = None
) -> ZoneTotals:
    """What participants sold and bought in ``[since, until)``, and what the utility did."""
    z = zone_results.c
    query = select(
        func.coalesce(func.sum(z.sold_wh), 0),
        func.coalesce(func.sum(z.sold_wh * z.price_ticks), 0),
        func.coalesce(func.sum(z.bought_wh), 0),
        func.coalesce(func.sum(z.bought_wh * z.price_ticks), 0),
        func.coalesce(func.sum(z.utility_buy_wh), 0),
        func.coalesce(func.sum(z.utility_sell_wh), 0),
    )
    row = (await conn.execute(_within(query, z.interval_start, since, until))).one()
    return ZoneTotals(*(int(x) for x in row))


# --- fills -------------------------------------------------------------------------------


async def participant_fills(
    conn: AsyncConnection, pid: int, since: datetime, until: datetime, limit: int
) -> Sequence[Any]:
    query = _within(
        select(fills).where(fills.c.participant_id == pid), fills.c.interval_start, since, until
    )
    return (
        await conn.execute(query.order_by(fills.c.interval_start, fills.c.order_id).limit(limit))
    ).all()


async def participant_fills_at(conn: AsyncConnection, pid: int, start: datetime) -> Sequence[Any]:
    return (
        await conn.execute(
            select(fills)
            .where(fills.c.interval_start == start, fills.c.participant_id == pid)
            .order_by(fills.c.order_id)
        )
    ).all()


async def fill_count(conn: AsyncConnection, start: datetime) -> int:
    query = select(func.count()).select_from(fills).where(fills.c.interval_start == start)
    return int(await conn.scalar(query) or 0)


async def largest_fills(conn: AsyncConnection, start: datetime, limit: int) -> Sequence[Any]:
    """An interval's fills with the participant's ``name`` and ``address``, largest first."""
    return (
        await conn.execute(
            select(fills, participants.c.name, participants.c.address)
            .join(participants, participants.c.id == fills.c.participant_id)
            .where(fills.c.interval_start == start)
            .order_by(fills.c.filled_wh.desc(), fills.c.zone, participants.c.name)
            .limit(limit)
        )
    ).all()


async def fill_totals_by_participant(
    conn: AsyncConnection,
    ids: Sequence[int],
    since: datetime | None = None,
    until: datetime | None = None,
) -> Sequence[Any]:
    """``(participant, side, Wh, ticks × Wh)`` of the fills of ``ids`` in ``[since, until)``."""
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
    return (await conn.execute(_within(query, fills.c.interval_start, since, until))).all()


# --- line items --------------------------------------------------------------------------


async def participant_lines(
    conn: AsyncConnection, pid: int, since: datetime, until: datetime, limit: int
) -> Sequence[Any]:
    query = _within(
        select(line_items).where(line_items.c.participant_id == pid),
        line_items.c.interval_start,
        since,
        until,
    )
    return (
        await conn.execute(
            query.order_by(line_items.c.interval_start, line_items.c.id).limit(limit)
        )
    ).all()


async def line_totals_by_participant(conn: AsyncConnection, ids: Sequence[int]) -> Sequence[Any]:
    """``(participant, kind, Wh, micro)`` of every line item of ``ids``."""
    return (
        await conn.execute(
            select(
                line_items.c.participant_id,
                line_items.c.kind,
                func.sum(line_items.c.energy_wh),
                func.sum(line_items.c.amount_micro),
            )
            .where(line_items.c.participant_id.in_(ids))
            .group_by(line_items.c.participant_id, line_items.c.kind)
        )
    ).all()


async def line_totals_by_interval(
    conn: AsyncConnection, since: datetime, until: datetime
) -> Sequence[Any]:
    """``(interval, micro)``: what the line items of each interval add up to (0 balances)."""
    query = select(line_items.c.interval_start, func.sum(line_items.c.amount_micro))
    query = _within(query, line_items.c.interval_start, since, until)
    return (await conn.execute(query.group_by(line_items.c.interval_start))).all()


async def line_totals_by_kind(
    conn: AsyncConnection, since: datetime, until: datetime
) -> Sequence[Any]:
    """``(kind, own, Wh, micro)``; ``own``: the grid's and the utility's lines (no participant)."""
    own = line_items.c.participant_id.is_(None)
    query = select(
        line_items.c.kind,
        own.label("own"),
        func.sum(line_items.c.energy_wh),
        func.sum(line_items.c.amount_micro),
    )
    query = _within(query, line_items.c.interval_start, since, until)
    return (await conn.execute(query.group_by(line_items.c.kind, own))).all()


async def shared_by_interval(
    conn: AsyncConnection, since: datetime | None = None, until: datetime | None = None
) -> dict[datetime, int]:
    """Energy shared after delivery per settled interval (its ``shared_in`` lines), in Wh."""
    query = select(line_items.c.interval_start, func.sum(line_items.c.energy_wh)).where(
        line_items.c.kind == "shared_in"
    )
    query = _within(query, line_items.c.interval_start, since, until)
    rows = (await conn.execute(query.group_by(line_items.c.interval_start))).all()
    return {t: int(wh) for t, wh in rows}


async def shared_line_totals(
    conn: AsyncConnection, since: datetime, until: datetime
) -> Sequence[Any]:
    """``(interval, kind, Wh, micro)`` of the participants' shared lines per interval."""
    query = select(
        line_items.c.interval_start,
        line_items.c.kind,
        func.sum(line_items.c.energy_wh),
        func.sum(line_items.c.amount_micro),
    ).where(line_items.c.kind.in_(("shared_in", "shared_out")))
    query = _within(query, line_items.c.interval_start, since, until)
    return (
        await conn.execute(query.group_by(line_items.c.interval_start, line_items.c.kind))
    ).all()


async def shared_total(conn: AsyncConnection) -> int:
    """Energy shared after delivery over every settled interval, in Wh."""
    query = select(func.coalesce(func.sum(line_items.c.energy_wh), 0)).where(
        line_items.c.kind == "shared_in"
    )
    return int(await conn.scalar(query) or 0)


async def utility_owed(conn: AsyncConnection, since: datetime, until: datetime) -> int:
    """What the utility's line items in ``[since, until)`` add up to (> 0: it owes the grid)."""
    query = select(func.coalesce(func.sum(line_items.c.amount_micro), 0)).where(
        line_items.c.participant_id.is_(None), line_items.c.kind.like("utility:%")
    )
    query = _within(query, line_items.c.interval_start, since, until)
    return int(await conn.scalar(query) or 0)


__all__ = [
    "CLOSED",
    "IntervalCounts",
    "ZoneTotals",
    "between",
    "counts",
    "fill_count",
    "fill_totals_by_participant",
    "interval",
    "largest_fills",
    "line_totals_by_interval",
    "line_totals_by_kind",
    "line_totals_by_participant",
    "neighbours",
    "participant_fills",
    "participant_fills_at",
    "participant_lines",
    "recent_closed",
    "shared_by_interval",
    "shared_line_totals",
    "shared_total",
    "states",
    "utility_owed",
    "zone_results_at",
    "zone_results_between",
]
