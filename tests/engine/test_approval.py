"""Approval of declared ratings: automatic within the grid's limits, else the operator's call."""

from __future__ import annotations

import pytest

from grid_server.config import ApprovalLimitsConfig
from grid_server.domain.approval import (
    AssetKind,
    Decision,
    Declaration,
    Status,
    decide,
)
from p2p_energy_client.protocol import MeterDecl, SourceDecl, SourceKind

LIMITS = ApprovalLimitsConfig().limits()
LIMIT_OF = {
    AssetKind.SOLAR: 30_000,
    AssetKind.WIND: 10_000,
    AssetKind.BATTERY: 12_000,
    AssetKind.OTHER: 10_000,
    AssetKind.METER: 43_000,
}


def declared(kind: AssetKind, power: int | None, capacity: int | None = None) -> Declaration:
    return Declaration("asset-1", kind, power, capacity)


@pytest.mark.parametrize("kind", list(AssetKind))
def test_at_the_limit_is_automatic_and_one_watt_above_waits(kind: AssetKind) -> None:
    limit = LIMIT_OF[kind]
    assert LIMITS.power_limit(kind) == limit
    at = decide(declared(kind, limit), LIMITS)
    assert (at.status, at.power_w, at.usable, at.reason) == (Status.AUTOMATIC, limit, True, "")
    above = decide(declared(kind, limit + 1), LIMITS)
    assert above.status is Status.PENDING
    assert not above.usable
    assert above.power_w is None
    (excess,) = above.excess
    assert (excess.field, excess.declared, excess.limit) == ("rated_power_w", limit + 1, limit)
    assert "rated_power_w" in above.reason
    assert f"{limit + 1} W" in above.reason
    assert f"{limit} W" in above.reason
    assert "waiting for the operator" in above.reason


def test_meter_without_a_rating_is_automatic() -> None:
    approval = decide(Declaration.of(MeterDecl("house", "House")), LIMITS)
    assert (approval.status, approval.power_w) == (Status.AUTOMATIC, None)


def test_battery_capacity_has_its_own_limit() -> None:
    ok = decide(declared(AssetKind.BATTERY, 5000, 30_000), LIMITS)
    assert (ok.status, ok.capacity_wh) == (Status.AUTOMATIC, 30_000)
    big = decide(declared(AssetKind.BATTERY, 5000, 30_001), LIMITS)
    assert big.status is Status.PENDING
    assert [e.field for e in big.excess] == ["usable_capacity_wh"]
    assert "30001 Wh" in big.reason


def test_both_fields_above_are_both_named() -> None:
    approval = decide(declared(AssetKind.BATTERY, 20_000, 50_000), LIMITS)
    assert [e.field for e in approval.excess] == ["rated_power_w", "usable_capacity_wh"]


@pytest.mark.parametrize(
    ("power", "capacity", "field"),
    [
        (1_000_000_000, None, "rated_power_w"),  # the 1 GW
        (1_000_001, None, "rated_power_w"),
        (5_000, 4_000_001, "usable_capacity_wh"),
    ],
)
def test_above_the_absolute_maximum_is_refused_even_with_approval(
    power: int, capacity: int | None, field: str
) -> None:
    asset = declared(AssetKind.BATTERY if capacity else AssetKind.SOLAR, power, capacity)
    decision = Decision.approve(asset)
    for given in (None, decision):
        approval = decide(asset, LIMITS, given)
        assert approval.status is Status.REFUSED
        assert not approval.usable
        assert [e.field for e in approval.excess] == [field]
        assert approval.excess[0].absolute
        assert "the most anyone may declare" in approval.reason


def test_exactly_the_absolute_maximum_waits_for_the_operator() -> None:
    asset = declared(AssetKind.SOLAR, 1_000_000)
    assert decide(asset, LIMITS).status is Status.PENDING
    assert decide(asset, LIMITS, Decision.approve(asset)).status is Status.APPROVED


def test_operator_approves_at_a_lower_rating() -> None:
    asset = Declaration.of(SourceDecl("pv", "Roof", SourceKind.SOLAR, 100_000))
    decision = Decision.approve(asset, power_w=40_000, note="inspected: 40 kW inverter")
    approval = decide(asset, LIMITS, decision)
    assert (approval.status, approval.power_w, approval.usable) == (Status.APPROVED, 40_000, True)
    assert approval.note == "inspected: 40 kW inverter"


