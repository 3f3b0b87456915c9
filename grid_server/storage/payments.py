"""Payments the grid received and payouts it made, as recorded against statements (reads)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from .schema import participants, payments, payout_items, payouts


async def latest_payments(conn: AsyncConnection, limit: int) -> Sequence[Any]:
    """The newest ``payments`` rows with the payer's ``name`` and ``address``."""
    return (
        await conn.execute(
            select(payments, participants.c.name, participants.c.address)
            .join(participants, participants.c.id == payments.c.participant_id)
            .order_by(payments.c.id.desc())
            .limit(limit)
        )
    ).all()


async def latest_payouts(conn: AsyncConnection, limit: int) -> Sequence[Any]:
    """The newest ``payouts`` rows (any state) with the producer's ``name``."""
    return (
        await conn.execute(
            select(payouts, participants.c.name)
            .join(participants, participants.c.id == payouts.c.participant_id)
            .order_by(payouts.c.id.desc())
            .limit(limit)
        )
    ).all()


async def payments_for(conn: AsyncConnection, statement_ids: Sequence[str]) -> Sequence[Any]:
    """The ``payments`` rows of these statements, oldest first."""
    return (
        await conn.execute(
            select(payments)
            .where(payments.c.statement_id.in_(statement_ids))
            .order_by(payments.c.id)
        )
    ).all()


async def payouts_for(conn: AsyncConnection, statement_ids: Sequence[str]) -> Sequence[Any]:
    """Each statement's share of a payout (any state) with the payout's row, oldest first."""
    return (
        await conn.execute(
            select(payout_items.c.statement_id, payout_items.c.amount, payouts)
            .join(payouts, payouts.c.id == payout_items.c.payout_id)
            .where(payout_items.c.statement_id.in_(statement_ids))
            .order_by(payouts.c.id)
        )
    ).all()


@dataclass(frozen=True, slots=True)
class PaymentTotals:
    """Every payment recorded: how many, what arrived, what it credited to statements."""

    count: int
    received: int
    credited: int


async def payment_totals(conn: AsyncConnection) -> PaymentTotals:
    row = (
        await conn.execute(
            select(
                func.count(),
                func.coalesce(func.sum(payments.c.received), 0),
                func.coalesce(func.sum(payments.c.credited), 0),
            )
        )
    ).one()
    return PaymentTotals(int(row[0]), int(row[1]), int(row[2]))


async def payouts_done(conn: AsyncConnection) -> tuple[int, int]:
    """``(how many, how much)`` of the payouts completed."""
    row = (
        await conn.execute(
            select(func.count(), func.coalesce(func.sum(payouts.c.amount), 0)).where(
                payouts.c.state == "done"
            )
        )
    ).one()
    return int(row[0]), int(row[1])


__all__ = [
    "PaymentTotals",
    "latest_payments",
    "latest_payouts",
    "payment_totals",
    "payments_for",
    "payouts_done",
    "payouts_for",
]
