"""The grid's set-up as the operator keeps it: its zones and the utility's price steps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from .schema import utility_prices, zones


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


__all__ = ["price_rows", "zone_rows"]
