"""The ``events`` table (reads): what live listeners are sent."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from .schema import events


async def last_event_id(conn: AsyncConnection) -> int:
    return int(await conn.scalar(select(func.coalesce(func.max(events.c.id), 0))) or 0)


async def visible_after(
    conn: AsyncConnection, pid: int | None, since: int, limit: int
) -> Sequence[Any]:
    """Events after ``since``: the participant's own and the public ones; for None (the
    operator) the public ones and those for the operator only (no participant, not public)."""
    visible: ColumnElement[bool] = events.c.participant_id.is_(None)
    if pid is not None:
        visible = or_(events.c.public.is_(True), events.c.participant_id == pid)
    return (
        await conn.execute(
            select(events)
            .where(and_(events.c.id > since, visible))
            .order_by(events.c.id)
            .limit(limit)
        )
    ).all()


async def counts_after(conn: AsyncConnection, since: int) -> Sequence[Any]:
    """``(kind, count, newest id)`` of the events after ``since``."""
    return (
        await conn.execute(
            select(events.c.kind, func.count(), func.max(events.c.id))
            .where(events.c.id > since)
            .group_by(events.c.kind)
        )
    ).all()


async def public_bodies(
    conn: AsyncConnection, kind: str, after: int, up_to: int, limit: int
) -> Sequence[str]:
    """The JSON bodies of public ``kind`` events with ids in ``(after, up_to]``, oldest first."""
    return (
        await conn.scalars(
            select(events.c.body)
            .where(
                events.c.id > after,
                events.c.id <= up_to,
                events.c.kind == kind,
                events.c.public.is_(True),
            )
            .order_by(events.c.id)
            .limit(limit)
        )
    ).all()


__all__ = ["counts_after", "last_event_id", "public_bodies", "visible_after"]
