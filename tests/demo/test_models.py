"""The demo's physical models: sun, clouds, PV, demand, batteries, and the neighbourhood."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from grid_server.demo.models import (
    BatteryBank,
    BatterySpec,
    LoadProfile,
    PVArray,
    Site,
    Weather,
    day_times,
    pv_ac_power,
)
from grid_server.demo.neighbourhood import (
    CONSUMER,
    PV,
    PV_BATTERY,
    HouseholdSpec,
    Neighbourhood,
    kind_counts,
    make_households,
)

SITE = Site()
SUMMER = date(2026, 6, 21)
WINTER = date(2026, 12, 21)
STEP = 300  # 5-minute steps keep the tests quick


def clear_day_ac(day: date, array: PVArray, step: int = STEP) -> np.ndarray:
    solar = Weather(SITE, seed=1, step_s=step, clouds=False).day(day)
    return pv_ac_power(
        solar.poa_global(array.tilt, array.azimuth), solar.temp_air, array.kwp, array.inverter_w
    )


SOUTH = PVArray(kwp=6.0, tilt=30, azimuth=180, inverter_w=5200)


# --- solar ------------------------------------------------------------------------


def test_solar_is_zero_at_night_and_peaks_near_solar_noon() -> None:
    ac = clear_day_ac(SUMMER, SOUTH)
    times = day_times(SUMMER, STEP)
    hours = np.asarray(times.hour + times.minute / 60)
    # Frankfurt: sunrise ~03:15 UTC, sunset ~19:40 UTC on 21 June.
    assert np.all(ac[(hours < 2.5) | (hours > 20.5)] == 0)
    assert ac.max() > 0.5 * SOUTH.kwp * 1000
    # Solar noon at 8.7 °E is about 11:25 UTC; a south-facing array peaks then.
    assert abs(hours[ac.argmax()] - 11.4) < 1.0
    # Morning east, afternoon west: orientation shifts the peak the right way.
    east = clear_day_ac(SUMMER, PVArray(6.0, 30, 90, 5200))
    west = clear_day_ac(SUMMER, PVArray(6.0, 30, 270, 5200))
    assert hours[east.argmax()] < hours[ac.argmax()] < hours[west.argmax()]


def test_solar_follows_the_season() -> None:
    summer = clear_day_ac(SUMMER, SOUTH).sum() * STEP / 3600 / 1000  # kWh
    winter = clear_day_ac(WINTER, SOUTH).sum() * STEP / 3600 / 1000
    # Clear-sky yields per kWp: roughly 5-7 kWh in June, 1-2.5 kWh in December.
    assert 5.0 < summer / SOUTH.kwp < 7.5
    assert 1.0 < winter / SOUTH.kwp < 2.5
    assert summer > 2.5 * winter
    # Daylight lasts longer in summer.
    assert np.count_nonzero(clear_day_ac(SUMMER, SOUTH)) > 1.5 * np.count_nonzero(
        clear_day_ac(WINTER, SOUTH)
    )


def test_ac_power_never_exceeds_the_inverter_rating() -> None:
    # An oversized array on a small inverter clips; readings stay within the declared power.
    ac = clear_day_ac(SUMMER, PVArray(10.0, 35, 180, 6000))
    assert ac.max() == pytest.approx(6000, rel=1e-9)
    assert np.all(ac <= 6000)


def test_clouds_are_seeded_and_shared_by_the_neighbourhood() -> None:
    def index(seed: int) -> np.ndarray:
        weather = Weather(SITE, seed=seed, step_s=60)
        return np.concatenate(
            [weather.day(SUMMER + timedelta(days=d)).clear_sky_index for d in range(3)]
        )

    a, b, c = index(7), index(7), index(8)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert 0.05 <= a.min() and a.max() <= 1.15
    # Clouds take energy away: a cloudy week yields less than clear skies.
    cloudy = Weather(SITE, seed=3, step_s=STEP)
    clear = Weather(SITE, seed=3, step_s=STEP, clouds=False)
    days = [SUMMER + timedelta(days=d) for d in range(7)]
    cloudy_ghi = sum(cloudy.day(d).ghi.sum() for d in days)
    clear_ghi = sum(clear.day(d).ghi.sum() for d in days)
    assert cloudy_ghi < clear_ghi


def test_weather_regimes_form_a_chain_over_days() -> None:
    days = [SUMMER + timedelta(days=d) for d in range(60)]
    weather = Weather(SITE, seed=5, step_s=3600, anchor=SUMMER)
    regimes = [weather.regime_index(d) for d in days]
    # Asking for a later day first gives the same chain.
    again = Weather(SITE, seed=5, step_s=3600, anchor=SUMMER)
    assert again.regime_index(days[-1]) == regimes[-1]
    assert [again.regime_index(d) for d in reversed(days)] == regimes[::-1]
    assert len(set(regimes)) == 3  # every regime shows up in two months
    # Weather persists: the same regime tomorrow more often than chance (1/3).
    same = sum(a == b for a, b in itertools.pairwise(regimes))
    assert same / (len(regimes) - 1) > 0.4


# --- demand -----------------------------------------------------------------------


def test_load_profile_integrates_to_the_annual_energy() -> None:
    profile = LoadProfile(SITE)
    times = pd.date_range("2026-01-01T00:07:30Z", "2026-12-31T23:59:59Z", freq="15min", tz="UTC")
    kwh_per_annual_kwh = profile.w_per_annual_kwh(times).sum() * 0.25 / 1000
    assert kwh_per_annual_kwh == pytest.approx(1.0, abs=0.002)


def test_load_profile_has_morning_and_evening_peaks_in_local_time() -> None:
    profile = LoadProfile(SITE)
    times = day_times(date(2026, 3, 4), 900)  # a Wednesday in winter time (UTC+1)
    watts = profile.w_per_annual_kwh(times) * 3500
    local_hour = np.asarray(times.tz_convert("Europe/Berlin").hour)
    night = watts[(local_hour >= 2) & (local_hour < 5)].mean()
    evening = watts[(local_hour >= 18) & (local_hour < 21)].mean()
    noon = watts[(local_hour >= 11) & (local_hour < 13)].mean()
    assert evening > 2 * night
    assert noon > 1.5 * night


def test_household_demand_over_a_year_matches_the_annual_figures() -> None:
    specs = [
        HouseholdSpec(i, f"H{i}", CONSUMER, "south", annual_kwh=2000 + 100 * i) for i in range(30)
    ]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    nb = Neighbourhood(specs, start, seed=11, step_s=3600)
    before = nb.house_wh.copy()
    while nb.now < start + timedelta(days=365):
        nb.advance()
    used_kwh = (nb.house_wh - before) / 1000
    annual = np.array([s.annual_kwh for s in specs])
    # Noise and appliance events average out: within 3 % per household, 1 % in total.
    assert np.all(np.abs(used_kwh / annual - 1) < 0.03)
    assert used_kwh.sum() / annual.sum() == pytest.approx(1.0, abs=0.01)


# --- batteries --------------------------------------------------------------------


def test_battery_conserves_energy_and_respects_its_limits() -> None:
    specs = [
        BatterySpec(10_000, 5000, round_trip_efficiency=0.9, reserve=0.05, initial_soc=0.3),
        BatterySpec(5_000, 2500, round_trip_efficiency=0.86, reserve=0.1, initial_soc=0.9),
    ]
    bank = BatteryBank(specs)
    rng = np.random.default_rng(1)
    step = 60.0
    hours = step / 3600
    start_soc = bank.soc_wh.copy()
    charged = np.zeros(2)
    discharged = np.zeros(2)
    eff = np.array([s.one_way_efficiency for s in specs])
    for _ in range(5000):
        surplus = rng.normal(0, 4000, size=2)
        charge, discharge = bank.step(surplus, step)
        assert np.all(charge >= 0) and np.all(discharge >= 0)
        assert np.all(charge <= [5000, 2500]) and np.all(discharge <= [5000, 2500])
        assert not np.any((charge > 0) & (discharge > 0))
        # Charge only from a surplus, discharge only into a deficit, never more than it.
        assert np.all(charge <= np.maximum(surplus, 0) + 1e-9)
        assert np.all(discharge <= np.maximum(-surplus, 0) + 1e-9)
        assert np.all(bank.soc_wh <= bank.capacity_wh + 1e-6)
        assert np.all(bank.soc_wh >= bank.floor_wh - 1e-6)
        charged += charge * hours
        discharged += discharge * hours
    stored = charged * eff - discharged / eff
    assert np.allclose(bank.soc_wh - start_soc, stored, atol=1e-6)
    # Round-trip losses: what comes out is less than what went in.
    assert np.all(discharged < charged + start_soc)


# --- the neighbourhood -------------------------------------------------------------


def test_kind_mix_adds_up() -> None:
    assert kind_counts(100) == {CONSUMER: 40, PV: 45, PV_BATTERY: 15}
    for n in (1, 2, 7, 30, 999):
        assert sum(kind_counts(n).values()) == n
    specs = make_households(200, seed=1)
    assert {s.kind for s in specs} == {CONSUMER, PV, PV_BATTERY}
    for spec in specs:
        assert 2000 <= spec.annual_kwh <= 5000
        assert (spec.pv is None) == (spec.kind == CONSUMER)
        assert (spec.battery is not None) == (spec.kind == PV_BATTERY)
        if spec.pv is not None:
            assert 3.0 <= spec.pv.kwp <= 10.0
            assert spec.pv.inverter_w < spec.pv.kwp * 1000
    assert make_households(50, seed=2) == make_households(50, seed=2)
    assert make_households(50, seed=2) != make_households(50, seed=3)


def run(seed: int, steps: int, n: int = 12) -> Neighbourhood:
    nb = Neighbourhood(make_households(n, seed), datetime(2026, 6, 15, 3, tzinfo=UTC), seed=seed)
    for _ in range(steps):
        nb.advance()
    return nb


def test_neighbourhood_is_deterministic_for_a_seed() -> None:
    a, b, c = run(4, 240), run(4, 240), run(5, 240)
    assert all(a.meters(i) == b.meters(i) for i in range(12))
    assert any(a.meters(i) != c.meters(i) for i in range(12))


def test_meters_only_grow_and_match_the_devices() -> None:
    nb = Neighbourhood(make_households(20, 9), datetime(2026, 6, 15, 0, tzinfo=UTC), seed=9)
    last = [nb.meters(i) for i in range(20)]
    produced = np.zeros(20)
    for _ in range(24 * 60):
        nb.advance()
        produced += nb.pv_w / 60
        now = [nb.meters(i) for i in range(20)]
        for before, after in zip(last, now, strict=True):
            assert after.keys() == before.keys()
            assert all(after[k] >= before[k] for k in after)
        last = now
    for i, spec in enumerate(nb.specs):
        assert set(last[i]) == set(spec.assets)
        if spec.pv is not None:
            # A June day: every array produced something, none more than its inverter allows.
            assert 0 < produced[i] <= spec.pv.inverter_w * 24
    # Batteries charged at noon and gave energy back in the evening.
    with_battery = [i for i, s in enumerate(nb.specs) if s.battery is not None]
    assert with_battery
    assert all(nb.battery_in_wh[i] > 0 and nb.battery_out_wh[i] > 0 for i in with_battery)
