"""Statements, their ledger terms and the payments recorded against them (reads).

A statement row becomes a :class:`~p2p_energy_client.api.Statement` here
and nowhere else (:func:`statement_from_row`), and *overdue* has one
definition, :func:`overdue_at`: a statement owed to the grid (ledger amount
due > 0), not fully paid in the ledger's unit, past its due time. Every
query that asks "overdue?" (the operator's list, the buy-order policy, the
dashboard's counts and flags) filters or selects that expression, so the
rule cannot drift between them. Statements issued before payments existed
have no terms and are never overdue.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from p2p_energy_client.models import LedgerTerms, LineItem, PaymentRecord, Statement
from p2p_energy_client.units import format_utc

from .schema import (
    line_items,
    participants,
    payments,
    payout_items,
    payouts,
    periods,
    statement_terms,
    statements,
)

Extras = tuple[LedgerTerms | None, tuple[PaymentRecord, ...]]
NO_EXTRAS: Extras = (None, ())


# --- the rule ----------------------------------------------------------------------------


def overdue_at(now: datetime) -> ColumnElement[bool]:
    """The overdue rule as SQL over ``statement_terms`` (see the module doc)."""
    return and_(
        statement_terms.c.amount_due > 0,
        statement_terms.c.paid < statement_terms.c.amount_due,
        statement_terms.c.due_at < now,
    )


# --- one statement -----------------------------------------------------------------------


def statement_from_row(
    row: Any, address: str, lines: tuple[LineItem, ...] = (), extras: Extras = NO_EXTRAS
) -> Statement:
    """The wire view of a ``statements`` row, with its lines, terms and payments."""
    terms, records = extras
    return Statement(
        row.id,
        address,
        row.period_start,
        row.period_end,
        row.currency,
        row.amount_due_micro,
        row.paid_micro,
        row.status,
        row.issued_at,
        row.intervals,
        lines,
        terms,
        records,
    )


async def statement_row(conn: AsyncConnection, statement_id: str, pid: int | None = None) -> Any:
    """A ``statements`` row with its participant's ``address``; ``pid``: only that one's own."""
    query = (
        select(statements, participants.c.address)
        .join(participants, participants.c.id == statements.c.participant_id)
        .where(statements.c.id == statement_id)
    )
    if pid is not None:
        query = query.where(statements.c.participant_id == pid)
    return (await conn.execute(query)).one_or_none()


async def statement_view(conn: AsyncConnection, statement_id: str) -> Statement | None:
    """A statement with its terms and payments (no lines), or None."""
    row = await statement_row(conn, statement_id)
    if row is None:
        return None
    extras = await statement_extras(conn, [row.id])
    return statement_from_row(row, row.address, (), extras.get(row.id, NO_EXTRAS))


async def statement_views(conn: AsyncConnection, ids: Sequence[str]) -> dict[str, Statement]:
    """:func:`statement_view` of many statements (those that exist), by id."""
    if not ids:
        return {}
    rows = (
        await conn.execute(
            select(statements, participants.c.address)
            .join(participants, participants.c.id == statements.c.participant_id)
            .where(statements.c.id.in_(ids))
        )
    ).all()
    extras = await statement_extras(conn, [r.id for r in rows])
    return {r.id: statement_from_row(r, r.address, (), extras.get(r.id, NO_EXTRAS)) for r in rows}


async def participant_statements(
    conn: AsyncConnection, pid: int, address: str, since: datetime | None, limit: int
) -> list[Statement]:
    """A participant's statements by period (those starting at or after ``since``)."""
    query = select(statements).where(statements.c.participant_id == pid)
    if since is not None:
        query = query.where(statements.c.period_start >= since)
    rows = (await conn.execute(query.order_by(statements.c.period_start).limit(limit))).all()
    extras = await statement_extras(conn, [r.id for r in rows])
    return [statement_from_row(r, address, (), extras.get(r.id, NO_EXTRAS)) for r in rows]


