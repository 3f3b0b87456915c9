"""The queries of paying producers (``grid_server.service.payouts``).

A payout is stored ``prepared`` (its intent: signed bytes, transaction id,
the statements it pays) before it is sent, and moved to ``done`` or
``failed`` by compare-and-set afterwards, so a payout is recorded once.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Row, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from .meter_queries import held_statement
from .schema import participants, payout_items, payouts, statement_terms, statements

# --- planning ---------------------------------------------------------------------


def _positions() -> Any:
    return select(
        statements.c.id,
        statements.c.participant_id,
        statements.c.period_start,
        statement_terms.c.amount_due,
        statement_terms.c.paid,
    ).join(statement_terms, statement_terms.c.statement_id == statements.c.id)


async def owed(conn: AsyncConnection, ledger: str) -> Sequence[Row[Any]]:
    """Statements on ``ledger`` the grid owes (unpaid, not held), of members not removed."""
    query = (
        _positions()
        .join(participants, participants.c.id == statements.c.participant_id)
        .where(
            statement_terms.c.ledger == ledger,
            statement_terms.c.amount_due < 0,
            statement_terms.c.paid > statement_terms.c.amount_due,
            participants.c.status != "removed",
            # A flagged reading in the period: its payout waits for the operator.
            ~held_statement(),
        )
    )
    return (await conn.execute(query)).all()


async def billed(conn: AsyncConnection, periods: Collection[datetime]) -> Sequence[Row[Any]]:
    """Statements owed to the grid in these periods (the payout policy weighs them)."""
    query = _positions().where(
        statement_terms.c.amount_due > 0, statements.c.period_start.in_(periods)
    )
    return (await conn.execute(query)).all()


async def in_flight(conn: AsyncConnection) -> dict[str, int]:
    """What prepared payouts (sent or not) pay, by statement."""
    query = (
        select(payout_items.c.statement_id, func.sum(payout_items.c.amount).label("amount"))
        .join(payouts, payouts.c.id == payout_items.c.payout_id)
        .where(payouts.c.state == "prepared")
        .group_by(payout_items.c.statement_id)
    )
    return {r.statement_id: int(r.amount) for r in await conn.execute(query)}


async def address_of(conn: AsyncConnection, participant_id: int) -> str | None:
    query = select(participants.c.address).where(participants.c.id == participant_id)
    address: str | None = await conn.scalar(query)
    return address


# --- one payout -------------------------------------------------------------------


async def insert_intent(
    conn: AsyncConnection,
    *,
    tx_id: str,
    participant_id: int,
    recipient: str,
    ledger: str,
    amount: int,
    signed: dict[str, Any],
    items: Sequence[tuple[str, int]],
    now: datetime,
) -> int:
    """A ``prepared`` payout and the statements it pays; returns its id."""
    payout_id = await conn.scalar(
        insert(payouts)
        .values(
            tx_id=tx_id,
            participant_id=participant_id,
            recipient=recipient,
            ledger=ledger,
            amount=amount,
            state="prepared",
            signed=orjson.dumps(signed),
            created_at=now,
        )
        .returning(payouts.c.id)
    )
    assert payout_id is not None
    await conn.execute(
        insert(payout_items),
        [{"payout_id": payout_id, "statement_id": sid, "amount": amount} for sid, amount in items],
    )
    return int(payout_id)


async def finish(conn: AsyncConnection, payout_id: int, **values: Any) -> bool:
    """Move a prepared payout to ``values`` (``state`` done or failed); False if it was not
    prepared any more (recorded by another pass)."""
    changed = await conn.execute(
        update(payouts)
        .where(payouts.c.id == payout_id, payouts.c.state == "prepared")
        .values(**values)
    )
    return changed.rowcount == 1


async def prepared(
    conn: AsyncConnection, ledger: str
) -> tuple[Sequence[Row[Any]], dict[int, list[tuple[str, int]]]]:
    """Prepared payouts on ``ledger`` (oldest first) and the statements each pays."""
    rows = (
        await conn.execute(
            select(payouts)
            .where(payouts.c.state == "prepared", payouts.c.ledger == ledger)
            .order_by(payouts.c.id)
        )
    ).all()
    items: dict[int, list[tuple[str, int]]] = {}
    if rows:
        for r in await conn.execute(
            select(payout_items).where(payout_items.c.payout_id.in_([r.id for r in rows]))
        ):
            items.setdefault(r.payout_id, []).append((r.statement_id, int(r.amount)))
    return rows, items


async def newest(conn: AsyncConnection, limit: int) -> Sequence[Row[Any]]:
    return (await conn.execute(select(payouts).order_by(payouts.c.id.desc()).limit(limit))).all()


# --- the session lock -------------------------------------------------------------


async def try_session_lock(conn: AsyncConnection, key: int) -> bool:
    got = bool(await conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}))
    await conn.commit()
    return got


async def session_unlock(conn: AsyncConnection, key: int) -> None:
    await conn.scalar(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
    await conn.commit()
