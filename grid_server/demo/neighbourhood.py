"""The simulated neighbourhood: who lives where, with what, and their meters over time.

Households come in three kinds (shares of the total, rounded):

* ``consumer`` (~40 %): a household meter only; joins with the consumer role.
* ``pv`` (~45 %): a PV array (3-10 kWp) and a household meter; a prosumer.
* ``pv+battery`` (~15 %): PV, a household meter and a battery.

How a household's devices map to the grid's assets (what it declares and
meters, exactly like a Home Assistant installation with one energy sensor
per device):

==================  ========  ===============================================
asset id            kind      cumulative meter
==================  ========  ===============================================
``house``           meter     household consumption (no rated power declared)
``pv``              source    PV inverter AC output; rated power = inverter AC
``battery``         source    battery discharge (AC); rated power = its limit
``battery-charge``  meter     battery charging (AC); rated power = its limit
==================  ========  ===============================================

The grid settles on produced minus consumed, so charging a battery from the
household's own PV counts as consumption of that PV (it never reaches the
market) and the battery's conversion losses are consumption too.

:class:`Neighbourhood` advances every household together, one simulation
step at a time, with numpy over all households; each household's meters
are cumulative Wh totals that only grow, as Home Assistant's
``total_increasing`` sensors do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final

import numpy as np
import pandas as pd

from .models import (
    APPLIANCE_SHARE,
    DEMAND_NOISE_TAU_S,
    ApplianceEvents,
    BatteryBank,
    BatterySpec,
    FloatArray,
    LoadProfile,
    PVArray,
    Site,
    Weather,
    ar1_coefficient,
    draw_appliance_events,
    lognormal_factor,
    pv_ac_power,
    rng_for,
)

CONSUMER, PV, PV_BATTERY = "consumer", "pv", "pv+battery"
KINDS: Final = (CONSUMER, PV, PV_BATTERY)
SHARES: Final = {CONSUMER: 0.40, PV: 0.45, PV_BATTERY: 0.15}

HOUSE, SOLAR, BATTERY, BATTERY_CHARGE = "house", "pv", "battery", "battery-charge"

# Demo zones: a substation (root) with three feeders that differ, so energy
# flows between them: the north feeder has the big roofs, the south feeder
# the flats.
ROOT_ZONE: Final = "substation"
FEEDERS: Final = ("north", "centre", "south")
ZONE_WEIGHTS: Final = {
    CONSUMER: (0.20, 0.30, 0.50),
    PV: (0.50, 0.35, 0.15),
    PV_BATTERY: (0.40, 0.40, 0.20),
}

_LAYOUT, _HOUSEHOLD_NOISE, _PV_FLICKER = 11, 12, 13
HOUSEHOLD_CLOUD_SIGMA: Final = 0.04  # local variation of the shared clear-sky index
HOUSEHOLD_CLOUD_TAU_S: Final = 300.0


@dataclass(frozen=True, slots=True)
class HouseholdSpec:
    index: int
    name: str
    kind: str
    zone: str
    annual_kwh: float
    pv: PVArray | None = None
    battery: BatterySpec | None = None

    @property
    def role(self) -> str:
        """The role the household joins with."""
        return "consumer" if self.pv is None else "prosumer"

    @property
    def assets(self) -> tuple[str, ...]:
        ids = [HOUSE]
        if self.pv is not None:
            ids.append(SOLAR)
        if self.battery is not None:
            ids += [BATTERY, BATTERY_CHARGE]
        return tuple(ids)


def kind_counts(n: int) -> dict[str, int]:
    """How many households of each kind: the shares, rounded so they add up to ``n``."""
    raw = {k: SHARES[k] * n for k in KINDS}
    counts = {k: math.floor(v) for k, v in raw.items()}
    # Largest remainders first, ties in KINDS order.
    for k in sorted(KINDS, key=lambda k: -(raw[k] - counts[k]))[: n - sum(counts.values())]:
        counts[k] += 1
    return counts


def make_households(n: int, seed: int) -> list[HouseholdSpec]:
    """``n`` households with their devices and zones, deterministic for ``seed``."""
    if n < 1:
        raise ValueError("a neighbourhood needs at least one household")
    rng = rng_for(seed, _LAYOUT)
    kinds = [k for k, c in kind_counts(n).items() for _ in range(c)]
    order = rng.permutation(n)
    specs: list[HouseholdSpec] = []
    for index in range(n):
        kind = kinds[int(order[index])]
        zone = FEEDERS[int(rng.choice(len(FEEDERS), p=ZONE_WEIGHTS[kind]))]
        annual = float(round(rng.uniform(2_000, 5_000), -1))
        pv = battery = None
        if kind != CONSUMER:
            kwp = round(float(rng.triangular(3.0, 6.0, 10.0)), 1)
            tilt = float(rng.choice([15, 20, 25, 30, 35, 40, 45]))
            azimuth = float(rng.choice([90, 120, 135, 150, 165, 180, 195, 210, 225, 240, 270]))
            # DC/AC ratio 1.1-1.25, inverters in 100 W steps.
            inverter_w = int(round(kwp * 1000 / rng.uniform(1.1, 1.25), -2))
            pv = PVArray(kwp, tilt, azimuth, inverter_w)
        if kind == PV_BATTERY:
            capacity_kwh = float(rng.choice([5.0, 7.5, 10.0, 12.5]))
            power_w = int(rng.choice([2500, 3300, 4600, 5000]))
            battery = BatterySpec(
                capacity_kwh * 1000,
                power_w,
                round_trip_efficiency=round(float(rng.uniform(0.86, 0.93)), 3),
                initial_soc=round(float(rng.uniform(0.1, 0.5)), 2),
            )
        specs.append(
            HouseholdSpec(
                index, f"Household {index + 1:0{len(str(n))}d}", kind, zone, annual, pv, battery
            )
        )
    return specs


@dataclass(frozen=True, slots=True)
class _Day:
    """What one UTC day of the simulation needs, computed when the day begins."""

    day: date
    poa: FloatArray  # plane-of-array irradiance, orientations x steps
    temp_air: FloatArray
    profile_w: FloatArray  # load per kWh of annual consumption, per step
    events: ApplianceEvents
    rng: np.random.Generator


def _step_aligned_utc(start: datetime, step_s: int) -> datetime:
    """``start`` in UTC, once the step divides a day and ``start`` falls on a step.

    Each day's weather and profiles are computed per step from midnight, so a
    step that does not divide the day, or a start between steps, would read
    them at the wrong times.
    """
    if 86_400 % step_s:
        raise ValueError("the simulation step must divide a day")
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware (UTC)")
    start = start.astimezone(UTC)
    offset = (start - datetime(start.year, start.month, start.day, tzinfo=UTC)).total_seconds()
    if offset % step_s:
        raise ValueError("start must be aligned to the simulation step")
    return start


class Neighbourhood:
    """All households' devices and cumulative meters, advanced one step at a time.

    ``now`` is the start of the next step; :meth:`advance` simulates
    ``[now, now + step)`` and moves ``now`` on. Meter totals start at a
    random-looking but deterministic reading (a meter is not new).
    """

    def __init__(
        self,
        specs: Sequence[HouseholdSpec],
        start: datetime,
        *,
        seed: int,
        step_s: int = 60,
        site: Site | None = None,
        clouds: bool = True,
    ) -> None:
        start = _step_aligned_utc(start, step_s)
        self.specs = list(specs)
        self.seed = seed
        self.step_s = step_s
        self.site = site or Site()
        self.weather = Weather(self.site, seed, step_s, clouds=clouds, anchor=start.date())
        self.profile = LoadProfile(self.site)
        self.now = start
        self.annual_kwh = np.array([s.annual_kwh for s in self.specs], dtype=np.float64)
        self._arrange_pv()
        self._arrange_batteries()
        # One generator for the whole starting state, drawn in this order, so
        # that a seed always gives the same meters and noise.
        rng = rng_for(seed, _HOUSEHOLD_NOISE)
        self._start_meters(rng)
        self._start_random_processes(rng)
        self._day: _Day | None = None

    def _arrange_pv(self) -> None:
        """The PV households' arrays as numpy columns, so a step computes them all at once.

        Irradiance depends only on an array's orientation, so each distinct
        (tilt, azimuth) is computed once a day and shared (``pv_orientation``).
        """
        pv_specs = [(i, s.pv) for i, s in enumerate(self.specs) if s.pv is not None]
        self.pv_index = np.array([i for i, _ in pv_specs], dtype=np.int64)
        self.pv_kwp = np.array([p.kwp for _, p in pv_specs], dtype=np.float64)
        self.pv_inverter_w = np.array([p.inverter_w for _, p in pv_specs], dtype=np.float64)
        self._orientations = sorted({(p.tilt, p.azimuth) for _, p in pv_specs})
        lookup = {o: k for k, o in enumerate(self._orientations)}
        self.pv_orientation = np.array(
            [lookup[(p.tilt, p.azimuth)] for _, p in pv_specs], dtype=np.int64
        )

    def _arrange_batteries(self) -> None:
        """The households with a battery, and one bank that steps all their batteries."""
        battery_specs = [(i, s.battery) for i, s in enumerate(self.specs) if s.battery is not None]
        self.battery_index = np.array([i for i, _ in battery_specs], dtype=np.int64)
        self.batteries = BatteryBank([b for _, b in battery_specs])

    def _start_meters(self, rng: np.random.Generator) -> None:
        """Meter totals at a random-looking reading (a meter is not new), last powers at zero."""
        n = len(self.specs)
        # Meter totals (Wh), per device kind, indexed like the households.
        self.house_wh = rng.uniform(1e6, 2e7, size=n)
        self.pv_wh = np.zeros(n)
        self.pv_wh[self.pv_index] = rng.uniform(1e6, 3e7, size=len(self.pv_index))
        self.battery_out_wh = np.zeros(n)
        self.battery_in_wh = np.zeros(n)
        # Last step's mean power (W), for status displays and tests.
        self.load_w = np.zeros(n)
        self.pv_w = np.zeros(n)
        self.charge_w = np.zeros(n)
        self.discharge_w = np.zeros(n)

    def _start_random_processes(self, rng: np.random.Generator) -> None:
        """The demand noise and local clouds, carried from step to step (standard normal states)."""
        self._noise_state = rng.standard_normal(len(self.specs))
        self._cloud_state = rng.standard_normal(len(self.pv_index))
        self._noise_phi = ar1_coefficient(self.step_s, DEMAND_NOISE_TAU_S)
        self._cloud_phi = ar1_coefficient(self.step_s, HOUSEHOLD_CLOUD_TAU_S)

    # -- simulation ------------------------------------------------------------------

    def _prepare_day(self, day: date) -> _Day:
        steps = 86_400 // self.step_s
        if self._orientations:
            solar = self.weather.day(day)
            poa = np.array(
                [solar.poa_global(tilt, azimuth) for tilt, azimuth in self._orientations]
            ).reshape(len(self._orientations), -1)
            temp_air = solar.temp_air
        else:  # nobody has PV: no need for the sun
            poa = np.zeros((0, steps))
            temp_air = np.zeros(steps)
        times = pd.date_range(
            pd.Timestamp(datetime(day.year, day.month, day.day, tzinfo=UTC))
            + pd.Timedelta(seconds=self.step_s / 2),
            periods=steps,
            freq=f"{self.step_s}s",
        )
        return _Day(
            day,
            poa,
            temp_air,
            # The profile carries the share of energy that is not appliance events.
            self.profile.w_per_annual_kwh(times) * (1 - APPLIANCE_SHARE),
            draw_appliance_events(self.annual_kwh, day, self.seed, self.site),
            rng_for(self.seed, _PV_FLICKER, day),
        )

    def prepare(self) -> None:
        """Compute the first day's weather and profiles now (a second or so, mostly
        demandlib), so the first step of a running demo does not stall."""
        day = self.now.date()
        if self._day is None or self._day.day != day:
            self._day = self._prepare_day(day)

    def advance(self) -> datetime:
        """Simulate one step; returns the new ``now`` (the time the meter totals are for)."""
        t0 = self.now
        day = t0.date()
        if self._day is None or self._day.day != day:
            self._day = self._prepare_day(day)
        today = self._day
        midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
        offset = (t0 - midnight).total_seconds()
        k = int(offset // self.step_s)
        n = len(self.specs)
        rng = today.rng
        hours = self.step_s / 3600.0
        # Demand: profile x noise + appliance events.
        self._noise_state = self._noise_phi * self._noise_state + math.sqrt(
            1 - self._noise_phi**2
        ) * rng.standard_normal(n)
        load = today.profile_w[k] * self.annual_kwh * lognormal_factor(self._noise_state)
        load = load + today.events.power_at(n, offset, offset + self.step_s)
        # PV: the shared irradiance of each orientation with a little local variation.
        pv = np.zeros(n)
        if len(self.pv_index):
            self._cloud_state = self._cloud_phi * self._cloud_state + math.sqrt(
                1 - self._cloud_phi**2
            ) * rng.standard_normal(len(self.pv_index))
            local = (1 + HOUSEHOLD_CLOUD_SIGMA * self._cloud_state).clip(0.8, 1.2)
            poa = today.poa[self.pv_orientation, k] * local
            temp_air = today.temp_air[k]
            pv[self.pv_index] = pv_ac_power(poa, temp_air, self.pv_kwp, self.pv_inverter_w)
        # Batteries: self-consumption.
        charge = np.zeros(n)
        discharge = np.zeros(n)
        if len(self.battery_index):
            surplus = pv[self.battery_index] - load[self.battery_index]
            c, d = self.batteries.step(surplus, self.step_s)
            charge[self.battery_index] = c
            discharge[self.battery_index] = d
        self.load_w, self.pv_w, self.charge_w, self.discharge_w = load, pv, charge, discharge
        self.house_wh += load * hours
        self.pv_wh += pv * hours
        self.battery_in_wh += charge * hours
        self.battery_out_wh += discharge * hours
        self.now = t0 + timedelta(seconds=self.step_s)
        return self.now

    # -- meters ----------------------------------------------------------------------

    def meters(self, index: int) -> dict[str, float]:
        """Cumulative totals (Wh) of one household's meters, by asset id."""
        spec = self.specs[index]
        totals = {HOUSE: float(self.house_wh[index])}
        if spec.pv is not None:
            totals[SOLAR] = float(self.pv_wh[index])
        if spec.battery is not None:
            totals[BATTERY] = float(self.battery_out_wh[index])
            totals[BATTERY_CHARGE] = float(self.battery_in_wh[index])
        return totals