async def statement_extras(conn: AsyncConnection, ids: Sequence[str]) -> dict[str, Extras]:
    """Ledger terms and recorded payments (both directions) of the given statements."""
    if not ids:
        return {}
    terms: dict[str, LedgerTerms] = {
        r.statement_id: LedgerTerms(r.ledger, r.unit, r.rate, r.amount_due, r.paid, r.due_at)
        for r in await conn.execute(
            select(statement_terms).where(statement_terms.c.statement_id.in_(ids))
        )
    }
    records: dict[str, list[PaymentRecord]] = {}
    for r in await conn.execute(
        select(payments).where(payments.c.statement_id.in_(ids)).order_by(payments.c.id)
    ):
        records.setdefault(r.statement_id, []).append(
            PaymentRecord(r.tx_id, "in", r.credited, r.received, r.recorded_at)
        )
    for r in await conn.execute(
        select(
            payout_items.c.statement_id,
            payout_items.c.amount,
            payouts.c.tx_id,
            payouts.c.completed_at,
        )
        .join(payouts, and_(payouts.c.id == payout_items.c.payout_id, payouts.c.state == "done"))
        .where(payout_items.c.statement_id.in_(ids))
        .order_by(payouts.c.id)
    ):
        records.setdefault(r.statement_id, []).append(
            PaymentRecord(r.tx_id, "out", r.amount, r.amount, r.completed_at)
        )
    return {sid: (terms.get(sid), tuple(records.get(sid, ()))) for sid in set(terms) | set(records)}


# --- overdue -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Overdue:
    """An overdue statement with its participant and its terms."""

    statement: str
    address: str
    name: str
    period_start: datetime
    due_at: datetime
    currency: str
    amount_due_micro: int
    paid_micro: int
    status: str
    ledger_amount_due: int
    ledger_paid: int
    unit: str

    def to_json(self, now: datetime) -> dict[str, Any]:
        """What the operator is shown (API, CLI, dashboard), overdue for how long at ``now``."""
        return {
            "statement": self.statement,
            "participant": self.address,
            "name": self.name,
            "period_start": format_utc(self.period_start),
            "due_at": format_utc(self.due_at),
            "overdue_seconds": int((now - self.due_at).total_seconds()),
            "currency": self.currency,
            "amount_due_micro": self.amount_due_micro,
            "paid_micro": self.paid_micro,
            "status": self.status,
            "ledger_amount_due": self.ledger_amount_due,
            "ledger_paid": self.ledger_paid,
            "unit": self.unit,
        }


async def overdue(conn: AsyncConnection, now: datetime, limit: int | None = None) -> list[Overdue]:
    """Overdue statements at ``now``, the longest overdue first."""
    query = (
        select(
            statements.c.id,
            statements.c.period_start,
            statements.c.amount_due_micro,
            statements.c.paid_micro,
            statements.c.status,
            statements.c.currency,
            participants.c.address,
            participants.c.name,
            statement_terms.c.amount_due,
            statement_terms.c.paid,
            statement_terms.c.unit,
            statement_terms.c.due_at,
        )
        .join(statement_terms, statement_terms.c.statement_id == statements.c.id)
        .join(participants, participants.c.id == statements.c.participant_id)
        .where(overdue_at(now))
        .order_by(statement_terms.c.due_at, statements.c.id)
    )
    if limit is not None:
        query = query.limit(limit)
    return [
        Overdue(
            r.id,
            r.address,
            r.name,
            r.period_start,
            r.due_at,
            r.currency,
            int(r.amount_due_micro),
            int(r.paid_micro),
            r.status,
            int(r.amount_due),
            int(r.paid),
            r.unit,
        )
        for r in await conn.execute(query)
    ]


async def has_overdue(conn: AsyncConnection, participant_id: int, now: datetime) -> bool:
    """Whether the participant has an overdue statement (the buy-order policy asks)."""
    found = await conn.scalar(
        select(statements.c.id)
        .join(statement_terms, statement_terms.c.statement_id == statements.c.id)
        .where(statements.c.participant_id == participant_id, overdue_at(now))
        .limit(1)
    )
    return found is not None


# --- aggregates --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatementCounts:
    """A participant's statements: how many, paid, open, overdue; money due and paid."""

    count: int = 0
    paid: int = 0
    open: int = 0
    overdue: int = 0
    due_micro: int = 0
    paid_micro: int = 0


