"""What the household holds back while the grid does not believe a meter (pure rules)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from p2p_energy_client.meter_trust import FLAGS_KEPT, REFUSED, WAITING, MeterTrust

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
Q = timedelta(minutes=15)


def _refused(trust: MeterTrust, now: datetime, power: int = 50_000) -> None:
    trust.refused_asset(
        "pv", "waiting", rated_power_w=power, now=now, interval=Q, absolute_power_w=1_000_000
    )


def test_a_waiting_asset_is_offered_again_after_a_growing_wait() -> None:
    trust = MeterTrust()
    _refused(trust, T0)
    assert trust.held_assets(T0 + Q - timedelta(seconds=1)) == {"pv"}
    assert trust.held_assets(T0 + Q) == set()  # offered again after one interval
    _refused(trust, T0 + Q)
    assert trust.assets["pv"].retry_at == T0 + 3 * Q  # then two
    for _ in range(10):
        _refused(trust, T0)
    assert trust.assets["pv"].retry_at == T0 + timedelta(hours=6)  # at most six hours
    assert trust.held_sides(T0, {"pv": "source"}) == {"sell"}
    trust.accepted({"pv"})
    assert trust.assets == {}


def test_above_the_absolute_maximum_is_refused_at_once() -> None:
    trust = MeterTrust()
    trust.refused_asset(
        "pv", "too big", rated_power_w=2_000_000, now=T0, interval=Q, absolute_power_w=1_000_000
    )
    assert trust.assets["pv"].status == REFUSED
    assert trust.refused_assets() == {"pv"}


def test_a_new_declaration_ends_a_wait_but_only_a_larger_one_a_refusal() -> None:
    trust = MeterTrust()
    _refused(trust, T0)
    trust.forget_outdated({"pv": 50_000})
    assert trust.assets["pv"].status == WAITING
    trust.forget_outdated({"pv": 20_000})  # perhaps within the limits now
    assert trust.assets == {}
    trust.approval({"asset": "pv", "status": "refused", "declared_power_w": 50_000, "reason": "x"})
    trust.forget_outdated({"pv": 20_000})  # still covered by the refusal
    assert trust.assets["pv"].status == REFUSED
    trust.forget_outdated({"pv": 60_000})  # a new request
    assert trust.assets == {}
    _refused(trust, T0)
    trust.forget_outdated({})  # removed
    assert trust.assets == {}


def test_approval_clears_the_asset_and_the_held_sides() -> None:
    trust = MeterTrust()
    _refused(trust, T0)
    trust.refused_side("sell", "waiting", T0, Q)
    trust.approval({"asset": "pv", "status": "approved", "approved_power_w": 20_000})
    assert (trust.assets, trust.sides) == ({}, {})


def test_flags_are_kept_until_decided_and_bounded() -> None:
    trust = MeterTrust()
    for i in range(FLAGS_KEPT + 5):
        trust.flagged(
            {
                "asset": "pv",
                "interval": (T0 + i * Q).isoformat(),
                "reading_wh": 900,
                "bound_wh": 500,
                "code": "over_rating",
                "reason": "…",
            }
        )
    assert len(trust.flags) == FLAGS_KEPT
    assert min(f.interval for f in trust.flags.values()) == T0 + 5 * Q  # the oldest went
    decided = trust.decided({"asset": "pv", "interval": "2026-11-27T11:15:00Z"})
    assert decided is not None and decided.interval == T0 + 5 * Q
    assert len(trust.flags) == FLAGS_KEPT - 1
    assert MeterTrust.from_state(trust.to_state()) == trust
