"""``p2p-grid ledger``: the grid's ledger and payments, for the operator.

::

    p2p-grid ledger show                      kind, the grid's address and balance, totals,
                                              and what payouts to producers need now
    p2p-grid ledger mint ADDRESS AMOUNT       new local-ledger money (AMOUNT in currency
                                              units, e.g. 25 or 12.50; --micro for micro-units)
    p2p-grid ledger balances                  local-ledger accounts with money, and the totals
    p2p-grid ledger transfers [--after N]     local-ledger entries (--address to filter)
    p2p-grid ledger verify                    replay the local ledger's hash chain and balances
    p2p-grid ledger overdue                   statements owed to the grid, past due
    p2p-grid ledger payouts                   payouts to producers, newest first
    p2p-grid ledger pay-producers             one payout pass now

Each works on the database of the existing grid directly (the config as
:mod:`.locate` finds it), so it runs with or without a server; exits 1 when
``verify`` finds a problem. ``show``, ``payouts`` and ``pay-producers`` also
say on stderr when payouts wait because the grid's account lacks money, and
how to fund it.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from decimal import Decimal, InvalidOperation
from typing import Any

from grid_server.service.local_ledger import verify_ledger
from grid_server.service.payments import PaymentService
from grid_server.service.payout_outlook import payout_outlook
from grid_server.service.wiring import Grid
from p2p_energy_client.crypto import is_address
from p2p_energy_client.protocol import MAX_SEQ

from .locate import add_common, run_on_grid

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
    return run_on_grid(args, functools.partial(_run, args), ledger=True)


async def _run(args: argparse.Namespace, grid: Grid) -> int:
    if args.action == "mint":
        return await _mint(grid.payments, args)
    result = await _action(grid, args)
    print(json.dumps(result, indent=2))
    if args.action in ("show", "payouts", "pay-producers"):
        outlook = await payout_outlook(grid.payments, grid.db, grid.clock)
        hint = outlook.funding_hint()
        if hint is not None:
            print(hint, file=sys.stderr)
    return 0 if args.action != "verify" or result["ok"] else 1


async def _mint(payments: PaymentService, args: argparse.Namespace) -> int:
    if len(args.args) != 2 or not is_address(args.args[0]):
        print("usage: p2p-grid ledger mint ADDRESS AMOUNT [--micro] [--memo TEXT]")
        return 2
    try:
        amount = parse_amount(args.args[1], micro=args.micro)
    except ValueError as exc:
        print(f"error: {exc}")
        return 2
    entry = await payments.mint(args.args[0], amount, args.memo)
    print(json.dumps(entry.to_wire(), indent=2))
    return 0


async def _action(grid: Grid, args: argparse.Namespace) -> Any:
    """The answer of every action but ``mint``, as JSON data."""
    payments = grid.payments
    if args.action == "show":
        outlook = await payout_outlook(payments, grid.db, grid.clock)
        return {**await payments.ledger_summary(), "payouts": outlook.to_wire()}
    if args.action == "balances":
        return await payments.balances()
    if args.action == "transfers":
        async with grid.db.read() as conn:
            entries = await payments.store.entries(
                conn, after=args.after, limit=args.limit, address=args.address
            )
        return [e.to_wire() for e in entries]
    if args.action == "verify":
        async with grid.db.read() as conn:
            return await verify_ledger(payments.store, conn)
    if args.action == "overdue":
        return await payments.overdue()
    if args.action == "payouts":
        return await grid.payouts.list()
    return (await grid.payouts.run_once()).to_wire()
