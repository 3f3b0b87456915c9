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

from grid_server.domain.ledger import StatementPosition

from .cycle_queries import IN_LIST_SLICE
from .meter_queries import held_statement
from .schema import (
    participants,
    payout_batches,
    payout_items,
    payouts,
    statement_terms,
    statements,
)

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


async def positions(conn: AsyncConnection, ledger: str) -> list[StatementPosition]:
    """What the payout plan weighs: the statements the grid owes on ``ledger`` and
    those billed in the same periods, each with what prepared payouts already pay."""
    owing = await owed(conn, ledger)
    if not owing:
        return []
    others = await billed(conn, {r.period_start for r in owing})
    paying = await in_flight(conn)
    return [
        StatementPosition(
            r.id,
            r.participant_id,
            r.period_start,
            int(r.amount_due),
            int(r.paid),
            paying.get(r.id, 0),
        )
        for r in (*owing, *others)
    ]


# --- batches ----------------------------------------------------------------------


async def addresses_of(conn: AsyncConnection, participant_ids: Collection[int]) -> dict[int, str]:
    """Each participant's address, read in slices (a regional grid pays tens of
    thousands of producers in one pass; asyncpg takes at most 32,767 parameters)."""
    ids = sorted(participant_ids)
    found: dict[int, str] = {}
    for first in range(0, len(ids), IN_LIST_SLICE):
        query = select(participants.c.id, participants.c.address).where(
            participants.c.id.in_(ids[first : first + IN_LIST_SLICE])
        )
        found.update((int(r.id), r.address) for r in await conn.execute(query))
    return found


async def insert_batch(
    conn: AsyncConnection,
    *,
    tx_id: str,
    ledger: str,
    signed: dict[str, Any] | None,
    members: Sequence[dict[str, Any]],
    now: datetime,
) -> tuple[int, list[int]]:
    """A ``prepared`` batch, its payouts and the statements each pays: ``(batch id, payout ids)``.

    ``members``: ``tx_id``, ``participant_id``, ``recipient``, ``amount``,
    ``signed`` (JSON or None) and ``items`` (``(statement id, amount)``) each;
    the ids come back in that order.
    """
    batch_id = await conn.scalar(
        insert(payout_batches)
        .values(
            tx_id=tx_id,
            ledger=ledger,
            amount=sum(p["amount"] for p in members),
            size=len(members),
            state="prepared",
            signed=None if signed is None else orjson.dumps(signed),
            created_at=now,
        )
        .returning(payout_batches.c.id)
    )
    assert batch_id is not None
    rows = [
        {
            "batch_id": batch_id,
            "tx_id": p["tx_id"],
            "participant_id": p["participant_id"],
            "recipient": p["recipient"],
            "ledger": ledger,
            "amount": p["amount"],
            "state": "prepared",
            "signed": b"" if p["signed"] is None else orjson.dumps(p["signed"]),
            "created_at": now,
        }
        for p in members
    ]
    await conn.execute(insert(payouts), rows)
    # A batch pays a producer once: its ids by producer (one query, not a RETURNING per row).
    by_participant = {
        int(r.participant_id): int(r.id)
        for r in await conn.execute(
            select(payouts.c.id, payouts.c.participant_id).where(payouts.c.batch_id == batch_id)
        )
    }
    assert len(by_participant) == len(members), "one payout per producer in a batch"
    ids = [by_participant[m["participant_id"]] for m in members]
    await conn.execute(
        insert(payout_items),
        [
            {"payout_id": pid, "statement_id": sid, "amount": amount}
            for pid, p in zip(ids, members, strict=True)
            for sid, amount in p["items"]
        ],
    )
    return int(batch_id), ids


async def finish_batch(conn: AsyncConnection, batch_id: int, **values: Any) -> bool:
    """Move a prepared batch and its payouts to ``values`` (``state`` done or failed);
    False if it was not prepared any more (recorded by another pass)."""
    changed = await conn.execute(
        update(payout_batches)
        .where(payout_batches.c.id == batch_id, payout_batches.c.state == "prepared")
        .values(**values)
    )
    if changed.rowcount != 1:
        return False
    await conn.execute(
        update(payouts)
        .where(payouts.c.batch_id == batch_id, payouts.c.state == "prepared")
        .values(**values)
    )
    return True


async def prepared_batches(
    conn: AsyncConnection, ledger: str
) -> list[tuple[Row[Any], list[Row[Any]], dict[int, list[tuple[str, int]]]]]:
    """Prepared batches on ``ledger`` (oldest first): each with its payouts (in the order
    it pays them) and the statements each payout pays."""
    batches = (
        await conn.execute(
            select(payout_batches)
            .where(payout_batches.c.state == "prepared", payout_batches.c.ledger == ledger)
            .order_by(payout_batches.c.id)
        )
    ).all()
    if not batches:
        return []
    ids = [b.id for b in batches]
    members = (
        await conn.execute(
            select(payouts).where(payouts.c.batch_id.in_(ids)).order_by(payouts.c.id)
        )
    ).all()
    items: dict[int, list[tuple[str, int]]] = {}
    for r in await conn.execute(
        select(payout_items)
        .join(payouts, payouts.c.id == payout_items.c.payout_id)
        .where(payouts.c.batch_id.in_(ids))
    ):
        items.setdefault(int(r.payout_id), []).append((r.statement_id, int(r.amount)))
    by_batch: dict[int, list[Row[Any]]] = {}
    for m in members:
        by_batch.setdefault(int(m.batch_id), []).append(m)
    return [(b, by_batch.get(int(b.id), []), items) for b in batches]


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
