"""Statements are in the grid's currency; ledgers count in their own unit.

A *rate* is an exact fraction: ledger units per micro-unit of the currency
(``1`` on the local ledger, whose unit *is* the micro-unit; ``1000 / p`` on
IOTA when one IOTA costs ``p`` currency units). The conversions and their
rounding (never in the payer's favour) are
:mod:`p2p_energy_client.units`'; this module holds where a rate comes from
(:class:`RateSource`) and a statement's status from what was paid. The rate
and the ledger amount are recorded in the statement when it is issued, so a
later rate change never changes what is due.
"""

from __future__ import annotations

from datetime import datetime
from fractions import Fraction
from typing import Protocol


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
