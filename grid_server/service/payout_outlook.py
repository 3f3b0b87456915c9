"""What the grid's payout account holds against what its producers are owed.

Producers are paid from the grid's own account. On the local ledger it starts
empty and money enters only by minting; what the utility pays for the
producers' surplus at the feed-in price is settled outside the ledger, so the
operator funds the account for it (``p2p-grid ledger mint <grid address> …``;
with IOTA, IOTA sent to the grid's address). Payouts that do not fit wait
(the payout worker logs "payouts wait: the grid's account holds …"); this
outlook says by how much, before anyone wonders why producers are not paid.

It plans with the payout worker's own rule
(:func:`grid_server.domain.ledger.plan_payouts`) and its queries, without a
budget, and pays nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from grid_server.domain.clock import Clock
from grid_server.domain.ledger import plan_payouts
from grid_server.storage import payout_queries
from grid_server.storage.db import Database
from p2p_energy_client.ledger.base import LedgerError
from p2p_energy_client.protocol import LedgerKind
from p2p_energy_client.units import format_money_micro, ledger_amount

from .payments import PaymentService


@dataclass(frozen=True, slots=True)
class PayoutOutlook:
    """In the ledger's unit: what the account can pay out now, what payouts would take now,
    and everything the grid still owes producers (also what waits for consumers' payments
    or a producer's threshold)."""

    unit: str
    available: int | None  # None: the balance cannot be read (IOTA node unreachable)
    payable_now: int
    owed: int
    address: str
    kind: LedgerKind

    @property
    def lacks(self) -> int | None:
        if self.available is None:
            return None
        return max(0, self.payable_now - self.available)

    def funding_hint(self) -> str | None:
        """What the operator does when payouts wait for money; None when nothing waits."""
        lacks = self.lacks
        if not lacks:
            return None
        if self.kind is LedgerKind.LOCAL:
            amount = format_money_micro(lacks, 6).rstrip("0").rstrip(".")
            return (
                f"payouts wait: the grid's account lacks {amount} ({lacks} {self.unit}); "
                f"fund it with: p2p-grid ledger mint {self.address} {amount}"
            )
        return (
            f"payouts wait: the grid's account lacks {lacks} {self.unit}; "
            f"send at least that much IOTA to {self.address}"
        )

    def to_wire(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "available": self.available,
            "payable_now": self.payable_now,
            "lacks": self.lacks,
            "owed_to_producers": self.owed,
        }


async def payout_outlook(payments: PaymentService, db: Database, clock: Clock) -> PayoutOutlook:
    """The outlook of the grid's payouts now (reads only)."""
    async with db.read() as conn:
        positions = await payout_queries.positions(conn, str(payments.kind))
        local_balance, _ = await payments.store.account(conn, payments.address)
    config = payments.config
    rate = (await payments.terms_factory(clock.now())).rate
    threshold = -ledger_amount(-config.payout_threshold_micro, rate)
    plans, _ = plan_payouts(
        positions, policy=config.payout_policy, threshold=threshold, budget=_UNLIMITED
    )
    return PayoutOutlook(
        unit=payments.unit,
        available=await _available(payments, local_balance),
        payable_now=sum(plan.total for plan in plans),
        owed=sum(p.paid - p.amount_due - p.in_flight for p in positions if p.amount_due < 0),
        address=payments.address,
        kind=payments.kind,
    )


# Larger than any ledger balance: plan every payout that is due, fundable or not.
_UNLIMITED = 2**63


async def _available(payments: PaymentService, local_balance: int) -> int | None:
    """What the account can pay out (IOTA: less the gas reserve), as the payout worker sees it."""
    if payments.kind is not LedgerKind.IOTA:
        return local_balance
    try:
        balance = await payments.iota().balance(payments.address)
    except LedgerError:
        return None
    return max(0, balance - payments.config.iota.gas_reserve_nanos)


__all__ = ["PayoutOutlook", "payout_outlook"]
