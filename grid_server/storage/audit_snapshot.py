"""What ``p2p-grid audit verify`` reads: the log with its envelopes, the roots and anchors
tables, and every table the log implies, row for row.

All of it is read inside the verifier's one snapshot (a REPEATABLE READ
transaction on PostgreSQL), so the log and the tables it is compared with
are of one moment.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any, Final

from sqlalchemy import Result, Select, Table, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from .schema import (
    asset_decisions,
    assets,
    audit_anchors,
    audit_roots,
    chain_heads,
    envelopes,
    fills,
    intervals,
    ledger_accounts,
    ledger_entries,
    line_items,
    log_entries,
    orders,
    participants,
    payments,
    payout_items,
    payouts,
    reading_flags,
    reading_history,
    readings,
    statement_terms,
    statements,
    utility_prices,
    zone_results,
    zones,
)

# Tables with one partition per delivery interval (``interval_start``), in the
# order the verifier compares them.
BY_INTERVAL: Final[dict[str, Table]] = {
    t.name: t for t in (readings, reading_history, orders, fills, zone_results, line_items)
}
# Tables compared whole at the end.
WHOLE: Final[dict[str, Table]] = {
    t.name: t
    for t in (
        participants,
        assets,
        statements,
        zones,
        utility_prices,
        statement_terms,
        payments,
        payouts,
        payout_items,
        ledger_entries,
        ledger_accounts,
        asset_decisions,
        reading_flags,
    )
}


# --- the log -----------------------------------------------------------------------------


async def grids(conn: AsyncConnection) -> list[str]:
    """The grids whose logs the database holds."""
    return [str(g) for g in (await conn.execute(select(chain_heads.c.grid))).scalars()]


async def last_seq(conn: AsyncConnection, grid: str) -> int:
    """The highest seq in the grid's log (0 when empty)."""
    found = await conn.scalar(select(func.max(log_entries.c.seq)).where(log_entries.c.grid == grid))
    return int(found or 0)


async def entry_hash(conn: AsyncConnection, grid: str, seq: int) -> bytes | None:
    found = await conn.scalar(
        select(log_entries.c.hash).where(log_entries.c.grid == grid, log_entries.c.seq == seq)
    )
    return None if found is None else bytes(found)


async def root_body_before(conn: AsyncConnection, grid: str, seq: int) -> bytes | None:
    """The body of the last ``root`` entry at or before ``seq`` (None: there is none)."""
    found = await conn.scalar(
        select(log_entries.c.body)
        .where(log_entries.c.grid == grid, log_entries.c.kind == "root", log_entries.c.seq <= seq)
        .order_by(log_entries.c.seq.desc())
        .limit(1)
    )
    return None if found is None else bytes(found)


def log_query(grid: str, start: int, end: int) -> Select[Any]:
    """Log entries ``start``–``end`` with their ``envelopes`` row (``e_*``).

    The database compares the stored raw bytes with the entry's body
    (``e_same_raw``), so they are not read twice.
    """
    e = envelopes.c
    return (
        select(
            log_entries.c.seq,
            log_entries.c.kind,
            log_entries.c.ref,
            log_entries.c.body,
            log_entries.c.hash,
            log_entries.c.prev_hash,
            log_entries.c.created_at,
            e.log_seq.label("e_log_seq"),
            e.signature.label("e_signature"),
            e.participant_id.label("e_participant_id"),
            e.sender.label("e_sender"),
            e.type.label("e_type"),
            e.seq.label("e_seq"),
            e.ts.label("e_ts"),
            e.payload_hash.label("e_payload_hash"),
            (e.raw == log_entries.c.body).label("e_same_raw"),
            e.received_at.label("e_received_at"),
        )
        .select_from(log_entries.outerjoin(envelopes, e.log_seq == log_entries.c.seq))
        .where(log_entries.c.grid == grid, log_entries.c.seq.between(start, end))
        .order_by(log_entries.c.seq)
    )


async def log_batch(conn: AsyncConnection, grid: str, start: int, end: int) -> Sequence[Any]:
    return _plain(await conn.execute(log_query(grid, start, end)))


