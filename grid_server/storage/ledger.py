"""The local ledger's tables (reads): its head, accounts and entries.

The ledger's own writes and its chain check stay with the ledger store
(:mod:`grid_server.service.local_ledger`); these are what views and
reports read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from .schema import ledger_accounts, ledger_entries, ledger_heads


async def head(conn: AsyncConnection, grid: str) -> Any:
    """The grid's ``ledger_heads`` row, or None before the ledger was opened."""
    return (
        await conn.execute(select(ledger_heads).where(ledger_heads.c.grid == grid))
    ).one_or_none()


async def owner(conn: AsyncConnection, grid: str) -> str | None:
    """The grid's own address, as its ledger head records it."""
    return await conn.scalar(select(ledger_heads.c.address).where(ledger_heads.c.grid == grid))


async def balances_total(conn: AsyncConnection) -> int:
    return int(
        await conn.scalar(select(func.coalesce(func.sum(ledger_accounts.c.balance), 0))) or 0
    )


async def funded_accounts(conn: AsyncConnection) -> int:
    """How many accounts hold a positive balance."""
    query = select(func.count()).select_from(ledger_accounts).where(ledger_accounts.c.balance > 0)
    return int(await conn.scalar(query) or 0)


async def balance(conn: AsyncConnection, address: str) -> int | None:
    """The account's balance, or None when the ledger never saw the address."""
    found = await conn.scalar(
        select(ledger_accounts.c.balance).where(ledger_accounts.c.address == address)
    )
    return None if found is None else int(found)


async def largest_balances(conn: AsyncConnection, limit: int) -> Sequence[Any]:
    """``(address, balance)`` of the richest accounts (positive balances only)."""
    return (
        await conn.execute(
            select(ledger_accounts.c.address, ledger_accounts.c.balance)
            .where(ledger_accounts.c.balance > 0)
            .order_by(ledger_accounts.c.balance.desc(), ledger_accounts.c.address)
            .limit(limit)
        )
    ).all()


async def latest_entries(conn: AsyncConnection, limit: int) -> Sequence[Any]:
    """The newest ``ledger_entries`` rows, newest first."""
    return (
        await conn.execute(
            select(ledger_entries).order_by(ledger_entries.c.index.desc()).limit(limit)
        )
    ).all()


async def transfers(conn: AsyncConnection, address: str) -> tuple[int, int]:
    """``(into, out of)``: what transfers moved to and from ``address`` in all."""
    total = func.coalesce(func.sum(ledger_entries.c.amount), 0)
    transfer = ledger_entries.c.kind == "transfer"
    into = await conn.scalar(select(total).where(transfer, ledger_entries.c.recipient == address))
    out = await conn.scalar(select(total).where(transfer, ledger_entries.c.sender == address))
    return int(into or 0), int(out or 0)


__all__ = [
    "balance",
    "balances_total",
    "funded_accounts",
    "head",
    "largest_balances",
    "latest_entries",
    "owner",
    "transfers",
]
