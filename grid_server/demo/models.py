"""Physical models of the demo's households: sun, clouds, PV arrays, demand, batteries.

Everything is deterministic for a seed: random numbers come from numpy
Generators seeded with ``SeedSequence((seed, stream, day))``, so one day's
weather or one day's appliance use does not depend on how the simulation got
there.

Solar (pvlib)
    Sun position and Ineichen clear-sky irradiance for the site
    (:meth:`pvlib.location.Location.get_clearsky`, Linke turbidity from
    pvlib's monthly climatology). Clouds: the clear-sky index of the whole
    neighbourhood follows a two-state (sun/shade) Markov chain per simulation
    step, whose parameters depend on the day's weather regime (clear,
    broken clouds, overcast), itself a Markov chain from day to day; a small
    AR(1) flicker rides on top. Cloudy global irradiance is split into direct
    and diffuse with the Erbs model and transposed onto each array's plane
    (:func:`pvlib.irradiance.get_total_irradiance`, isotropic sky, albedo
    0.25). Cell temperature from the SAPM model (close-mount glass/glass) with
    a seasonal and diurnal air temperature; DC power from PVWatts
    (γ = -0.37 %/K, 14 % system losses), AC power from the PVWatts inverter
    model (96 % nominal efficiency, clipping at the inverter's rating).

Demand (demandlib)
    The BDEW H0 standard load profile (15-minute mean power, dynamised over
    the year) in local time, interpolated to the simulation step, scaled to
    each household's annual consumption. 85 % of the energy follows the
    profile times a mean-one log-normal AR(1) noise (σ 0.25, 30 min
    correlation); 15 % comes as random appliance events (washing machine,
    dishwasher, oven, kettle), so the expected annual total is the figure
    asked for.

Batteries
    Capacity, one power limit for charging and discharging (AC side), round
    trip efficiency split evenly between charging and discharging, a reserve
    below which they do not discharge; a self-consumption controller charges
    from PV surplus and discharges to cover demand, never both in one step.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any, Final
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from pvlib import inverter, irradiance, pvsystem, temperature
from pvlib.location import Location

FloatArray = NDArray[np.float64]

SECONDS_PER_DAY: Final = 86_400
PROFILE_ANNUAL_KWH: Final = 1_000.0  # the H0 profile is computed once for this and scaled
APPLIANCE_SHARE: Final = 0.15  # of the annual energy that comes as appliance events

# Stream ids of the seed sequence, one per kind of randomness.
_WEATHER, _FLICKER, _EVENTS = 1, 2, 5


def rng_for(seed: int, stream: int, day: date | None = None) -> np.random.Generator:
    entropy = [seed, stream] + ([day.toordinal()] if day is not None else [])
    return np.random.default_rng(np.random.SeedSequence(entropy))


def ar1_coefficient(step_s: float, tau_s: float) -> float:
    """AR(1) coefficient for a process with correlation time ``tau_s`` sampled every ``step_s``."""
    return math.exp(-step_s / tau_s)


def day_times(day: date, step_s: int) -> pd.DatetimeIndex:
    """Midpoints of the steps of one UTC day (power in a step is taken at its midpoint)."""
    start = pd.Timestamp(datetime(day.year, day.month, day.day, tzinfo=UTC))
    steps = SECONDS_PER_DAY // step_s
    return pd.date_range(start + pd.Timedelta(seconds=step_s / 2), periods=steps, freq=f"{step_s}s")


# --- site and weather -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Site:
    """Where the neighbourhood is. Default: Frankfurt am Main (50.1 °N, 8.7 °E)."""

    latitude: float = 50.1
    longitude: float = 8.7
    altitude_m: float = 110.0
    timezone: str = "Europe/Berlin"  # local time of the load profile

    def location(self) -> Location:
        return Location(self.latitude, self.longitude, tz="UTC", altitude=self.altitude_m)


@dataclass(frozen=True, slots=True)
class Regime:
    """A day's weather: how long sun and shade last and how dark the shade is."""

    name: str
    sun_minutes: float  # mean duration of a sunny spell
    shade_minutes: float  # mean duration of a cloud shadow
    k_sun: float  # clear-sky index in the sun (slightly > 1: cloud-edge enhancement)
    k_shade: float  # clear-sky index in the shade


