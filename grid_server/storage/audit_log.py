"""Appending to the grid's hash-chained log inside the caller's transaction.

Every writer of the log appends its entries as the **last** thing its
transaction does: :func:`append` reads the chain head (``chain_heads``) with
``SELECT … FOR UPDATE`` on PostgreSQL, links the entries after it, inserts
them and moves the head, and the caller commits. Concurrent transactions
(other workers, the interval cycle, payouts, the operator) therefore append
one after another and the chain never forks, but each holds the head only
for "link, insert, move the head, commit", not while it validates or
computes; on SQLite the single writer already serialises everything.

Lock order on PostgreSQL — every writer takes what it needs in this order,
so no two writers can wait for each other in a circle:

1. advisory locks: the intervals' (:func:`~.db.interval_lock_key`; ingest
   shares those its batch touches, in interval order; the cycle takes one
   exclusively and never waits for it), then ingest's per-joining-key locks
   (in address order); the other advisory locks (``audit-root``, ``period``,
   ``payouts``, ``audit-anchor``) are only ever *tried*, never waited for;
2. rows a writer checks and changes: ``participants`` (ingest locks its
   batch's senders ``FOR UPDATE`` in id order; the operator updates one),
   ``invitations`` (ingest: the codes its joins use, in hash order; the
   operator: one it revokes);
3. the local ledger head (``ledger_heads``) and after it the ``ledger_accounts``
   (ingest transfers, payouts, minting), the ``payouts`` row of a batch, then
   ``statements`` with their terms (in id order; ingest payments, payouts);
4. the chain head, last. After it a transaction only inserts rows keyed by
   the log positions it just got or freshly made (log entries, envelopes,
   readings, orders, payments, roots, anchors, events), writes rows it
   already owns by an earlier lock (a participant's own readings), moves the
   head and commits — it never waits for another row, so the chain head can
   never be part of a deadlock.

Because every resource two writers both change is locked and held until the
commit, the order of their entries in the chain is the order in which their
changes took effect: replaying the log in order reproduces the tables.
Entries are only ever inserted.
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
    """The chain head ``(seq, hash)``, locked until the commit: the last lock a writer takes."""
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
    """Append ``(kind, ref, body)`` items; the last statement of the caller's transaction
    but for inserts of rows keyed by the entries' positions (see the module documentation)."""
    seq, head = await lock_head(conn, db, grid)
    entries = link(seq, head, items)
    await write_entries(conn, grid, entries, now)
    return entries
