"""Households: energy, money, savings and statements, a page of them or one in detail."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from grid_server.storage import intervals as stored_intervals
from grid_server.storage import ledger, participants, payments
from grid_server.storage import statements as stored_statements
from grid_server.storage.statements import StatementCounts
from p2p_energy_client.units import format_utc

from ..queries import member_summary
from .common import PAGE_LIMIT, money, shown_micro
from .savings import price_steps, savings_nano
from .source import Source

MAX_STATEMENTS = 200  # of one household, newest first


@dataclass(slots=True)
class Stats:
    """One household's traded energy and savings, settlement, and statements."""

    sold_wh: int = 0
    bought_wh: int = 0
    savings_nano: int = 0
    shortfall_wh: int = 0
    surplus_wh: int = 0
    shared_in_wh: int = 0  # shortfall neighbours covered after delivery
    shared_out_wh: int = 0  # surplus neighbours took after delivery
    net_micro: int = 0  # > 0: the household paid (net) for what it settled; < 0: it earned
    statements: StatementCounts = field(default_factory=StatementCounts)


async def fetch_stats(conn: AsyncConnection, ids: list[int], now: datetime) -> dict[int, Stats]:
    """:class:`Stats` of ``ids`` (those with nothing yet are left out)."""
    if not ids:
        return {}
    out: dict[int, Stats] = defaultdict(Stats)
    steps = await price_steps(conn)
    # Traded energy and savings, per utility price step (exact, see .savings).
    for begin, end, retail, feed_in in steps.ranges():
        for pid, side, wh, value in await stored_intervals.fill_totals_by_participant(
            conn, ids, begin, end
        ):
            add_fills(
                out[int(pid)], side, int(wh or 0), int(value or 0), retail=retail, feed_in=feed_in
            )
    for pid, kind, wh, amount in await stored_intervals.line_totals_by_participant(conn, ids):
        add_lines(out[int(pid)], kind, int(wh or 0), int(amount or 0))
    for pid, counts in (await stored_statements.counts_by_participant(conn, ids, now)).items():
        out[pid].statements = counts
    return out


def add_fills(s: Stats, side: str, wh: int, value: int, *, retail: int, feed_in: int) -> None:
    if side == "sell":
        s.sold_wh += wh
        s.savings_nano += savings_nano(wh, value, 0, 0, retail=retail, feed_in=feed_in)
    else:
        s.bought_wh += wh
        s.savings_nano += savings_nano(0, 0, wh, value, retail=retail, feed_in=feed_in)


def add_lines(s: Stats, kind: str, wh: int, amount: int) -> None:
    s.net_micro += amount
    if kind == "shortfall_retail":
        s.shortfall_wh = wh
    elif kind == "surplus_feed_in":
        s.surplus_wh = wh
    elif kind == "shared_in":
        s.shared_in_wh = wh
    elif kind == "shared_out":
        s.shared_out_wh = wh


def participant_row(r: Any, s: Stats) -> dict[str, Any]:
    """A ``participants`` row with its :class:`Stats`, as the page lists it."""
    return {
        **member_summary(r),
        "bought_wh": s.bought_wh,
        "sold_wh": s.sold_wh,
        "shortfall_wh": s.shortfall_wh,
        "surplus_wh": s.surplus_wh,
        "shared_in_wh": s.shared_in_wh,
        "shared_out_wh": s.shared_out_wh,
        "net_micro": s.net_micro,
        "net": money(s.net_micro),
        "savings_nano": s.savings_nano,
        "savings_micro": shown_micro(s.savings_nano),
        "statements": asdict(s.statements),
    }


# --- a page ------------------------------------------------------------------------------


async def participants_view(
    source: Source, *, limit: int = PAGE_LIMIT, offset: int = 0, zone: str | None = None
) -> dict[str, Any]:
    """Per household (one page, by zone and name): energy, money, savings, statements."""
    limit = min(max(limit, 1), PAGE_LIMIT)
    offset = max(offset, 0)
    async with source.db.read() as conn:
        total, rows = await participants.page(conn, zone=zone, limit=limit, offset=offset)
        stats = await fetch_stats(conn, [int(r.id) for r in rows], source.clock.now())
    return {
        "currency": source.config.currency,
        "total": total,
        "limit": limit,
        "offset": offset,
        "participants": [participant_row(r, stats.get(int(r.id), Stats())) for r in rows],
    }


# --- one household -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DetailRows:
    row: Any
    stats: Stats
    statements: Sequence[Any]
    paid_in: Sequence[Any]
    paid_out: Sequence[Any]
    balance: int | None


async def fetch_detail(conn: AsyncConnection, address: str, now: datetime) -> DetailRows | None:
    row = await participants.by_address(conn, address)
    if row is None:
        return None
    pid = int(row.id)
    stats = (await fetch_stats(conn, [pid], now)).get(pid, Stats())
    statement_rows = await stored_statements.with_due_dates(conn, pid, now, MAX_STATEMENTS)
    ids = [r.id for r in statement_rows]
    return DetailRows(
        row,
        stats,
        statement_rows,
        await payments.payments_for(conn, ids) if ids else (),
        await payments.payouts_for(conn, ids) if ids else (),
        await ledger.balance(conn, address),
    )


async def participant_detail(source: Source, address: str) -> dict[str, Any] | None:
    """One household: its row, its statements with payments, its ledger balance."""
    async with source.db.read() as conn:
        rows = await fetch_detail(conn, address, source.clock.now())
    return None if rows is None else build_detail(source.config.currency, rows)


def build_detail(currency: str, rows: DetailRows) -> dict[str, Any]:
    moves = statement_payments(rows.paid_in, rows.paid_out)
    return {
        "currency": currency,
        "participant": participant_row(rows.row, rows.stats),
        "balance_micro": rows.balance,
        "statements": [statement_view(s, moves.get(s.id, [])) for s in rows.statements],
    }


def statement_payments(
    paid_in: Sequence[Any], paid_out: Sequence[Any]
) -> dict[str, list[dict[str, Any]]]:
    """Per statement: the payments into the grid, then the payouts out of it."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for p in paid_in:
        out[p.statement_id].append(
            {
                "direction": "in",
                "tx_id": p.tx_id,
                "amount": int(p.credited),
                "at": format_utc(p.recorded_at),
            }
        )
    for p in paid_out:
        out[p.statement_id].append(
            {
                "direction": "out",
                "tx_id": p.tx_id,
                "amount": int(p.amount),
                "state": p.state,
                "at": None if p.completed_at is None else format_utc(p.completed_at),
            }
        )
    return out


def statement_view(s: Any, moves: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": s.id,
        "period_start": format_utc(s.period_start),
        "period_end": format_utc(s.period_end),
        "amount_due_micro": int(s.amount_due_micro),
        "paid_micro": int(s.paid_micro),
        "status": s.status,
        "issued_at": format_utc(s.issued_at),
        "due_at": None if s.due_at is None else format_utc(s.due_at),
        "overdue": bool(s.overdue),
        "intervals": int(s.intervals),
        "payments": moves,
    }


__all__ = [
    "DetailRows",
    "Stats",
    "build_detail",
    "fetch_detail",
    "fetch_stats",
    "participant_detail",
    "participant_row",
    "participants_view",
]