REGIMES: Final[tuple[Regime, ...]] = (
    Regime("clear", sun_minutes=600.0, shade_minutes=4.0, k_sun=1.0, k_shade=0.7),
    Regime("broken clouds", sun_minutes=18.0, shade_minutes=10.0, k_sun=1.03, k_shade=0.35),
    Regime("overcast", sun_minutes=6.0, shade_minutes=90.0, k_sun=0.85, k_shade=0.22),
)
# Day-to-day transitions between REGIMES (rows: today, columns: tomorrow).
REGIME_TRANSITIONS: Final = np.array(
    [
        [0.60, 0.30, 0.10],
        [0.30, 0.45, 0.25],
        [0.15, 0.35, 0.50],
    ]
)
FIRST_REGIME_WEIGHTS: Final = (0.5, 0.4, 0.1)
FLICKER_SIGMA: Final = 0.03
FLICKER_TAU_S: Final = 600.0


@dataclass(slots=True)
class SolarDay:
    """Site-level solar quantities of one UTC day, one value per simulation step."""

    day: date
    regime: Regime
    zenith: FloatArray  # apparent zenith (degrees)
    azimuth: FloatArray
    ghi_clear: FloatArray  # W/m²
    clear_sky_index: FloatArray
    ghi: FloatArray
    dni: FloatArray
    dhi: FloatArray
    temp_air: FloatArray  # °C
    _poa: dict[tuple[float, float], FloatArray] = field(default_factory=dict)

    def poa_global(self, tilt: float, azimuth: float) -> FloatArray:
        """Plane-of-array global irradiance (W/m²) for an orientation (cached)."""
        key = (tilt, azimuth)
        cached = self._poa.get(key)
        if cached is None:
            total = irradiance.get_total_irradiance(
                tilt,
                azimuth,
                self.zenith,
                self.azimuth,
                self.dni,
                self.ghi,
                self.dhi,
                albedo=0.25,
            )
            cached = np.nan_to_num(np.asarray(total["poa_global"], dtype=np.float64)).clip(0.0)
            self._poa[key] = cached
        return cached


class Weather:
    """Sun, clouds and air temperature at the site, day by day."""

    def __init__(
        self,
        site: Site,
        seed: int,
        step_s: int,
        *,
        clouds: bool = True,
        anchor: date | None = None,
        first_regime: int | None = None,
    ) -> None:
        self.site = site
        self.seed = seed
        self.step_s = step_s
        self.clouds = clouds
        self._location = site.location()
        self._first_regime = first_regime
        self._regimes: dict[date, int] = {}
        if anchor is not None:
            self._regimes[anchor] = self._draw_first()
        self._days: dict[date, SolarDay] = {}

    def _draw_first(self) -> int:
        if self._first_regime is not None:
            return self._first_regime
        # Mostly sunny: a demo should show the sun.
        rng = rng_for(self.seed, _WEATHER)
        return int(rng.choice(len(REGIMES), p=FIRST_REGIME_WEIGHTS))

    def regime_index(self, day: date) -> int:
        """The day's weather regime: a Markov chain from day to day.

        The chain starts at ``anchor`` (or the first day asked for) with a
        regime drawn from the seed; each next day's regime depends only on
        the day before, with randomness seeded per day, so the chain is the
        same whatever order days are asked in. Days before the start get the
        start's regime.
        """
        if not self._regimes:
            self._regimes[day] = self._draw_first()
        start = min(self._regimes)
        if day <= start:
            return self._regimes[start]
        d = max(k for k in self._regimes if k <= day)
        while d < day:
            rng = rng_for(self.seed, _WEATHER, d)
            today = self._regimes[d]
            d += timedelta(days=1)
            self._regimes[d] = int(rng.choice(len(REGIMES), p=REGIME_TRANSITIONS[today]))
        return self._regimes[day]

    def day(self, day: date) -> SolarDay:
        cached = self._days.get(day)
        if cached is not None:
            return cached
        times = day_times(day, self.step_s)
        position = self._location.get_solarposition(times)
        clear = self._location.get_clearsky(times, model="ineichen", solar_position=position)
        zenith = np.asarray(position["apparent_zenith"], dtype=np.float64)
        ghi_clear = np.asarray(clear["ghi"], dtype=np.float64)
        regime = REGIMES[self.regime_index(day)] if self.clouds else REGIMES[0]
        if self.clouds:
            k = clear_sky_index(regime, len(times), self.step_s, self.seed, day)
            ghi = ghi_clear * k
            split = irradiance.erbs(ghi, zenith, times)
            dni = np.nan_to_num(np.asarray(split["dni"], dtype=np.float64))
            dhi = np.nan_to_num(np.asarray(split["dhi"], dtype=np.float64))
        else:
            k = np.ones(len(times))
            ghi = ghi_clear
            dni = np.asarray(clear["dni"], dtype=np.float64)
            dhi = np.asarray(clear["dhi"], dtype=np.float64)
        solar = SolarDay(
            day,
            regime,
            zenith,
            np.asarray(position["azimuth"], dtype=np.float64),
            ghi_clear,
            k,
            ghi,
            dni,
            dhi,
            air_temperature(times, self.site, float(k.mean())),
        )
        # Keep a few days: the simulation only moves forward.
        for old in [d for d in self._days if d < day - timedelta(days=2)]:
            del self._days[old]
        self._days[day] = solar
        return solar