async def counts_by_participant(
    conn: AsyncConnection, ids: Sequence[int], now: datetime
) -> dict[int, StatementCounts]:
    """:class:`StatementCounts` of each of ``ids`` that has statements."""
    rows = await conn.execute(
        select(
            statements.c.participant_id,
            func.count(),
            func.count().filter(statements.c.status == "paid"),
            func.count().filter(statements.c.status != "paid"),
            func.count(statement_terms.c.statement_id).filter(overdue_at(now)),
            func.coalesce(func.sum(statements.c.amount_due_micro), 0),
            func.coalesce(func.sum(statements.c.paid_micro), 0),
        )
        .select_from(
            statements.outerjoin(statement_terms, statement_terms.c.statement_id == statements.c.id)
        )
        .where(statements.c.participant_id.in_(ids))
        .group_by(statements.c.participant_id)
    )
    return {int(r[0]): StatementCounts(*(int(x) for x in r[1:])) for r in rows}


@dataclass(frozen=True, slots=True)
class StatusTotals:
    """Statements of one status: how many, what they ask, what was paid."""

    count: int
    due_micro: int
    paid_micro: int


async def totals_by_status(conn: AsyncConnection) -> dict[str, StatusTotals]:
    return {
        str(r[0]): StatusTotals(int(r[1]), int(r[2]), int(r[3]))
        for r in await conn.execute(
            select(
                statements.c.status,
                func.count(),
                func.coalesce(func.sum(statements.c.amount_due_micro), 0),
                func.coalesce(func.sum(statements.c.paid_micro), 0),
            ).group_by(statements.c.status)
        )
    }


async def with_due_dates(
    conn: AsyncConnection, pid: int, now: datetime, limit: int
) -> Sequence[Any]:
    """A participant's latest statements with ``due_at`` and whether each is ``overdue``."""
    return (
        await conn.execute(
            select(
                statements,
                statement_terms.c.due_at,
                statement_terms.c.unit,
                overdue_at(now).label("overdue"),
            )
            .outerjoin(statement_terms, statement_terms.c.statement_id == statements.c.id)
            .where(statements.c.participant_id == pid)
            .order_by(statements.c.period_start.desc())
            .limit(limit)
        )
    ).all()


async def within_with_line_totals(
    conn: AsyncConnection, since: datetime, until: datetime
) -> Sequence[Any]:
    """Statements of periods inside ``[since, until)``, each with ``line_total``: what its
    participant's line items over its period add up to (equal to its amount due).
    """
    line_total = (
        select(func.coalesce(func.sum(line_items.c.amount_micro), 0))
        .where(
            line_items.c.participant_id == statements.c.participant_id,
            line_items.c.interval_start >= statements.c.period_start,
            line_items.c.interval_start < statements.c.period_end,
        )
        .scalar_subquery()
    )
    return (
        await conn.execute(
            select(statements, line_total.label("line_total")).where(
                statements.c.period_start >= since, statements.c.period_end <= until
            )
        )
    ).all()


async def paid_to_grid(conn: AsyncConnection) -> int:
    """What was paid on the statements owed to the grid, in micro-units."""
    query = select(func.coalesce(func.sum(statements.c.paid_micro), 0)).where(
        statements.c.amount_due_micro > 0
    )
    return int(await conn.scalar(query) or 0)


async def issued_periods(conn: AsyncConnection) -> list[datetime]:
    """The starts of the settlement periods whose statements were issued, oldest first."""
    return list((await conn.scalars(select(periods.c.start).order_by(periods.c.start))).all())


__all__ = [
    "NO_EXTRAS",
    "Overdue",
    "StatementCounts",
    "StatusTotals",
    "counts_by_participant",
    "has_overdue",
    "issued_periods",
    "overdue",
    "overdue_at",
    "paid_to_grid",
    "participant_statements",
    "statement_extras",
    "statement_from_row",
    "statement_row",
    "statement_view",
    "totals_by_status",
    "with_due_dates",
    "within_with_line_totals",
]
