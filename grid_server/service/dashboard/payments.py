"""Payments and the ledger: recent transfers, payments and payouts with their ids;
balances; statements by status; the overdue ones."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from grid_server.storage import ledger, participants, payments
from grid_server.storage import statements as stored_statements
from grid_server.storage.statements import Overdue, StatusTotals
from p2p_energy_client.models import format_utc_ms
from p2p_energy_client.units import format_utc

from .common import PAGE_LIMIT, RECENT
from .source import Source

# What the page shows of an overdue statement (the operator's API shows more).
OVERDUE_FIELDS = (
    *("statement", "participant", "name", "period_start", "due_at", "overdue_seconds"),
    *("amount_due_micro", "paid_micro", "status"),
)


@dataclass(frozen=True, slots=True)
class PaymentRows:
    head: Any  # the ``ledger_heads`` row, None before the ledger was opened
    balances_total: int
    accounts: int
    grid_balance: int | None
    entries: Sequence[Any]
    top: Sequence[Any]
    payments: Sequence[Any]
    payouts: Sequence[Any]
    by_status: dict[str, StatusTotals]
    overdue: list[Overdue]
    names: dict[str, str]


async def fetch(conn: AsyncConnection, grid: str, grid_address: str, now: datetime) -> PaymentRows:
    entries = await ledger.latest_entries(conn, RECENT)
    top = await ledger.largest_balances(conn, RECENT)
    addresses = {e.sender for e in entries if e.sender} | {e.recipient for e in entries}
    addresses |= {a.address for a in top}
    return PaymentRows(
        await ledger.head(conn, grid),
        await ledger.balances_total(conn),
        await ledger.funded_accounts(conn),
        await ledger.balance(conn, grid_address),
        entries,
        top,
        await payments.latest_payments(conn, RECENT),
        await payments.latest_payouts(conn, RECENT),
        await stored_statements.totals_by_status(conn),
        await stored_statements.overdue(conn, now, PAGE_LIMIT),
        {**await participants.names(conn, addresses), grid_address: "the grid"},
    )


async def payments_view(source: Source) -> dict[str, Any]:
    """Recent transfers, payments and payouts with their ids; balances; overdue statements."""
    now = source.clock.now()
    async with source.db.read() as conn:
        rows = await fetch(conn, source.grid_id, source.ledger_address, now)
    return build(source, rows, now)


# --- builders ----------------------------------------------------------------------------


def build(source: Source, rows: PaymentRows, now: datetime) -> dict[str, Any]:
    names = rows.names

    def who(address: str | None) -> str | None:
        return None if address is None else names.get(address)

    return {
        "currency": source.config.currency,
        "ledger": ledger_view(source, rows),
        "transfers": [transfer_view(e, who) for e in rows.entries],
        "balances": [
            {"address": a.address, "name": who(a.address), "balance": int(a.balance)}
            for a in rows.top
        ],
        "payments": [payment_view(p, source.unit_of(p.ledger)) for p in rows.payments],
        "payouts": [payout_view(p, source.unit_of(p.ledger)) for p in rows.payouts],
        "statements": {status: asdict(t) for status, t in rows.by_status.items()},
        "overdue": [overdue_view(o, now) for o in rows.overdue],
    }


def ledger_view(source: Source, rows: PaymentRows) -> dict[str, Any]:
    head = rows.head
    return {
        "kind": str(source.config.ledger.kind),
        "address": source.ledger_address,
        "unit": source.ledger_unit,
        "entries": 0 if head is None else int(head.entries),
        "minted": 0 if head is None else int(head.minted),
        "head_hash": None if head is None else bytes(head.hash).hex(),
        "balances_total": rows.balances_total,
        "accounts": rows.accounts,
        # The grid's balance on the local ledger (with IOTA, see the node).
        "grid_balance": rows.grid_balance,
    }


def transfer_view(e: Any, who: Any) -> dict[str, Any]:
    return {
        "index": int(e._mapping["index"]),
        "tx_id": e.tx_id,
        "kind": e.kind,
        "sender": e.sender,
        "sender_name": who(e.sender),
        "recipient": e.recipient,
        "recipient_name": who(e.recipient),
        "amount": int(e.amount),
        "memo": e.memo,
        "time": format_utc_ms(e.created_at),
    }


def payment_view(p: Any, unit: str) -> dict[str, Any]:
    return {
        "tx_id": p.tx_id,
        "statement": p.statement_id,
        "participant": p.address,
        "name": p.name,
        "ledger": p.ledger,
        "unit": unit,
        "received": int(p.received),
        "credited": int(p.credited),
        "recorded_at": format_utc(p.recorded_at),
    }


def payout_view(p: Any, unit: str) -> dict[str, Any]:
    return {
        "id": int(p.id),
        "tx_id": p.tx_id,
        "recipient": p.recipient,
        "name": p.name,
        "ledger": p.ledger,
        "unit": unit,
        "amount": int(p.amount),
        "state": p.state,
        "created_at": format_utc(p.created_at),
        "completed_at": None if p.completed_at is None else format_utc(p.completed_at),
        "error": p.error,
    }


def overdue_view(o: Overdue, now: datetime) -> dict[str, Any]:
    shown = o.to_json(now)
    return {key: shown[key] for key in OVERDUE_FIELDS}


__all__ = ["PaymentRows", "build", "fetch", "payments_view"]
