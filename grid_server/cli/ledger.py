"""``p2p-grid ledger``: the grid's ledger and payments, for the operator.

::

    p2p-grid ledger show                      kind, the grid's address and balance, totals
    p2p-grid ledger mint ADDRESS AMOUNT       new local-ledger money (AMOUNT in currency
                                              units, e.g. 25 or 12.50; --micro for micro-units)
    p2p-grid ledger balances                  local-ledger accounts with money, and the totals
    p2p-grid ledger transfers [--after N]     local-ledger entries (--address to filter)
    p2p-grid ledger verify                    replay the local ledger's hash chain and balances
    p2p-grid ledger overdue                   statements owed to the grid, past due
    p2p-grid ledger payouts                   payouts to producers, newest first
    p2p-grid ledger pay-producers             one payout pass now

Each works on the database directly (``--config`` / ``--database-url``), so
it runs with or without a server; exits 1 when ``verify`` finds a problem.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from decimal import Decimal, InvalidOperation
from typing import Any

from grid_server.service.grid import GridService
from p2p_energy_client.crypto import is_address
from p2p_energy_client.protocol import MAX_SEQ

from .serve import add_common, settings_from

ACTIONS = (
    "show",
    "mint",
    "balances",
    "transfers",
    "verify",
    "overdue",
    "payouts",
    "pay-producers",
)


def register(subparsers: Any) -> None:
    ledger = subparsers.add_parser(
        "ledger", help="the grid's ledger: mint, balances, transfers, overdue, payouts"
    )
    add_common(ledger)
    ledger.add_argument("action", choices=ACTIONS)
    ledger.add_argument("args", nargs="*", help="mint: ADDRESS AMOUNT")
    ledger.add_argument("--micro", action="store_true", help="mint: AMOUNT is in micro-units")
    ledger.add_argument("--memo", help="mint: a note recorded with the mint")
    ledger.add_argument("--after", type=int, default=0, help="transfers: after this index")
    ledger.add_argument("--limit", type=int, default=100, help="transfers: at most this many")
    ledger.add_argument("--address", help="transfers: only those of this address")
    ledger.set_defaults(func=run)


def parse_amount(text: str, *, micro: bool) -> int:
    """Micro-units from ``12.50`` (currency units) or, with ``micro``, from ``12500000``."""
    try:
        value = Decimal(text)
    except InvalidOperation as exc:
        raise ValueError(f"{text!r} is not an amount") from exc
    amount = value if micro else value * 1_000_000
    if amount != amount.to_integral_value() or not 0 < amount <= MAX_SEQ:
        raise ValueError(f"{text!r}: a positive amount of whole micro-units is needed")
    return int(amount)


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    from grid_server.api.payments import verify_local_ledger  # noqa: PLC0415

    grid = GridService(settings_from(args))
    await grid.open()
    payments = grid.payments
    status = 0
    try:
        result: Any
        if args.action == "show":
            result = await payments.ledger_summary()
        elif args.action == "mint":
            if len(args.args) != 2 or not is_address(args.args[0]):
                print("usage: p2p-grid ledger mint ADDRESS AMOUNT [--micro] [--memo TEXT]")
                return 2
            try:
                amount = parse_amount(args.args[1], micro=args.micro)
            except ValueError as exc:
                print(f"error: {exc}")
                return 2
            result = (await payments.mint(args.args[0], amount, args.memo)).to_wire()
        elif args.action == "balances":
            async with grid.db.read() as conn:
                rows = await payments.store.balances(conn)
                total, minted = await payments.store.totals(conn)
            result = {
                "accounts": [{"address": a, "balance": b, "seq": s} for a, b, s in rows],
                "total": total,
                "minted": minted,
            }
        elif args.action == "transfers":
            async with grid.db.read() as conn:
                entries = await payments.store.entries(
                    conn, after=args.after, limit=args.limit, address=args.address
                )
            result = [e.to_wire() for e in entries]
        elif args.action == "verify":
            async with grid.db.read() as conn:
                result = await verify_local_ledger(grid, conn)
            status = 0 if result["ok"] else 1
        elif args.action == "overdue":
            result = await payments.overdue()
        elif args.action == "payouts":
            result = await payments.payouts.list()
        else:
            result = (await payments.payouts.run_once()).to_wire()
        print(json.dumps(result, indent=2))
    finally:
        await payments.stop()
        await grid.db.dispose()
    return status
