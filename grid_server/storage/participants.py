"""Participants, their sessions and their assets (reads)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from .schema import assets, participants, sessions


async def session_participant(
    conn: AsyncConnection, token_hash: bytes, now: datetime
) -> tuple[int, str, str] | None:
    """``(participant id, address, status)`` of an unexpired session, else None."""
    row = (
        await conn.execute(
            select(participants.c.id, participants.c.address, participants.c.status)
            .join(sessions, sessions.c.participant_id == participants.c.id)
            .where(sessions.c.token_hash == token_hash, sessions.c.expires_at > now)
        )
    ).one_or_none()
    return None if row is None else (int(row.id), str(row.address), str(row.status))


async def by_id(conn: AsyncConnection, pid: int) -> Any:
    return (await conn.execute(select(participants).where(participants.c.id == pid))).one()


async def by_address(conn: AsyncConnection, address: str) -> Any:
    """The participant's row, or None."""
    return (
        await conn.execute(select(participants).where(participants.c.address == address))
    ).one_or_none()


async def current_assets(conn: AsyncConnection, pid: int) -> Sequence[Any]:
    """The participant's asset versions still in force."""
    return (
        await conn.execute(
            select(assets).where(assets.c.participant_id == pid, assets.c.valid_until.is_(None))
        )
    ).all()


async def names(conn: AsyncConnection, addresses: Collection[str]) -> dict[str, str]:
    """``address → name`` of the participants among ``addresses``."""
    if not addresses:
        return {}
    return {
        r.address: r.name
        for r in await conn.execute(
            select(participants.c.address, participants.c.name).where(
                participants.c.address.in_(sorted(addresses))
            )
        )
    }


async def addresses(conn: AsyncConnection) -> dict[int, str]:
    """``id → address`` of every participant."""
    return {
        int(r.id): r.address
        for r in await conn.execute(select(participants.c.id, participants.c.address))
    }


async def counts_by_zone(conn: AsyncConnection) -> Sequence[Any]:
    """``(zone, role, status, count)`` rows."""
    return (
        await conn.execute(
            select(
                participants.c.zone, participants.c.role, participants.c.status, func.count()
            ).group_by(participants.c.zone, participants.c.role, participants.c.status)
        )
    ).all()


async def page(
    conn: AsyncConnection, *, zone: str | None, limit: int, offset: int
) -> tuple[int, Sequence[Any]]:
    """``(how many in all, one page of rows)`` by zone, name and id; ``zone``: only that one."""
    rows = select(participants)
    count = select(func.count()).select_from(participants)
    if zone is not None:
        rows = rows.where(participants.c.zone == zone)
        count = count.where(participants.c.zone == zone)
    total = int(await conn.scalar(count) or 0)
    found = (
        await conn.execute(
            rows.order_by(participants.c.zone, participants.c.name, participants.c.id)
            .limit(limit)
            .offset(offset)
        )
    ).all()
    return total, found


__all__ = [
    "addresses",
    "by_address",
    "by_id",
    "counts_by_zone",
    "current_assets",
    "names",
    "page",
    "session_participant",
]
