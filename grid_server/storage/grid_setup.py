"""The grid's set-up as the operator keeps it: which grids the database holds, their zones and
the utility's price steps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import inspect, select
from sqlalchemy.ext.asyncio import AsyncConnection

from .schema import grid_state, utility_prices, zones


async def grid_ids(conn: AsyncConnection) -> list[str] | None:
    """The grids this database holds (each made by its first start); None when it has no
    grid tables at all (an empty or another program's database)."""
    if not await conn.run_sync(lambda sync: inspect(sync).has_table(grid_state.name)):
        return None
    return list(await conn.scalars(select(grid_state.c.grid).order_by(grid_state.c.grid)))


async def price_rows(conn: AsyncConnection) -> Sequence[Any]:
    """Every ``utility_prices`` step, oldest first."""
    return (
        await conn.execute(select(utility_prices).order_by(utility_prices.c.effective_from))
    ).all()


async def zone_rows(conn: AsyncConnection, *, roots_first: bool = False) -> Sequence[Any]:
    """Every zone by id (``roots_first``: the zones without a parent before the others)."""
    query = select(zones)
    if roots_first:
        query = query.order_by(zones.c.parent.is_not(None))
    return (await conn.execute(query.order_by(zones.c.id))).all()


__all__ = ["grid_ids", "price_rows", "zone_rows"]
