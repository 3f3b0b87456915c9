"""The queries of the interval cycle (``grid_server.service.cycle``): clear, settle, issue.

Each step of the cycle runs in one transaction of the caller; the state
changes here are compare-and-set (``open → cleared → settled``), so a step
that lost a race changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from grid_server.domain import market
from p2p_energy_client.units import format_utc

from .schema import (
    fills,
    grid_state,
    intervals,
    line_items,
    orders,
    participants,
    periods,
    statements,
    utility_prices,
    zone_results,
    zones,
)

# Ids per ``IN (...)`` list: a query may have at most 32,767 parameters (asyncpg).
IN_LIST_SLICE = 10_000


@dataclass(frozen=True, slots=True)
class Prices:
    retail_ticks: int
    feed_in_ticks: int


@dataclass(frozen=True, slots=True)
class Progress:
    """Where the cycle stands: its first interval, the last cleared, the first unsettled."""

    cycle_from: datetime | None
    last_cleared: datetime | None
    first_unsettled: datetime | None


async def cycle_from(conn: AsyncConnection, grid: str) -> datetime | None:
    """The first interval the cycle is responsible for (None before the grid was seeded)."""
    value: datetime | None = await conn.scalar(
        select(grid_state.c.cycle_from).where(grid_state.c.grid == grid)
    )
    return value


async def grid_started(conn: AsyncConnection, grid: str) -> datetime | None:
    """When the grid was first started (None before it was seeded)."""
    value: datetime | None = await conn.scalar(
        select(grid_state.c.created_at).where(grid_state.c.grid == grid)
    )
    return value


async def progress(conn: AsyncConnection, grid: str) -> Progress:
    last_cleared = await conn.scalar(
        select(func.max(intervals.c.start)).where(intervals.c.state.in_(("cleared", "settled")))
    )
    first_unsettled = await conn.scalar(
        select(func.min(intervals.c.start)).where(intervals.c.state == "cleared")
    )
    return Progress(await cycle_from(conn, grid), last_cleared, first_unsettled)


async def interval_state(conn: AsyncConnection, t: datetime) -> str | None:
    state: str | None = await conn.scalar(select(intervals.c.state).where(intervals.c.start == t))
    return state


async def ensure_interval(conn: AsyncConnection, t: datetime) -> str:
    """The interval's state, inserting it ``open`` when it has no row yet."""
    state = await interval_state(conn, t)
    if state is None:
        await conn.execute(insert(intervals).values(start=t, state="open"))
        return "open"
    return state


async def move_interval(
    conn: AsyncConnection, t: datetime, from_state: str, step: str, **values: Any
) -> None:
    """Compare-and-set the interval's state at the end of ``step`` (``values``: the new one)."""
    changed = await conn.execute(
        update(intervals)
        .where(intervals.c.start == t, intervals.c.state == from_state)
        .values(**values)
    )
    if changed.rowcount != 1:
        raise RuntimeError(f"interval {t} changed state during {step}")


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


# --- clearing ---------------------------------------------------------------------


async def book_orders(conn: AsyncConnection, t: datetime) -> Sequence[Row[Any]]:
    """The orders of active participants for ``t``, in a stable order (ties are broken by it)."""
    return (
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


async def insert_clearing(
    conn: AsyncConnection, zone_rows: list[dict[str, Any]], fill_rows: list[dict[str, Any]]
) -> None:
    await conn.execute(insert(zone_results), zone_rows)
    if fill_rows:
        await conn.execute(insert(fills), fill_rows)


# --- settlement -------------------------------------------------------------------


async def cleared_zones(conn: AsyncConnection, t: datetime) -> Sequence[Row[Any]]:
    return (
        await conn.execute(select(zone_results).where(zone_results.c.interval_start == t))
    ).all()


async def cleared_fills(conn: AsyncConnection, t: datetime) -> Sequence[Row[Any]]:
    return (
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


async def addresses_and_zones(
    conn: AsyncConnection, pids: Iterable[int]
) -> tuple[dict[int, str], dict[int, str]]:
    """The participants' addresses and zones, by id."""
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
    return addresses, zone_of


async def insert_line_items(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    await conn.execute(insert(line_items), rows)


# --- statements -------------------------------------------------------------------


async def settled_until(conn: AsyncConnection) -> tuple[datetime | None, datetime | None]:
    """(the last settled interval, the first one not settled yet)."""
    last_settled = await conn.scalar(
        select(func.max(intervals.c.start)).where(intervals.c.state == "settled")
    )
    first_open = await conn.scalar(
        select(func.min(intervals.c.start)).where(intervals.c.state != "settled")
    )
    return last_settled, first_open


async def last_period(conn: AsyncConnection) -> datetime | None:
    value: datetime | None = await conn.scalar(select(func.max(periods.c.start)))
    return value


async def periods_issued(conn: AsyncConnection, since: datetime, until: datetime) -> int:
    """How many settlement periods starting in ``[since, until)`` were issued."""
    count = await conn.scalar(
        select(func.count()).where(periods.c.start >= since, periods.c.start < until)
    )
    return int(count or 0)


async def claim_period(conn: AsyncConnection, start: datetime, now: datetime) -> bool:
    """Insert the period as issued; False when it was issued already."""
    if await conn.scalar(select(periods.c.start).where(periods.c.start == start)) is not None:
        return False
    await conn.execute(insert(periods).values(start=start, state="issued", issued_at=now))
    return True


async def period_totals(
    conn: AsyncConnection, start: datetime, end: datetime
) -> Sequence[Row[Any]]:
    """Per participant with line items in ``[start, end)``: the sum due and the intervals."""
    return (
        await conn.execute(
            select(
                line_items.c.participant_id,
                func.sum(line_items.c.amount_micro).label("due"),
                func.count(func.distinct(line_items.c.interval_start)).label("n"),
                participants.c.address,
            )
            .join(participants, participants.c.id == line_items.c.participant_id)
            .where(line_items.c.interval_start >= start, line_items.c.interval_start < end)
            .group_by(line_items.c.participant_id, participants.c.address)
            .order_by(line_items.c.participant_id)
        )
    ).all()


async def insert_statements(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    await conn.execute(insert(statements), rows)
