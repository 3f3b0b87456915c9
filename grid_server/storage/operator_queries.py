"""The queries of the operator's tools (``grid_server.service.operator``) and of seeding
the grid from its config file (``grid_server.service.wiring``): invitations,
participants' status, utility prices, zones, intervals."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from .schema import (
    fills,
    grid_state,
    intervals,
    invitations,
    orders,
    participants,
    readings,
    utility_prices,
    zone_results,
    zones,
)

# --- invitations ------------------------------------------------------------------


async def insert_invitations(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    await conn.execute(insert(invitations), rows)


async def revoke_invitation(conn: AsyncConnection, digest: bytes, now: datetime) -> bool:
    """Revoke the invitation with this code hash; False when there is no unrevoked one."""
    result = await conn.execute(
        update(invitations)
        .where(invitations.c.code_hash == digest, invitations.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return result.rowcount == 1


async def all_invitations(conn: AsyncConnection) -> Sequence[Row[Any]]:
    return (await conn.execute(select(invitations).order_by(invitations.c.created_at))).all()


async def latest_invitations(conn: AsyncConnection, limit: int) -> Sequence[Row[Any]]:
    """The ``limit`` invitations issued last, newest first."""
    query = select(invitations).order_by(invitations.c.created_at.desc(), invitations.c.hint)
    return (await conn.execute(query.limit(limit))).all()


async def invitation_count(conn: AsyncConnection) -> int:
    return int(await conn.scalar(select(func.count()).select_from(invitations)) or 0)


# --- participants -----------------------------------------------------------------


async def all_participants(conn: AsyncConnection) -> Sequence[Row[Any]]:
    return (await conn.execute(select(participants).order_by(participants.c.id))).all()


async def participant_status(conn: AsyncConnection, address: str) -> str | None:
    status: str | None = await conn.scalar(
        select(participants.c.status).where(participants.c.address == address)
    )
    return status


async def set_participant_status(
    conn: AsyncConnection, address: str, status: str, now: datetime
) -> None:
    await conn.execute(
        update(participants)
        .where(participants.c.address == address)
        .values(status=status, status_changed_at=now)
    )


# --- prices -----------------------------------------------------------------------


async def price_dates(conn: AsyncConnection) -> set[datetime]:
    """When each stored price step takes effect."""
    return set((await conn.scalars(select(utility_prices.c.effective_from))).all())


async def insert_price(
    conn: AsyncConnection, effective_from: datetime, values: dict[str, Any]
) -> None:
    await conn.execute(insert(utility_prices).values(effective_from=effective_from, **values))


async def put_price(
    conn: AsyncConnection, effective_from: datetime, values: dict[str, Any]
) -> None:
    """Add the price step from ``effective_from`` or replace the one stored for it."""
    exists = await conn.scalar(
        select(utility_prices.c.effective_from).where(
            utility_prices.c.effective_from == effective_from
        )
    )
    if exists is None:
        await insert_price(conn, effective_from, values)
    else:
        await conn.execute(
            update(utility_prices)
            .where(utility_prices.c.effective_from == effective_from)
            .values(**values)
        )


# --- zones ------------------------------------------------------------------------


async def zone(conn: AsyncConnection, zone_id: str) -> Row[Any] | None:
    return (await conn.execute(select(zones).where(zones.c.id == zone_id))).one_or_none()


async def zone_exists(conn: AsyncConnection, zone_id: str) -> bool:
    return await conn.scalar(select(zones.c.id).where(zones.c.id == zone_id)) is not None


async def zone_parent(conn: AsyncConnection, zone_id: str) -> str | None:
    parent: str | None = await conn.scalar(select(zones.c.parent).where(zones.c.id == zone_id))
    return parent


async def zone_ids(conn: AsyncConnection) -> set[str]:
    return set((await conn.scalars(select(zones.c.id))).all())


async def insert_zone(conn: AsyncConnection, zone_id: str, values: dict[str, Any]) -> None:
    await conn.execute(insert(zones).values(id=zone_id, **values))


async def update_zone(conn: AsyncConnection, zone_id: str, values: dict[str, Any]) -> None:
    await conn.execute(update(zones).where(zones.c.id == zone_id).values(**values))


# --- the grid ---------------------------------------------------------------------


async def ensure_grid_state(
    conn: AsyncConnection, grid: str, cycle_from: datetime, now: datetime
) -> None:
    """The grid's row, made on first start: its cycle begins at ``cycle_from``."""
    if await conn.scalar(select(grid_state.c.grid).where(grid_state.c.grid == grid)) is None:
        await conn.execute(
            insert(grid_state).values(grid=grid, cycle_from=cycle_from, created_at=now)
        )


# --- intervals --------------------------------------------------------------------


async def intervals_between(
    conn: AsyncConnection, since: datetime, until: datetime, limit: int
) -> Sequence[Row[Any]]:
    return (
        await conn.execute(
            select(intervals)
            .where(intervals.c.start >= since, intervals.c.start < until)
            .order_by(intervals.c.start)
            .limit(limit)
        )
    ).all()


async def interval_counts(
    conn: AsyncConnection, t: datetime
) -> tuple[Row[Any] | None, int, int, int]:
    """Interval ``t``'s row (None before it is cleared), its orders, readings and Wh filled."""
    row = (await conn.execute(select(intervals).where(intervals.c.start == t))).one_or_none()
    n_orders = await conn.scalar(
        select(func.count()).select_from(orders).where(orders.c.interval_start == t)
    )
    n_readings = await conn.scalar(
        select(func.count()).select_from(readings).where(readings.c.interval_start == t)
    )
    filled = await conn.scalar(
        select(func.coalesce(func.sum(fills.c.filled_wh), 0)).where(fills.c.interval_start == t)
    )
    return row, int(n_orders or 0), int(n_readings or 0), int(filled or 0)


async def interval_zones(conn: AsyncConnection, t: datetime) -> Sequence[Row[Any]]:
    return (
        await conn.execute(
            select(zone_results)
            .where(zone_results.c.interval_start == t)
            .order_by(zone_results.c.zone)
        )
    ).all()
