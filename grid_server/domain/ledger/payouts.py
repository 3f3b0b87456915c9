"""Which producer statements the grid pays, how much, and when.

Policy ``collected`` (the default): the grid pays what its producers are
owed for a settlement period in proportion to what that period's consumers
have paid so far (``coverage`` = collected ÷ billed in ledger units, 1 when
nobody was billed). Policy ``float``: coverage is always 1 — the grid pays
out of its own balance without waiting for consumers.

A producer is paid only when everything payable to it (over all its
statements) reaches ``threshold`` ledger units; smaller amounts accumulate.
Amounts already paid or in flight are never planned again. Payouts are
planned within ``budget`` (what the grid's account can spend now), largest
first; what does not fit waits for the next pass.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from typing import Literal

PayoutPolicy = Literal["collected", "float"]


@dataclass(frozen=True, slots=True)
class StatementPosition:
    """A statement as payouts see it (ledger units, signed like ``amount_due``)."""

    statement_id: str
    participant_id: int
    period_start: datetime
    amount_due: int  # > 0: the participant owes; < 0: the grid owes
    paid: int  # recorded so far, same sign as amount_due
    in_flight: int = 0  # payouts prepared but not yet recorded (>= 0)


@dataclass(frozen=True, slots=True)
class PayoutPlan:
    participant_id: int
    items: tuple[tuple[str, int], ...]  # (statement id, ledger units)

    @property
    def total(self) -> int:
        return sum(amount for _, amount in self.items)


def coverage_by_period(positions: Iterable[StatementPosition]) -> dict[datetime, Fraction]:
    """Per period: collected ÷ billed of the statements owed to the grid (1 if none)."""
    billed: dict[datetime, int] = defaultdict(int)
    collected: dict[datetime, int] = defaultdict(int)
    periods: set[datetime] = set()
    for p in positions:
        periods.add(p.period_start)
        if p.amount_due > 0:
            billed[p.period_start] += p.amount_due
            collected[p.period_start] += min(p.paid, p.amount_due)
    return {
        period: Fraction(collected[period], billed[period]) if billed[period] else Fraction(1)
        for period in periods
    }


def payable(position: StatementPosition, coverage: Fraction) -> int:
    """What may be paid on a producer statement now (>= 0)."""
    if position.amount_due >= 0:
        return 0
    owed = -position.amount_due
    entitled = math.floor(owed * min(coverage, Fraction(1)))
    return max(0, entitled - (-position.paid) - position.in_flight)


def plan_payouts(
    positions: Sequence[StatementPosition],
    *,
    policy: PayoutPolicy,
    threshold: int,
    budget: int,
) -> tuple[list[PayoutPlan], list[PayoutPlan]]:
    """``(payouts to make, payouts waiting for funds)``: one per producer at the threshold."""
    coverage = (
        defaultdict(lambda: Fraction(1)) if policy == "float" else coverage_by_period(positions)
    )
    by_participant: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for position in sorted(positions, key=lambda p: (p.period_start, p.statement_id)):
        amount = payable(position, coverage[position.period_start])
        if amount > 0:
            by_participant[position.participant_id].append((position.statement_id, amount))
    candidates = [
        PayoutPlan(pid, tuple(items))
        for pid, items in by_participant.items()
        if sum(a for _, a in items) >= max(threshold, 1)
    ]
    candidates.sort(key=lambda plan: (-plan.total, plan.participant_id))
    plans: list[PayoutPlan] = []
    unfunded: list[PayoutPlan] = []
    left = budget
    for plan in candidates:
        if plan.total <= left:
            plans.append(plan)
            left -= plan.total
        else:
            unfunded.append(plan)
    return plans, unfunded