def clear_sky_index(regime: Regime, steps: int, step_s: int, seed: int, day: date) -> FloatArray:
    """The neighbourhood's clear-sky index over a day: sun/shade Markov chain plus flicker."""
    rng = rng_for(seed, _FLICKER, day)
    leave_sun = 1 - math.exp(-step_s / (regime.sun_minutes * 60))
    leave_shade = 1 - math.exp(-step_s / (regime.shade_minutes * 60))
    draws = rng.random(steps)
    shade = np.empty(steps, dtype=bool)
    shade_share = regime.shade_minutes / (regime.sun_minutes + regime.shade_minutes)
    in_shade = bool(rng.random() < shade_share)
    for i in range(steps):
        in_shade = draws[i] >= leave_shade if in_shade else draws[i] < leave_sun
        shade[i] = in_shade
    k = np.where(shade, regime.k_shade, regime.k_sun)
    flicker = ar1(rng.standard_normal(steps), ar1_coefficient(step_s, FLICKER_TAU_S))
    return np.asarray((k * (1 + FLICKER_SIGMA * flicker)).clip(0.05, 1.15), dtype=np.float64)


def ar1(innovations: FloatArray, phi: float, start: FloatArray | float | None = None) -> FloatArray:
    """A unit-variance AR(1) series along the last axis, driven by standard normal innovations.

    Without ``start`` the series starts in its stationary distribution (the
    first innovation itself); with it, the first value follows ``start``.
    """
    out = np.empty_like(innovations)
    scale = math.sqrt(1 - phi * phi)
    x = innovations[..., 0] if start is None else phi * start + scale * innovations[..., 0]
    out[..., 0] = x
    for i in range(1, innovations.shape[-1]):
        x = phi * x + scale * innovations[..., i]
        out[..., i] = x
    return out


def air_temperature(times: pd.DatetimeIndex, site: Site, clearness: float) -> FloatArray:
    """Air temperature (°C): a seasonal mean (Frankfurt-like) and a diurnal swing peaking at 15 h.

    Clear days swing more than overcast ones.
    """
    local = times.tz_convert(site.timezone)
    doy = np.asarray(local.dayofyear, dtype=np.float64)
    hour = np.asarray(local.hour + local.minute / 60, dtype=np.float64)
    seasonal = 10.5 + 9.0 * np.cos(2 * np.pi * (doy - 200) / 365.25)
    swing = 2.0 + 5.0 * min(max(clearness, 0.0), 1.0)
    return np.asarray(seasonal + swing * np.cos(2 * np.pi * (hour - 15) / 24), dtype=np.float64)


# --- PV arrays ------------------------------------------------------------------------

PV_GAMMA_PDC: Final = -0.0037  # per K, crystalline silicon
PV_SYSTEM_LOSSES: Final = 0.14  # PVWatts default: soiling, wiring, mismatch, ...
INVERTER_EFFICIENCY: Final = 0.96
WIND_SPEED: Final = 2.0  # m/s
_CELL_TEMPERATURE = temperature.TEMPERATURE_MODEL_PARAMETERS["sapm"]["close_mount_glass_glass"]


@dataclass(frozen=True, slots=True)
class PVArray:
    kwp: float  # DC rating at standard test conditions
    tilt: float  # degrees from horizontal
    azimuth: float  # degrees clockwise from north (180 = south)
    inverter_w: int  # AC rating: the source's declared rated power


