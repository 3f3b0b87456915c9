"""Interval roots, receipts and anchors in the grid database.

Closing an interval reads the range's entry hashes and computes its Merkle
root *before* taking any lock (so ingest does not wait for the hashing),
then, under the ``audit-root`` advisory lock and after checking that no
other worker closed it meanwhile, appends the root entry (the chain head
last, see :mod:`.audit_log`) and inserts its ``audit_roots`` row in one
transaction. Rows are only ever inserted (triggers refuse the rest).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Table, func, insert, select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from grid_server.domain.audit_merkle import (
    CHUNK,
    chunk_roots,
    inclusion_path,
    pack,
    tree_root,
    unpack,
)
from grid_server.domain.audit_roots import Batch, RootFields, close_span, make_batch, root_item
from grid_server.domain.schedule import Schedule
from p2p_energy_client.receipts import (
    AnchorRef,
    AuditRoot,
    InclusionProof,
    LoggedEntry,
    Receipt,
    body_hash,
)

from . import audit_log
from .db import Database, advisory_key
from .schema import (
    audit_anchor_attempts,
    audit_anchors,
    audit_roots,
    audit_verifications,
    chain_heads,
    log_entries,
)


@dataclass(frozen=True, slots=True)
class ClosedRoot:
    seq: int
    interval_from: datetime
    interval_to: datetime
    first_seq: int
    last_seq: int
    root: bytes


def _root_of(row: Row[tuple[object, ...]], anchor: AnchorRef | None = None) -> AuditRoot:
    return AuditRoot(
        int(row.seq),
        row.interval_from,
        row.interval_to,
        int(row.first_seq),
        int(row.last_seq),
        bytes(row.root),
        bytes(row.prev_hash),
        bytes(row.entry_hash),
        anchor,
    )


async def latest_root(conn: AsyncConnection, grid: str) -> Row[tuple[object, ...]] | None:
    found = await latest_roots(conn, grid, 1)
    return found[0] if found else None


async def entry_hashes(conn: AsyncConnection, grid: str, first: int, last: int) -> list[bytes]:
    if last < first:
        return []
    rows = await conn.execute(
        select(log_entries.c.seq, log_entries.c.hash)
        .where(log_entries.c.grid == grid, log_entries.c.seq.between(first, last))
        .order_by(log_entries.c.seq)
    )
    hashes: list[bytes] = []
    expected = first
    for seq, digest in rows:
        if seq != expected:
            raise RuntimeError(f"log entry {expected} is missing")
        hashes.append(bytes(digest))
        expected += 1
    if expected != last + 1:
        raise RuntimeError(f"log entry {expected} is missing")
    return hashes


async def close_due(
    db: Database,
    grid: str,
    schedule: Schedule,
    *,
    cycle_from: datetime,
    now: datetime,
    grace: timedelta = timedelta(0),
) -> ClosedRoot | None:
    """Close the intervals that ended before ``now - grace``; None when nothing is due."""
    async with db.read() as conn:
        last = await latest_root(conn, grid)
        head = await conn.scalar(select(chain_heads.c.seq).where(chain_heads.c.grid == grid))
        start = cycle_from if last is None else last.interval_to
        span = close_span(schedule, start, now, grace)
        if span is None or head is None:
            return None
        first = 1 if last is None else int(last.last_seq) + 1
        hashes = await entry_hashes(conn, grid, first, int(head))
    chunks = chunk_roots(hashes)
    root = tree_root(chunks)
    last_seq = first + len(hashes) - 1
    async with db.write() as conn:
        key = advisory_key(grid, "audit-root")
        if not await db.advisory_xact_lock(conn, key, wait=False):
            return None
        # The advisory lock makes closers take turns; the chain head is taken last.
        now_last = await latest_root(conn, grid)
        if (None if now_last is None else now_last.seq) != (None if last is None else last.seq):
            return None  # another worker closed it meanwhile
        entries = await audit_log.append(
            conn, db, grid, [root_item(span[0], span[1], first, last_seq, root)], now
        )
        entry = entries[0]
        await conn.execute(
            insert(audit_roots).values(
                grid=grid,
                seq=entry.seq,
                interval_from=span[0],
                interval_to=span[1],
                first_seq=first,
                last_seq=last_seq,
                root=root,
                chunks=pack(chunks),
                prev_hash=entry.prev_hash,
                entry_hash=entry.hash,
                created_at=now,
            )
        )
    return ClosedRoot(entry.seq, span[0], span[1], first, last_seq, root)


# --- receipts ---------------------------------------------------------------------------


async def entry_header(
    conn: AsyncConnection, grid: str, seq: int
) -> tuple[LoggedEntry, bytes] | None:
    """An entry's header and body."""
    row = (
        await conn.execute(
            select(log_entries).where(log_entries.c.grid == grid, log_entries.c.seq == seq)
        )
    ).one_or_none()
    if row is None:
        return None
    body = bytes(row.body)
    return (
        LoggedEntry(
            int(row.seq),
            row.kind,
            row.ref,
            bytes(row.prev_hash),
            body_hash(body),
            bytes(row.hash),
            row.created_at,
        ),
        body,
    )


