"""Orders: a participant's book for an interval, and an interval's price levels (reads)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from .schema import orders


async def participant_orders(conn: AsyncConnection, pid: int, interval: datetime) -> Sequence[Any]:
    """The participant's orders for ``interval`` by side and order id."""
    return (
        await conn.execute(
            select(orders)
            .where(orders.c.interval_start == interval, orders.c.participant_id == pid)
            .order_by(orders.c.side, orders.c.order_id)
        )
    ).all()


async def price_levels(conn: AsyncConnection, interval: datetime) -> Sequence[Any]:
    """``(zone, side, price_ticks, energy_wh, orders)`` per price level of ``interval``."""
    return (
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


__all__ = ["participant_orders", "price_levels"]
