"""Appending to the grid's hash-chained log inside the caller's transaction.

The chain head (``chain_heads``) is read with ``SELECT … FOR UPDATE`` on
PostgreSQL, so concurrent transactions (other workers, the interval cycle)
append one after another and the chain never forks; on SQLite the single
writer already guarantees that. Entries are only ever inserted.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from grid_server.domain.audit_chain import LinkedEntry, link
from p2p_energy_client.receipts import GENESIS_HASH

from .db import Database
from .schema import chain_heads, log_entries


async def ensure_head(conn: AsyncConnection, grid: str) -> None:
    exists = await conn.scalar(select(chain_heads.c.seq).where(chain_heads.c.grid == grid))
    if exists is None:
        await conn.execute(insert(chain_heads).values(grid=grid, seq=0, hash=GENESIS_HASH))


async def lock_head(conn: AsyncConnection, db: Database, grid: str) -> tuple[int, bytes]:
    query = select(chain_heads.c.seq, chain_heads.c.hash).where(chain_heads.c.grid == grid)
    if db.is_postgres:
        query = query.with_for_update()
    row = (await conn.execute(query)).one_or_none()
    if row is None:
        await ensure_head(conn, grid)
        return 0, GENESIS_HASH
    return int(row.seq), bytes(row.hash)


async def write_entries(
    conn: AsyncConnection, grid: str, entries: list[LinkedEntry], now: datetime
) -> None:
    if not entries:
        return
    await conn.execute(
        insert(log_entries),
        [
            {
                "grid": grid,
                "seq": e.seq,
                "kind": e.kind,
                "ref": e.ref,
                "body": e.body,
                "hash": e.hash,
                "prev_hash": e.prev_hash,
                "created_at": now,
            }
            for e in entries
        ],
    )
    last = entries[-1]
    await conn.execute(
        update(chain_heads).where(chain_heads.c.grid == grid).values(seq=last.seq, hash=last.hash)
    )


async def append(
    conn: AsyncConnection,
    db: Database,
    grid: str,
    items: Iterable[tuple[str, str, bytes]],
    now: datetime,
) -> list[LinkedEntry]:
    """Append ``(kind, ref, body)`` items; part of the caller's transaction."""
    seq, head = await lock_head(conn, db, grid)
    entries = link(seq, head, items)
    await write_entries(conn, grid, entries, now)
    return entries
