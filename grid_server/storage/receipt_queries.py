"""Finding the log entry a participant asks a receipt for (``grid_server.service.audit``)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from .schema import envelopes, log_entries


async def envelope_log_seq(conn: AsyncConnection, grid: str, sender: str, seq: int) -> int | None:
    """The log seq of ``sender``'s envelope with payload seq ``seq``."""
    found = await conn.scalar(
        select(log_entries.c.seq).where(
            log_entries.c.kind == "envelope",
            log_entries.c.ref == f"{sender}/{seq}",
            log_entries.c.grid == grid,
        )
    )
    return None if found is None else int(found)


async def envelope_by_signature(conn: AsyncConnection, signature: bytes) -> tuple[int, str] | None:
    """``(log seq, sender)`` of the envelope with this signature."""
    row = (
        await conn.execute(
            select(envelopes.c.log_seq, envelopes.c.sender).where(
                envelopes.c.signature == signature
            )
        )
    ).one_or_none()
    return None if row is None else (int(row.log_seq), row.sender)