async def root_covering(
    conn: AsyncConnection, grid: str, seq: int
) -> Row[tuple[object, ...]] | None:
    return (
        await conn.execute(
            select(audit_roots)
            .where(
                audit_roots.c.grid == grid,
                audit_roots.c.first_seq <= seq,
                audit_roots.c.last_seq >= seq,
            )
            .order_by(audit_roots.c.first_seq.desc())
            .limit(1)
        )
    ).one_or_none()


async def receipt(conn: AsyncConnection, grid: str, entry: LoggedEntry) -> Receipt:
    """The receipt of a logged entry (``pending`` when its range is not closed yet)."""
    row = await root_covering(conn, grid, entry.seq)
    if row is None:
        return Receipt(grid, "pending", entry, None, None)
    first, last = int(row.first_seq), int(row.last_seq)
    index = entry.seq - first
    chunk_first = first + (index // CHUNK) * CHUNK
    chunk_hashes = await entry_hashes(conn, grid, chunk_first, min(chunk_first + CHUNK - 1, last))
    path = inclusion_path(index, chunk_hashes, unpack(bytes(row.chunks)))
    anchors = await anchors_for(conn, grid, [_root_of(row)])
    root = anchors[0]
    return Receipt(
        grid, "rooted", entry, root, InclusionProof(index, last - first + 1, tuple(path))
    )


# --- roots and anchors --------------------------------------------------------------------


async def roots_between(
    conn: AsyncConnection,
    grid: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    from_seq: int | None = None,
    limit: int = 1000,
) -> list[AuditRoot]:
    """Roots whose intervals end after ``since`` and begin before ``until`` (or from a seq)."""
    query = select(audit_roots).where(audit_roots.c.grid == grid)
    if since is not None:
        query = query.where(audit_roots.c.interval_to > since)
    if until is not None:
        query = query.where(audit_roots.c.interval_from < until)
    if from_seq is not None:
        query = query.where(audit_roots.c.seq >= from_seq)
    rows = (await conn.execute(query.order_by(audit_roots.c.seq).limit(limit))).all()
    return await anchors_for(conn, grid, [_root_of(r) for r in rows])


async def anchors_for(
    conn: AsyncConnection, grid: str, roots: Sequence[AuditRoot]
) -> list[AuditRoot]:
    """``roots`` with their anchors (and paths into the anchored batches) filled in."""
    if not roots:
        return []
    low, high = min(r.seq for r in roots), max(r.seq for r in roots)
    anchor_rows = (
        await conn.execute(
            select(audit_anchors).where(
                audit_anchors.c.grid == grid,
                audit_anchors.c.last_root_seq >= low,
                audit_anchors.c.first_root_seq <= high,
            )
        )
    ).all()
    if not anchor_rows:
        return list(roots)
    out: list[AuditRoot] = []
    batches: dict[int, tuple[Batch, Row[tuple[object, ...]]]] = {}
    for anchor in anchor_rows:
        members = (
            await conn.execute(
                select(audit_roots)
                .where(
                    audit_roots.c.grid == grid,
                    audit_roots.c.seq.between(anchor.first_root_seq, anchor.last_root_seq),
                )
                .order_by(audit_roots.c.seq)
            )
        ).all()
        batch = make_batch(
            [
                RootFields(
                    int(m.seq),
                    int(m.first_seq),
                    int(m.last_seq),
                    bytes(m.root),
                    bytes(m.entry_hash),
                )
                for m in members
            ]
        )
        batches[int(anchor.last_root_seq)] = (batch, anchor)
    for root in roots:
        found = next(
            (
                (batch, anchor)
                for batch, anchor in batches.values()
                if batch.first_root_seq <= root.seq <= batch.last_root_seq
            ),
            None,
        )
        if found is None:
            out.append(root)
            continue
        batch, anchor = found
        index = [r.seq for r in batch.roots].index(root.seq)
        ref = AnchorRef(
            anchor.ledger,
            anchor.network,
            anchor.package,
            anchor.object_id,
            anchor.digest,
            int(anchor.object_version),
            int(anchor.state_version),
            batch.first_root_seq,
            batch.last_root_seq,
            bytes(anchor.batch_root),
            bytes(anchor.payload),
            index,
            len(batch.roots),
            tuple(batch.path(index)),
        )
        out.append(
            AuditRoot(
                root.seq,
                root.interval_from,
                root.interval_to,
                root.first_seq,
                root.last_seq,
                root.root,
                root.prev_hash,
                root.entry_hash,
                ref,
            )
        )
    return out


async def anchored_to(conn: AsyncConnection, grid: str) -> int | None:
    """The seq of the last root an anchor covers, None before the first anchor."""
    found = await conn.scalar(
        select(func.max(audit_anchors.c.last_root_seq)).where(audit_anchors.c.grid == grid)
    )
    return None if found is None else int(found)


async def unanchored_roots(conn: AsyncConnection, grid: str, limit: int) -> list[RootFields]:
    """Roots after the last anchored batch, oldest first."""
    anchored = await anchored_to(conn, grid)
    query = select(audit_roots).where(audit_roots.c.grid == grid)
    if anchored is not None:
        query = query.where(audit_roots.c.seq > anchored)
    rows = (await conn.execute(query.order_by(audit_roots.c.seq).limit(limit))).all()
    return [
        RootFields(
            int(r.seq), int(r.first_seq), int(r.last_seq), bytes(r.root), bytes(r.entry_hash)
        )
        for r in rows
    ]


async def latest_anchor(conn: AsyncConnection, grid: str) -> Row[tuple[object, ...]] | None:
    found = await latest_anchors(conn, grid, 1)
    return found[0] if found else None


async def _count(conn: AsyncConnection, table: Table, *where: ColumnElement[bool]) -> int:
    return int(await conn.scalar(select(func.count()).select_from(table).where(*where)) or 0)


async def anchor_count(conn: AsyncConnection, grid: str) -> int:
    return await _count(conn, audit_anchors, audit_anchors.c.grid == grid)


async def root_count(conn: AsyncConnection, grid: str, after: int = 0) -> int:
    """How many interval roots the grid has (with a seq above ``after``)."""
    return await _count(conn, audit_roots, audit_roots.c.grid == grid, audit_roots.c.seq > after)


async def attempt_count(conn: AsyncConnection, grid: str, after: int = 0) -> int:
    """Anchoring transactions sent but not confirmed yet for roots above ``after``."""
    return await _count(
        conn,
        audit_anchor_attempts,
        audit_anchor_attempts.c.grid == grid,
        audit_anchor_attempts.c.last_root_seq > after,
    )


async def chain_head(conn: AsyncConnection, grid: str) -> Row[tuple[object, ...]] | None:
    """The grid's ``chain_heads`` row: the last entry's seq and hash."""
    return (await conn.execute(select(chain_heads).where(chain_heads.c.grid == grid))).one_or_none()


async def latest_entries(conn: AsyncConnection, grid: str, limit: int) -> Sequence[Any]:
    """The newest log entries' headers (no bodies), newest first."""
    return (
        await conn.execute(
            select(
                log_entries.c.seq,
                log_entries.c.kind,
                log_entries.c.ref,
                log_entries.c.hash,
                log_entries.c.created_at,
            )
            .where(log_entries.c.grid == grid)
            .order_by(log_entries.c.seq.desc())
            .limit(limit)
        )
    ).all()


async def _newest(
    conn: AsyncConnection, table: Table, grid: str, by: ColumnElement[int], limit: int
) -> Sequence[Any]:
    query = select(table).where(table.c.grid == grid).order_by(by.desc()).limit(limit)
    return (await conn.execute(query)).all()


async def latest_roots(conn: AsyncConnection, grid: str, limit: int) -> Sequence[Any]:
    """The newest interval roots, newest first."""
    return await _newest(conn, audit_roots, grid, audit_roots.c.seq, limit)


async def latest_anchors(conn: AsyncConnection, grid: str, limit: int) -> Sequence[Any]:
    """The newest anchors (by the last root they cover), newest first."""
    return await _newest(conn, audit_anchors, grid, audit_anchors.c.last_root_seq, limit)


async def record_verification(
    conn: AsyncConnection,
    grid: str,
    *,
    ok: bool,
    first_seq: int,
    last_seq: int,
    entries: int,
    state_checked: bool,
    problem: str | None,
    seconds: float,
    at: datetime,
) -> None:
    await conn.execute(
        insert(audit_verifications).values(
            grid=grid,
            ok=ok,
            first_seq=first_seq,
            last_seq=last_seq,
            entries=entries,
            state_checked=state_checked,
            problem=problem,
            seconds=seconds,
            verified_at=at,
        )
    )


async def latest_verification(conn: AsyncConnection, grid: str) -> Row[tuple[object, ...]] | None:
    return (
        await conn.execute(
            select(audit_verifications)
            .where(audit_verifications.c.grid == grid)
            .order_by(audit_verifications.c.id.desc())
            .limit(1)
        )
    ).one_or_none()


__all__ = [
    "ClosedRoot",
    "anchor_count",
    "anchored_to",
    "anchors_for",
    "attempt_count",
    "chain_head",
    "close_due",
    "entry_hashes",
    "entry_header",
    "latest_anchor",
    "latest_anchors",
    "latest_entries",
    "latest_root",
    "latest_roots",
    "latest_verification",
    "receipt",
    "record_verification",
    "root_count",
    "root_covering",
    "roots_between",
    "unanchored_roots",
]
