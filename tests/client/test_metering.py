"""Energy per interval from cumulative meters: resets, gaps, restarts, conservation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2p_energy_client.metering import (
    MeteringError,
    MeterTracker,
    parse_state,
    to_wh,
)

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def energies(tracker: MeterTracker, now: datetime) -> list[tuple[int, int]]:
    return [
        (int((e.interval - T0).total_seconds() // 60), e.energy_wh) for e in tracker.finalize(now)
    ]


def test_delta_split_at_boundary() -> None:
    tracker = MeterTracker(15)
    tracker.observe(1000.0, at(10))
    tracker.observe(1300.0, at(20))  # 300 Wh over 10 min: 150 before 10:15, 150 after
    assert energies(tracker, at(20)) == [(0, 150)]
    tracker.observe(1400.0, at(30))
    assert energies(tracker, at(30)) == [(15, 250)]


def test_interval_waits_for_grace_then_reports_quiet_meter() -> None:
    tracker = MeterTracker(15, grace=timedelta(minutes=2))
    tracker.observe(500.0, at(1))
    tracker.observe(600.0, at(14))
    assert energies(tracker, at(15.5)) == []  # the update after 10:15 may still come
    assert energies(tracker, at(17)) == [(0, 100)]
    # A meter whose total doesn't change sends nothing: zeros, one per interval.
    assert energies(tracker, at(40)) == [(15, 0)]


def test_reset_counts_from_zero() -> None:
    tracker = MeterTracker(15)
    tracker.observe(5000.0, at(1))
    tracker.observe(5100.0, at(5))
    tracker.observe(40.0, at(10))  # inverter restarted its daily counter
    tracker.observe(60.0, at(16))
    assert energies(tracker, at(16)) == [(0, 100 + 40 + 16)]  # 20 Wh over 10:10-10:16


def test_reset_within_rated_power_counts_from_zero() -> None:
    """A daily counter's restart with a rated power known: Home Assistant's rule still."""
    tracker = MeterTracker(15)
    tracker.observe(5000.0, at(1), max_power_w=3000)
    tracker.observe(40.0, at(10), max_power_w=3000)  # 40 Wh in 9 min: 3 kW allows 450
    tracker.observe(60.0, at(16), max_power_w=3000)
    assert energies(tracker, at(16)) == [(0, 40 + 16)]
    assert tracker.jumps == 0


@pytest.mark.parametrize(
    ("totals", "expected"),
    [
        # A new meter that starts at its own reading: 5 kWh in 4 min is no 3 kW source.
        ([10_000.0, 10_100.0, 5_000.0, 5_050.0], [(0, 100 + 50)]),
        # A glitch to zero and back: the jump back is not energy either.
        ([10_000.0, 10_100.0, 0.0, 10_150.0], [(0, 100)]),
        # A spike up and back down.
        ([10_000.0, 90_000.0, 10_020.0, 10_070.0], [(0, 50)]),
    ],
    ids=["swap-to-a-used-meter", "glitch-to-zero-and-back", "spike"],
)
def test_jump_beyond_rated_power_is_a_new_starting_point(
    totals: list[float], expected: list[tuple[int, int]]
) -> None:
    """Not one reading the grid refuses as over capacity: the new total is the baseline."""
    tracker = MeterTracker(15)
    for minute, total in zip((1, 5, 9, 13), totals, strict=True):
        tracker.observe(total, at(minute), max_power_w=3000)
    tracker.observe(totals[-1], at(16), max_power_w=3000)
    assert energies(tracker, at(16)) == expected
    assert tracker.jumps >= 1
    assert MeterTracker.from_state(tracker.to_state()).jumps == tracker.jumps


def test_small_drop_is_jitter_not_reset() -> None:
    tracker = MeterTracker(15)
    tracker.observe(1000.0, at(1))
    tracker.observe(990.0, at(5))  # 1 % dip: noise
    tracker.observe(1010.0, at(10))  # counts only what exceeds the highest seen
    tracker.observe(1010.0, at(16))
    assert energies(tracker, at(16)) == [(0, 10)]


def test_unavailable_gap_is_spread_when_meter_returns() -> None:
    tracker = MeterTracker(15, grace=timedelta(minutes=2), max_hold=timedelta(minutes=40))
    tracker.observe(0.0, at(0))
    tracker.mark_unavailable()
    assert energies(tracker, at(20)) == []  # held open: the gap's energy is unknown
    tracker.observe(900.0, at(30))  # back: 900 Wh over 30 min
    assert energies(tracker, at(30)) == [(0, 450), (15, 450)]


def test_long_outage_gives_up_and_keeps_energy() -> None:
    tracker = MeterTracker(15, max_hold=timedelta(minutes=40))
    tracker.observe(0.0, at(0))
    tracker.mark_unavailable()
    assert energies(tracker, at(56)) == [(0, 0)]
    tracker.observe(600.0, at(60))
    # 10:00 was already reported: its share moves to the oldest open interval.
    assert energies(tracker, at(60)) == [(15, 300), (30, 150), (45, 150)]


def test_fractions_are_carried_not_lost() -> None:
    tracker = MeterTracker(15)
    tracker.observe(0.0, at(0))
    for k in range(1, 5):
        tracker.observe(k * 15 * 0.3333, at(k * 15))
    total = sum(e for _, e in energies(tracker, at(60)))
    assert total == 19  # floor(4 * 15 * 0.3333 = 19.998)


def test_restart_round_trip_counts_once() -> None:
    tracker = MeterTracker(15)
    tracker.observe(100.0, at(1))
    tracker.observe(250.0, at(7))
    restored = MeterTracker.from_state(tracker.to_state())
    assert restored == tracker
    restored.observe(250.0, at(30))  # Home Assistant restarted; same total restored
    restored.observe(400.0, at(31))
    assert sum(e for _, e in energies(restored, at(48))) == 300


def test_out_of_order_observation_is_ignored() -> None:
    tracker = MeterTracker(15)
    tracker.observe(100.0, at(5))
    tracker.observe(200.0, at(10))
    tracker.observe(150.0, at(8))
    tracker.observe(200.0, at(16))
    assert energies(tracker, at(16)) == [(0, 100)]


def test_units_and_states() -> None:
    assert to_wh(1.5, "kWh") == 1500.0
    assert to_wh(2, "MWh") == 2_000_000.0
    with pytest.raises(MeteringError):
        to_wh(1, "W")
    assert parse_state("12.5") == 12.5
    for bad in ("unavailable", "unknown", None, "nan", "-3", "inf"):
        assert parse_state(bad) is None
    with pytest.raises(MeteringError):
        MeterTracker(15).observe(1.0, datetime(2026, 1, 1))


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.floats(min_value=0.01, max_value=40),  # minutes since previous state
            st.one_of(
                st.floats(min_value=0, max_value=500),  # Wh increase
                st.just(-1.0),  # a reset
                st.just(-2.0),  # unavailable
            ),
        ),
        min_size=1,
        max_size=60,
    )
)
def test_energy_is_conserved(steps: list[tuple[float, float]]) -> None:
    """Whatever the sequence, reported + pending energy equals what the meter counted."""
    tracker = MeterTracker(15)
    now, total, counted = at(0), 1000.0, 0.0
    tracker.observe(total, now)
    reported = 0
    for minutes, change in steps:
        now += timedelta(minutes=minutes)
        if change == -2.0:
            tracker.mark_unavailable()
        elif change == -1.0:
            total = 0.0
            tracker.observe(total, now)
        else:
            total += change
            counted += change
            tracker.observe(total, now)
        reported += sum(e.energy_wh for e in tracker.finalize(now))
    pending = sum(tracker.open_wh.values()) + tracker.carry_wh
    assert reported + pending == pytest.approx(counted, abs=1e-6)
    assert reported <= counted + 1e-6
