"""Meter readings and their corrections (reads)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from .schema import intervals, reading_history, readings


async def participant_readings(
    conn: AsyncConnection, pid: int, since: datetime, until: datetime, limit: int
) -> Sequence[Any]:
    """The participant's readings in ``[since, until)`` with how often each was corrected."""
    corrections = (
        select(func.count())
        .where(
            reading_history.c.participant_id == readings.c.participant_id,
            reading_history.c.interval_start == readings.c.interval_start,
            reading_history.c.asset_id == readings.c.asset_id,
        )
        .scalar_subquery()
    )
    return (
        await conn.execute(
            select(readings, corrections.label("corrections"))
            .where(
                readings.c.participant_id == pid,
                readings.c.interval_start >= since,
                readings.c.interval_start < until,
            )
            .order_by(readings.c.interval_start, readings.c.asset_id)
            .limit(limit)
        )
    ).all()


async def count(
    conn: AsyncConnection, since: datetime | None = None, until: datetime | None = None
) -> int:
    """How many readings (of the intervals in ``[since, until)``) are stored."""
    query = select(func.count()).select_from(readings)
    if since is not None:
        query = query.where(readings.c.interval_start >= since)
    if until is not None:
        query = query.where(readings.c.interval_start < until)
    return int(await conn.scalar(query) or 0)


async def net_export_of_settled(
    conn: AsyncConnection, since: datetime, until: datetime, sources: Collection[str]
) -> Sequence[Any]:
    """``(interval, participant, net Wh)`` over the settled intervals in ``[since, until)``.

    Net is what the assets named in ``sources`` produced minus what every
    other asset (a meter) consumed: > 0 the participant exported.
    """
    settled = select(intervals.c.start).where(
        intervals.c.state == "settled", intervals.c.start >= since, intervals.c.start < until
    )
    return (
        await conn.execute(
            select(
                readings.c.interval_start,
                readings.c.participant_id,
                func.sum(
                    case(
                        (readings.c.asset_id.in_(tuple(sources)), readings.c.energy_wh),
                        else_=-readings.c.energy_wh,
                    )
                ),
            )
            .where(readings.c.interval_start.in_(settled))
            .group_by(readings.c.interval_start, readings.c.participant_id)
        )
    ).all()


__all__ = ["count", "net_export_of_settled", "participant_readings"]
