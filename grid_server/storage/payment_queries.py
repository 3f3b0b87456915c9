"""The queries of statement payments and local-ledger transfers (``grid_server.service``).

Used by the writer's payment handlers (a whole batch at a time, rows locked
``FOR UPDATE`` on PostgreSQL until the commit) and by the payment service
(statement terms, paying a statement, the IOTA pre-check). Everything runs
in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from .schema import (
    envelopes,
    ledger_accounts,
    ledger_entries,
    participants,
    payments,
    payouts,
    statement_terms,
    statements,
)

# --- statements and their terms ------------------------------------------------------


def _statements_with_terms() -> Select[Any]:
    """Statements with their owner's address and ledger terms (joined by the caller)."""
    return select(
        statements,
        participants.c.address,
        statement_terms.c.ledger,
        statement_terms.c.unit,
        statement_terms.c.rate,
        statement_terms.c.amount_due.label("terms_due"),
        statement_terms.c.paid.label("terms_paid"),
        statement_terms.c.due_at,
    ).join(participants, participants.c.id == statements.c.participant_id)


async def statements_with_terms(
    conn: AsyncConnection, ids: Collection[str], *, lock: bool
) -> list[Row[Any]]:
    """The statements among ``ids`` that have terms; ``lock``: both rows ``FOR UPDATE``."""
    query = _statements_with_terms().join(
        statement_terms, statement_terms.c.statement_id == statements.c.id
    )
    query = query.where(statements.c.id.in_(ids))
    if lock:
        # In id order, the order every writer locks statements in (see audit_log).
        query = query.order_by(statements.c.id).with_for_update(
            of=[statements.c.id, statement_terms.c.statement_id]
        )
    return list(await conn.execute(query))


async def lock_statements(conn: AsyncConnection, ids: Collection[str]) -> None:
    """PostgreSQL: lock the statements among ``ids`` ``FOR UPDATE``, in id order (see
    audit_log), with or without terms: a later ``statement_for_update`` then never waits."""
    query = select(statements.c.id).where(statements.c.id.in_(ids))
    await conn.execute(query.order_by(statements.c.id).with_for_update())


async def statement_for_update(
    conn: AsyncConnection, statement_id: str, *, lock: bool
) -> Row[Any] | None:
    """One statement, with its terms when it has them (``ledger`` None when not)."""
    query = _statements_with_terms().outerjoin(
        statement_terms, statement_terms.c.statement_id == statements.c.id
    )
    query = query.where(statements.c.id == statement_id)
    if lock:
        query = query.with_for_update(of=statements)
    return (await conn.execute(query)).one_or_none()


async def insert_terms(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    await conn.execute(insert(statement_terms), rows)


async def set_paid(
    conn: AsyncConnection, statement_id: str, *, paid: int, paid_micro: int, status: str
) -> None:
    """A statement's paid amount in ledger units and in micro-units, and its status."""
    await conn.execute(
        update(statement_terms)
        .where(statement_terms.c.statement_id == statement_id)
        .values(paid=paid)
    )
    await conn.execute(
        update(statements)
        .where(statements.c.id == statement_id)
        .values(paid_micro=paid_micro, status=status)
    )


async def set_paid_many(conn: AsyncConnection, rows: list[tuple[str, int, int, str]]) -> None:
    """:func:`set_paid` for many: ``(statement id, paid, paid_micro, status)``."""
    await conn.execute(
        update(statement_terms)
        .where(statement_terms.c.statement_id == bindparam("k_id"))
        .values(paid=bindparam("paid")),
        [{"k_id": sid, "paid": paid} for sid, paid, _, _ in rows],
    )
    await conn.execute(
        update(statements)
        .where(statements.c.id == bindparam("k_id"))
        .values(paid_micro=bindparam("paid_micro"), status=bindparam("status")),
        [{"k_id": sid, "paid_micro": micro, "status": status} for sid, _, micro, status in rows],
    )


# --- transaction ids --------------------------------------------------------------


async def ledger_tx_ids(conn: AsyncConnection, ids: Collection[str]) -> set[str]:
    """The ids among ``ids`` that are on the local ledger already."""
    query = select(ledger_entries.c.tx_id).where(ledger_entries.c.tx_id.in_(ids))
    return set((await conn.execute(query)).scalars().all())


async def used_tx_ids(conn: AsyncConnection, ids: Collection[str]) -> set[str]:
    """The ids among ``ids`` that settled a payment or a payout before."""
    used: set[str] = set()
    for table in (payments, payouts):
        query = select(table.c.tx_id).where(table.c.tx_id.in_(ids))
        used.update((await conn.execute(query)).scalars().all())
    return used


async def tx_used(conn: AsyncConnection, tx_id: str) -> bool:
    for table in (payments, payouts):
        if await conn.scalar(select(table.c.id).where(table.c.tx_id == tx_id)):
            return True
    return False


async def payment_recorded(conn: AsyncConnection, tx_id: str) -> bool:
    return bool(await conn.scalar(select(payments.c.id).where(payments.c.tx_id == tx_id)))


async def envelope_accepted(
    conn: AsyncConnection, sender: str, seq: int, payload_hash: bytes
) -> bool:
    """Whether this envelope (signer, seq and signed payload) was accepted already."""
    query = select(envelopes.c.log_seq).where(
        envelopes.c.sender == sender,
        envelopes.c.seq == seq,
        envelopes.c.payload_hash == payload_hash,
    )
    return bool(await conn.scalar(query))


# --- ledger accounts and entries --------------------------------------------------


async def accounts(
    conn: AsyncConnection, addresses: Collection[str], *, lock: bool
) -> dict[str, tuple[int, int]]:
    """``address → (balance, last seq)`` of the accounts that exist."""
    query = select(
        ledger_accounts.c.address, ledger_accounts.c.balance, ledger_accounts.c.seq
    ).where(ledger_accounts.c.address.in_(addresses))
    if lock:
        # Under the ledger head, which serialises the writers of accounts; in
        # address order all the same.
        query = query.order_by(ledger_accounts.c.address).with_for_update()
    return {r.address: (int(r.balance), int(r.seq)) for r in await conn.execute(query)}


async def save_accounts(
    conn: AsyncConnection,
    existing: Iterable[tuple[str, int, int]],
    created: Iterable[tuple[str, int, int]],
    now: datetime,
) -> None:
    """Accounts ``(address, balance, seq)``: ``existing`` updated, ``created`` inserted."""
    updates = [{"k_address": a, "balance": b, "seq": s, "updated_at": now} for a, b, s in existing]
    if updates:
        await conn.execute(
            update(ledger_accounts)
            .where(ledger_accounts.c.address == bindparam("k_address"))
            .values(
                balance=bindparam("balance"),
                seq=bindparam("seq"),
                updated_at=bindparam("updated_at"),
            ),
            updates,
        )
    inserts = [{"address": a, "balance": b, "seq": s, "updated_at": now} for a, b, s in created]
    if inserts:
        await conn.execute(insert(ledger_accounts), inserts)


async def insert_ledger_entries(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    await conn.execute(insert(ledger_entries), rows)


async def insert_payments(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    await conn.execute(insert(payments), rows)