def pv_ac_power(
    poa_global: FloatArray | float,
    temp_air: FloatArray | float,
    kwp: FloatArray | float,
    inverter_w: FloatArray | float,
) -> FloatArray:
    """AC power (W) of arrays with plane-of-array irradiance ``poa_global`` (PVWatts)."""
    poa = np.asarray(poa_global, dtype=np.float64)
    cell = temperature.sapm_cell(
        poa,
        temp_air,
        WIND_SPEED,
        _CELL_TEMPERATURE["a"],
        _CELL_TEMPERATURE["b"],
        _CELL_TEMPERATURE["deltaT"],
    )
    dc = pvsystem.pvwatts_dc(poa, cell, np.asarray(kwp) * 1000.0, PV_GAMMA_PDC)
    dc = np.asarray(dc, dtype=np.float64) * (1 - PV_SYSTEM_LOSSES)
    pdc0 = np.asarray(inverter_w, dtype=np.float64) / INVERTER_EFFICIENCY
    ac = inverter.pvwatts(dc, pdc0, eta_inv_nom=INVERTER_EFFICIENCY)
    return np.asarray(ac, dtype=np.float64).clip(0.0, np.asarray(inverter_w, dtype=np.float64))


# --- demand ---------------------------------------------------------------------------


@cache
def h0_profile_kw(year: int) -> FloatArray:
    """BDEW H0 power (kW, 15-minute means, local time) for 1,000 kWh a year, one year."""
    from demandlib import bdew  # noqa: PLC0415 - slow import, only where needed

    with warnings.catch_warnings():
        # demandlib 0.2.2 uses pandas idioms that pandas deprecates; harmless here.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        frame = bdew.ElecSlp(year).get_scaled_power_profiles({"h0": PROFILE_ANNUAL_KWH})
    return np.asarray(frame["h0"], dtype=np.float64)


class LoadProfile:
    """The H0 profile at arbitrary UTC instants, in W per kWh of annual consumption."""

    def __init__(self, site: Site) -> None:
        self.zone = ZoneInfo(site.timezone)

    def w_per_annual_kwh(self, times: pd.DatetimeIndex) -> FloatArray:
        local = times.tz_convert(self.zone).tz_localize(None)
        out = np.empty(len(times), dtype=np.float64)
        years = np.asarray(local.year)
        for year in np.unique(years):
            mask = years == year
            profile = h0_profile_kw(int(year))
            # Slot midpoints sit at 7.5 min; interpolate between them.
            since = (local[mask] - pd.Timestamp(int(year), 1, 1)).total_seconds()
            position = np.asarray(since, dtype=np.float64) / 900.0 - 0.5
            out[mask] = np.interp(position, np.arange(len(profile)), profile)
        # kW per 1,000 kWh/year → W per kWh/year.
        return out * (1000.0 / PROFILE_ANNUAL_KWH)


@dataclass(frozen=True, slots=True)
class Appliance:
    name: str
    power_w: float
    minutes: float
    per_day: float  # mean number of uses per day in a 3,500 kWh household
    hours: tuple[float, float]  # local hours in which a use starts


APPLIANCES: Final[tuple[Appliance, ...]] = (
    Appliance("washing machine", 2000.0, 60.0, 0.35, (8.0, 20.0)),
    Appliance("dishwasher", 1800.0, 70.0, 0.5, (12.0, 22.0)),
    Appliance("oven", 2400.0, 45.0, 0.3, (11.0, 19.0)),
    Appliance("kettle", 2200.0, 4.0, 1.5, (6.0, 22.0)),
)
REFERENCE_ANNUAL_KWH: Final = 3_500.0


def appliance_kwh_per_day(annual_kwh: float) -> float:
    """Expected appliance-event energy per day; uses are scaled to the household's size."""
    return APPLIANCE_SHARE * annual_kwh / 365.0


def _catalogue_kwh_per_day() -> float:
    return sum(a.power_w * a.minutes / 60_000 * a.per_day for a in APPLIANCES)


@dataclass(frozen=True, slots=True)
class ApplianceEvents:
    """Appliance uses of many households in one day, as flat arrays."""

    household: NDArray[np.int64]
    start_s: FloatArray  # seconds since the day's UTC midnight
    end_s: FloatArray
    power_w: FloatArray

    def power_at(self, households: int, t0_s: float, t1_s: float) -> FloatArray:
        """Mean appliance power per household over ``[t0_s, t1_s)``."""
        overlap = (np.minimum(self.end_s, t1_s) - np.maximum(self.start_s, t0_s)).clip(0.0)
        energy = np.bincount(self.household, weights=overlap * self.power_w, minlength=households)
        return np.asarray(energy / (t1_s - t0_s), dtype=np.float64)