@cache
def _row_type(columns: tuple[str, ...]) -> Any:
    return namedtuple("Row", columns)  # the columns vary by query


def _plain(result: Result[Any]) -> list[Any]:
    """The rows as named tuples: the verifier reads every field of millions of rows, and a
    SQLAlchemy row's attribute costs about 0.6 µs where a named tuple's costs 0.03 µs."""
    make = _row_type(tuple(result.keys()))._make
    return [make(row) for row in result]


async def orphan_envelopes(conn: AsyncConnection, grid: str) -> int:
    """How many ``envelopes`` rows name a log entry that does not exist."""
    query = (
        select(func.count())
        .select_from(
            envelopes.outerjoin(
                log_entries,
                (log_entries.c.seq == envelopes.c.log_seq) & (log_entries.c.grid == grid),
            )
        )
        .where(log_entries.c.seq.is_(None))
    )
    return int(await conn.scalar(query) or 0)


# --- roots and anchors -------------------------------------------------------------------


async def seq_range(
    conn: AsyncConnection, grid: str, since: datetime | None, until: datetime | None
) -> tuple[int, int] | None:
    """The entries of the closed intervals overlapping ``[since, until)``: from the first
    such root's first entry to the last such root itself; None without any."""
    query = select(audit_roots.c.seq, audit_roots.c.first_seq).where(audit_roots.c.grid == grid)
    if since is not None:
        query = query.where(audit_roots.c.interval_to > since)
    if until is not None:
        query = query.where(audit_roots.c.interval_from < until)
    rows = (await conn.execute(query.order_by(audit_roots.c.seq))).all()
    return None if not rows else (int(rows[0].first_seq), int(rows[-1].seq))


async def roots_by_seq(conn: AsyncConnection, grid: str) -> dict[int, Any]:
    """Every ``audit_roots`` row of the grid by the seq of its root entry."""
    rows = await conn.execute(select(audit_roots).where(audit_roots.c.grid == grid))
    return {int(r.seq): r for r in rows}


async def anchors_by_seq(conn: AsyncConnection, grid: str) -> dict[int, Any]:
    """Every ``audit_anchors`` row of the grid by the seq of its anchor entry."""
    rows = await conn.execute(select(audit_anchors).where(audit_anchors.c.grid == grid))
    return {int(r.log_seq): r for r in rows}


# --- the tables the log implies ----------------------------------------------------------


async def interval_rows(conn: AsyncConnection, table: str, start: datetime) -> Sequence[Any]:
    """The rows of one of :data:`BY_INTERVAL` for the interval starting at ``start``."""
    t = BY_INTERVAL[table]
    return _plain(await conn.execute(select(t).where(t.c.interval_start == start)))


async def interval_starts(conn: AsyncConnection, table: str) -> list[datetime]:
    """The intervals one of :data:`BY_INTERVAL` has rows for."""
    t = BY_INTERVAL[table]
    return list((await conn.execute(select(t.c.interval_start).distinct())).scalars())


async def interval(conn: AsyncConnection, start: datetime) -> Any:
    return (await conn.execute(select(intervals).where(intervals.c.start == start))).one_or_none()


async def closed_intervals(conn: AsyncConnection) -> list[datetime]:
    """The intervals whose state is not ``open`` (cleared or settled)."""
    query = select(intervals.c.start).where(intervals.c.state != "open")
    return list((await conn.execute(query)).scalars())


async def all_rows(conn: AsyncConnection, table: str) -> Sequence[Any]:
    """Every row of one of :data:`WHOLE`."""
    return (await conn.execute(select(WHOLE[table]))).all()


__all__ = [
    "BY_INTERVAL",
    "WHOLE",
    "all_rows",
    "anchors_by_seq",
    "closed_intervals",
    "entry_hash",
    "grids",
    "interval",
    "interval_rows",
    "interval_starts",
    "last_seq",
    "log_batch",
    "log_query",
    "orphan_envelopes",
    "root_body_before",
    "roots_by_seq",
    "seq_range",
]
