"""The operator's dashboard sessions (by the HMAC of their cookie token)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from .schema import dashboard_sessions


async def add(conn: AsyncConnection, token_hash: bytes, now: datetime, expires: datetime) -> None:
    await conn.execute(
        insert(dashboard_sessions).values(token_hash=token_hash, created_at=now, expires_at=expires)
    )


async def is_open(conn: AsyncConnection, token_hash: bytes, now: datetime) -> bool:
    query = select(dashboard_sessions.c.token_hash).where(
        dashboard_sessions.c.token_hash == token_hash, dashboard_sessions.c.expires_at > now
    )
    return (await conn.execute(query)).first() is not None


async def remove(conn: AsyncConnection, token_hash: bytes) -> None:
    await conn.execute(
        delete(dashboard_sessions).where(dashboard_sessions.c.token_hash == token_hash)
    )


async def remove_expired(conn: AsyncConnection, now: datetime) -> None:
    await conn.execute(delete(dashboard_sessions).where(dashboard_sessions.c.expires_at <= now))
