"""Pure payment rules: rates and rounding, statement status, payout planning, config."""

from __future__ import annotations

from datetime import UTC, datetime
from fractions import Fraction

import pytest
from pydantic import ValidationError

from grid_server.config import LedgerConfig
from grid_server.domain.ledger import (
    FixedRate,
    StatementPosition,
    coverage_by_period,
    plan_payouts,
    statement_status,
)
from grid_server.service.payments import TermsFactory, make_rate_source
from p2p_energy_client.units import (
    format_rate,
    ledger_amount,
    paid_micro,
    parse_rate,
    rate_from_price,
)

P1 = datetime(2026, 11, 27, tzinfo=UTC)
P2 = datetime(2026, 11, 28, tzinfo=UTC)


def test_rates_are_exact_and_round_against_the_payer() -> None:
    assert rate_from_price("0.25") == 4000
    odd = rate_from_price("0.2137")
    assert format_rate(odd) == "10000000/2137" and parse_rate(format_rate(odd)) == odd
    assert ledger_amount(1, odd) == 4680  # 4679.45… nanos owed to the grid: up
    assert ledger_amount(-1, odd) == -4679  # owed by the grid: down
    assert ledger_amount(0, odd) == 0
    assert ledger_amount(123, Fraction(1)) == 123
    for bad in ("0", "-1", "x", "1/0"):
        with pytest.raises(ValueError):
            parse_rate(bad)
    with pytest.raises(ValueError):
        rate_from_price("0")


def test_paid_micro_and_status() -> None:
    rate = rate_from_price("0.2137")
    due_micro = 1_000
    due = ledger_amount(due_micro, rate)
    assert paid_micro(due_micro, due, due, rate) == due_micro
    assert paid_micro(due_micro, due, due + 5, rate) == due_micro
    half = paid_micro(due_micro, due, due // 2, rate)
    assert 0 < half < due_micro and half * rate <= due // 2
    assert paid_micro(-due_micro, -due, -(due // 2), rate) == -half
    assert statement_status(due, 0) == "issued"
    assert statement_status(due, 1) == "partially_paid"
    assert statement_status(-due, -due) == "paid"
    assert statement_status(0, 0) == "paid"


def test_payouts_follow_collection_threshold_and_budget() -> None:
    positions = [
        StatementPosition("c1", 1, P1, 1_000, 500),  # consumer: half paid
        StatementPosition("c2", 2, P1, 1_000, 1_000),
        StatementPosition("p1", 3, P1, -1_500, 0),  # producer: 75 % covered
        StatementPosition("p2", 4, P1, -100, 0),
        StatementPosition("p3", 3, P2, -40, 0, in_flight=10),  # nobody billed in P2
    ]
    assert coverage_by_period(positions) == {P1: Fraction(3, 4), P2: Fraction(1)}
    plans, unfunded = plan_payouts(positions, policy="collected", threshold=50, budget=10_000)
    assert [(p.participant_id, p.items) for p in plans] == [
        (3, (("p1", 1_125), ("p3", 30))),
        (4, (("p2", 75),)),
    ]
    assert not unfunded
    # Below the threshold small amounts wait; beyond the budget big ones do.
    plans, _ = plan_payouts(positions, policy="collected", threshold=100, budget=10_000)
    assert [p.participant_id for p in plans] == [3]
    plans, unfunded = plan_payouts(positions, policy="collected", threshold=1, budget=100)
    assert [p.participant_id for p in plans] == [4] and [p.participant_id for p in unfunded] == [3]
    # Float: everything owed, whatever was collected; paid amounts are not paid again.
    plans, _ = plan_payouts(
        [*positions[:2], StatementPosition("p1", 3, P1, -1_500, -1_000)],
        policy="float",
        threshold=1,
        budget=10_000,
    )
    assert [(p.participant_id, p.total) for p in plans] == [(3, 500)]


def test_ledger_config_validation() -> None:
    with pytest.raises(ValidationError, match="url or network"):
        LedgerConfig(kind="iota", iota_price="0.25")
    with pytest.raises(ValidationError, match="iota_price"):
        LedgerConfig(kind="iota", iota={"network": "testnet"})
    with pytest.raises(ValidationError, match="not both"):
        LedgerConfig(rate="1", iota_price="1")
    with pytest.raises(ValidationError):
        LedgerConfig(unknown_setting=1)
    config = LedgerConfig(kind="iota", iota_price="0.25", iota={"network": "devnet"})
    assert config.iota.network == "devnet"


def three_per_micro(config: LedgerConfig) -> FixedRate:
    """A rate source factory, as ``rate_source = "module:factory"`` names it."""
    return FixedRate(Fraction(3))


async def test_pluggable_rate_source_sets_the_terms() -> None:
    config = LedgerConfig(rate_source="tests.payments.test_rules:three_per_micro")
    source = make_rate_source(config)
    assert await source.rate("EUR", P1) == 3
    factory = TermsFactory("local", "micro-EUR", await source.rate("EUR", P1), 3600)
    terms = factory.for_amount(-7, P1)
    assert (terms.amount_due, terms.rate, terms.paid) == (-21, "3", 0)
    assert (terms.due_at - P1).total_seconds() == 3600
    assert await make_rate_source(LedgerConfig()).rate("EUR", P1) == 1
    assert await make_rate_source(LedgerConfig(iota_price="0.5")).rate("EUR", P1) == 2000
