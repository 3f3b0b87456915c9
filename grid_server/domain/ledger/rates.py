"""Statements are in the grid's currency; ledgers count in their own unit.

A *rate* is an exact fraction: ledger units per micro-unit of the currency
(``1`` on the local ledger, whose unit *is* the micro-unit; ``1000 / p`` on
IOTA when one IOTA costs ``p`` currency units, since 1 IOTA = 10^9 nanos and
one currency unit = 10^6 micro-units). It is written as ``str(Fraction)``:
``"1"``, ``"4000"``, ``"10000000/2137"``.

Rounding never favours the payer: what a participant owes the grid is
rounded up to a whole ledger unit, what the grid owes a participant is
rounded down. The rate and the ledger amount are recorded in the statement
when it is issued, so a later rate change never changes what is due.
"""

from __future__ import annotations

import math
from datetime import datetime
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Protocol

from p2p_energy_client.units import MICRO_PER_UNIT

NANOS_PER_IOTA = 10**9


def parse_rate(text: str) -> Fraction:
    """A recorded rate (``"4000"``, ``"10000000/2137"``, ``"0.5"``); positive."""
    try:
        rate = Fraction(text)
    except (ValueError, ZeroDivisionError) as exc:
        raise ValueError(f"{text!r} is not a rate") from exc
    if rate <= 0:
        raise ValueError("a rate must be positive")
    return rate


def format_rate(rate: Fraction) -> str:
    return str(rate)


def rate_from_price(price: str, units_per_coin: int = NANOS_PER_IOTA) -> Fraction:
    """Ledger units per micro-unit when one coin (``units_per_coin`` units) costs ``price``."""
    try:
        value = Decimal(price)
    except InvalidOperation as exc:
        raise ValueError(f"{price!r} is not a decimal price") from exc
    if not value.is_finite() or value <= 0:
        raise ValueError("the price of a coin must be positive")
    return Fraction(units_per_coin) / (Fraction(value) * MICRO_PER_UNIT)


def ledger_amount(amount_micro: int, rate: Fraction) -> int:
    """A statement amount in ledger units, with its sign; rounded against the payer."""
    exact = abs(amount_micro) * rate
    if amount_micro >= 0:
        return math.ceil(exact)  # the participant pays: round up
    return -math.floor(exact)  # the grid pays: round down


def paid_micro(amount_due_micro: int, ledger_due: int, ledger_paid: int, rate: Fraction) -> int:
    """How much of a statement's currency amount a ledger amount settles (same sign).

    Paid in full (in ledger units) is the whole amount; a part is converted
    back and rounded down, so a partial payment never shows as more than it is.
    """
    if ledger_due == 0 or abs(ledger_paid) >= abs(ledger_due):
        return amount_due_micro
    part = min(math.floor(Fraction(abs(ledger_paid)) / rate), abs(amount_due_micro))
    return part if amount_due_micro >= 0 else -part


def statement_status(ledger_due: int, ledger_paid: int) -> str:
    if abs(ledger_paid) >= abs(ledger_due):
        return "paid"
    return "partially_paid" if ledger_paid else "issued"


class RateSource(Protocol):
    """Where the grid gets the rate for statements it issues (pluggable).

    ``rate`` returns ledger units per micro-unit of ``currency`` at ``at``.
    Configure a custom source as ``[grid.ledger] rate_source =
    "package.module:factory"``; the factory is called with the grid's
    :class:`~grid_server.config.LedgerConfig` and returns a RateSource.
    """

    async def rate(self, currency: str, at: datetime) -> Fraction: ...


class FixedRate:
    """A fixed, configured rate."""

    def __init__(self, rate: Fraction) -> None:
        if rate <= 0:
            raise ValueError("a rate must be positive")
        self._rate = rate

    async def rate(self, currency: str, at: datetime) -> Fraction:
        return self._rate