def draw_appliance_events(
    annual_kwh: Sequence[float] | FloatArray, day: date, seed: int, site: Site
) -> ApplianceEvents:
    """Random appliance uses for each household on one UTC day (Poisson counts)."""
    rng = rng_for(seed, _EVENTS, day)
    annual = np.asarray(annual_kwh, dtype=np.float64)
    # Scale the catalogue's use rates so the expected energy is APPLIANCE_SHARE.
    rate_scale = APPLIANCE_SHARE * annual / 365.0 / _catalogue_kwh_per_day()
    noon = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    offset_h = (noon.astimezone(ZoneInfo(site.timezone)).utcoffset() or timedelta()).seconds / 3600
    households: list[NDArray[np.int64]] = []
    starts: list[FloatArray] = []
    powers: list[FloatArray] = []
    durations: list[FloatArray] = []
    for appliance in APPLIANCES:
        counts = rng.poisson(appliance.per_day * rate_scale)
        who = np.repeat(np.arange(len(annual)), counts)
        lo, hi = appliance.hours
        local_start_h = rng.uniform(lo, hi, size=len(who))
        households.append(who)
        starts.append((local_start_h - offset_h) * 3600.0)
        powers.append(np.full(len(who), appliance.power_w))
        durations.append(np.full(len(who), appliance.minutes * 60.0))
    start = np.concatenate(starts) if starts else np.empty(0)
    return ApplianceEvents(
        np.concatenate(households).astype(np.int64),
        start,
        start + np.concatenate(durations),
        np.concatenate(powers),
    )


DEMAND_NOISE_SIGMA: Final = 0.25
DEMAND_NOISE_TAU_S: Final = 1800.0


def lognormal_factor(x: FloatArray, sigma: float = DEMAND_NOISE_SIGMA) -> FloatArray:
    """Mean-one multiplicative noise from a standard normal state."""
    return np.asarray(np.exp(sigma * x - sigma * sigma / 2), dtype=np.float64)


# --- batteries ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BatterySpec:
    capacity_wh: float
    power_w: int  # limit for charging and discharging (AC side)
    round_trip_efficiency: float = 0.9
    reserve: float = 0.05  # share of capacity kept (not discharged below)
    initial_soc: float = 0.3

    @property
    def one_way_efficiency(self) -> float:
        return math.sqrt(self.round_trip_efficiency)


class BatteryBank:
    """Many batteries under a self-consumption controller, advanced together.

    Per step, a battery whose household has a PV surplus charges with the
    surplus (up to its power and free capacity); one whose household lacks
    power discharges to cover it (up to its power and usable energy). The
    AC energy taken in and given out are what the household's ``battery
    charge`` meter and ``battery`` source measure; the difference is the
    conversion loss plus the change in stored energy.
    """

    def __init__(self, specs: Sequence[BatterySpec]) -> None:
        self.capacity_wh = np.array([s.capacity_wh for s in specs], dtype=np.float64)
        self.power_w = np.array([s.power_w for s in specs], dtype=np.float64)
        self.efficiency = np.array([s.one_way_efficiency for s in specs], dtype=np.float64)
        self.floor_wh = np.array([s.capacity_wh * s.reserve for s in specs], dtype=np.float64)
        self.soc_wh = np.array([s.capacity_wh * s.initial_soc for s in specs], dtype=np.float64)

    def step(self, surplus_w: FloatArray, step_s: float) -> tuple[FloatArray, FloatArray]:
        """Advance one step; returns (charge power, discharge power) on the AC side, W."""
        hours = step_s / 3600.0
        room_w = (self.capacity_wh - self.soc_wh).clip(0.0) / (self.efficiency * hours)
        usable_w = (self.soc_wh - self.floor_wh).clip(0.0) * self.efficiency / hours
        charge = np.minimum(np.minimum(surplus_w.clip(0.0), self.power_w), room_w)
        discharge = np.minimum(np.minimum((-surplus_w).clip(0.0), self.power_w), usable_w)
        self.soc_wh = self.soc_wh + charge * self.efficiency * hours
        self.soc_wh = self.soc_wh - discharge / self.efficiency * hours
        # Floating point must not push the state outside its bounds.
        self.soc_wh = np.minimum(np.maximum(self.soc_wh, 0.0), self.capacity_wh)
        return charge, discharge


def describe_models() -> dict[str, Any]:
    """The models' parameters, for the demo's start-up banner and docs/operators/demo.md."""
    return {
        "regimes": [r.name for r in REGIMES],
        "pv": {
            "gamma_pdc": PV_GAMMA_PDC,
            "losses": PV_SYSTEM_LOSSES,
            "inverter_efficiency": INVERTER_EFFICIENCY,
        },
        "demand": {
            "profile": "BDEW H0",
            "noise_sigma": DEMAND_NOISE_SIGMA,
            "appliance_share": APPLIANCE_SHARE,
        },
    }