def test_operator_refusal_is_not_usable_and_says_why() -> None:
    asset = declared(AssetKind.WIND, 50_000)
    approval = decide(asset, LIMITS, Decision.refuse(asset, "no turbine on site"))
    assert approval.status is Status.REFUSED
    assert (approval.power_w, approval.usable) == (None, False)
    assert approval.reason == "asset-1: the operator refused it: no turbine on site"


def test_a_decision_covers_smaller_declarations_and_not_larger_ones() -> None:
    asset = declared(AssetKind.SOLAR, 100_000)
    approved = Decision.approve(asset, power_w=40_000)
    # Declaring less keeps the decision, never above what is declared now.
    assert decide(declared(AssetKind.SOLAR, 35_000), LIMITS, approved).power_w == 35_000
    assert decide(declared(AssetKind.SOLAR, 60_000), LIMITS, approved).power_w == 40_000
    # Declaring less than the grid's limit stays under the operator's ceiling.
    within = decide(declared(AssetKind.SOLAR, 25_000), LIMITS, approved)
    assert (within.status, within.power_w) == (Status.APPROVED, 25_000)
    # More than the operator saw is a new request.
    assert decide(declared(AssetKind.SOLAR, 100_001), LIMITS, approved).status is Status.PENDING
    # Another kind is another asset.
    assert decide(declared(AssetKind.WIND, 9_000), LIMITS, approved).status is Status.AUTOMATIC


def test_a_refusal_is_not_undone_by_declaring_a_little_less() -> None:
    refusal = Decision.refuse(declared(AssetKind.SOLAR, 100_000))
    assert decide(declared(AssetKind.SOLAR, 20_000), LIMITS, refusal).status is Status.REFUSED
    assert decide(declared(AssetKind.SOLAR, 100_001), LIMITS, refusal).status is Status.PENDING


def test_declaring_a_capacity_the_operator_never_saw_is_a_new_request() -> None:
    asset = declared(AssetKind.BATTERY, 20_000)
    decision = Decision.approve(asset)
    assert decide(asset, LIMITS, decision).status is Status.APPROVED
    assert decide(declared(AssetKind.BATTERY, 20_000, 10_000), LIMITS, decision).status is (
        Status.PENDING
    )


def test_approved_capacity_follows_what_is_declared_now() -> None:
    asset = declared(AssetKind.BATTERY, 20_000, 60_000)
    decision = Decision.approve(asset, capacity_wh=40_000)
    assert decide(asset, LIMITS, decision).capacity_wh == 40_000
    # Without a declared capacity the battery rule falls back to its rating.
    assert decide(declared(AssetKind.BATTERY, 20_000), LIMITS, decision).capacity_wh is None


@pytest.mark.parametrize(
    ("power", "capacity", "field"),
    [
        (100_001, None, "rated_power_w"),
        (0, None, "rated_power_w"),
        (None, 60_001, "usable_capacity_wh"),
        (None, 0, "usable_capacity_wh"),
    ],
)
def test_operator_cannot_approve_more_than_declared_or_nothing(
    power: int | None, capacity: int | None, field: str
) -> None:
    asset = declared(AssetKind.BATTERY, 100_000, 60_000)
    with pytest.raises(ValueError, match=field):
        Decision.approve(asset, power_w=power, capacity_wh=capacity)


def test_operator_cannot_approve_a_capacity_that_was_not_declared() -> None:
    with pytest.raises(ValueError, match="usable_capacity_wh"):
        Decision.approve(declared(AssetKind.BATTERY, 20_000), capacity_wh=10_000)


def test_limits_of_zero_send_everything_to_the_operator() -> None:
    limits = ApprovalLimitsConfig(solar_w=0).limits()
    assert decide(declared(AssetKind.SOLAR, 1), limits).status is Status.PENDING


def test_declaration_of_protocol_battery() -> None:
    decl = SourceDecl(
        "battery",
        "Home battery",
        SourceKind.BATTERY,
        5000,
        charge_meter="battery-charge",
        usable_capacity_wh=10_000,
    )
    assert Declaration.of(decl) == Declaration("battery", AssetKind.BATTERY, 5000, 10_000)
