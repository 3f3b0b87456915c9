"""Readings we can believe: a plausible bound for every reading, the energy to settle, flags.

A household's meter reading is its word; before it is paid the grid checks it
against what the asset could physically have done in that interval:

``over_rating``
    Any source or consumer meter: no more than its approved rating over the
    interval plus ``clock_skew_seconds`` (a household's meter tracker puts
    energy it learns of late into the next open interval, and meters update
    every few minutes). A consumer meter declared without a rating is held
    to the grid's ``household_max_power_w``.
``above_clear_sky``
    Solar sources: no more than their approved rating can make under a clear
    sky at the grid's location over the interval widened by the clock skew
    on both sides (:mod:`grid_server.domain.clear_sky`).
``battery_over_discharge``
    Battery sources: no more discharge than the battery can have held plus
    what it charged. Per battery the grid carries ``headroom``, an upper
    bound on the energy it could still give out (``U``)::

        bound_t = U_{t-1} + η × charge_t          (η: round-trip bound ≤ 1)
        U_t     = min(capacity, bound_t - settled discharge_t)

    Starting at ``U = capacity`` (the battery may be full when it joins),
    ``U`` never falls below the energy truly stored (in discharge terms), so
    an honest battery is never flagged; one that gives out more than it took
    in plus one full battery is. The charge is the settled reading of the
    battery's linked charge meter; without one, an allowance of
    ``unlinked_cycles_per_day`` full capacities a day, spread over the
    intervals. Without a declared capacity, ``fallback_hours`` of its rating.

Every bound is in whole Wh, rounded up (the household gets the benefit of
the last fraction). A reading above its tightest bound is never refused or
lost: it is kept, settled at the bound (``min(reading, bound)``) and flagged
with the rule that bound it, and the payouts of the statement it lands on
wait for the operator. Everything is vectorised over one interval's
readings, so a grid checks 100,000 households in a few milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final, Protocol

import numpy as np
from numpy.typing import NDArray

from p2p_energy_client.units import format_utc

from .approval import AssetKind

IntArray = NDArray[np.int64]
SECONDS_PER_DAY: Final = 86_400
UNBOUNDED: Final = np.iinfo(np.int64).max
NO_RULE: Final = -1

KINDS: Final[tuple[AssetKind, ...]] = tuple(AssetKind)
SOLAR: Final = KINDS.index(AssetKind.SOLAR)
BATTERY: Final = KINDS.index(AssetKind.BATTERY)
METER: Final = KINDS.index(AssetKind.METER)


class FlagCode(StrEnum):
    """Why a reading is implausible (stable machine codes)."""

    OVER_RATING = "over_rating"
    ABOVE_CLEAR_SKY = "above_clear_sky"
    BATTERY_OVER_DISCHARGE = "battery_over_discharge"


RULES: Final[tuple[FlagCode, ...]] = tuple(FlagCode)
MEANING: Final[dict[FlagCode, str]] = {
    FlagCode.OVER_RATING: "what its approved rating can deliver in the interval",
    FlagCode.ABOVE_CLEAR_SKY: (
        "what its approved rating can make under a clear sky at the grid's location then"
    ),
    FlagCode.BATTERY_OVER_DISCHARGE: "what the battery can have held plus what it charged",
}


def kind_codes(kinds: Sequence[AssetKind]) -> NDArray[np.int8]:
    """Asset kinds as the small integers :class:`IntervalReadings` takes."""
    return np.array([KINDS.index(k) for k in kinds], dtype=np.int8)


@dataclass(frozen=True, slots=True)
class Flag:
    """One implausible reading, for the audit log, the dashboard and the household."""

    asset: str
    interval: datetime
    reading_wh: int
    bound_wh: int
    code: FlagCode

    @property
    def reason(self) -> str:
        return (
            f"{self.asset}: {self.reading_wh} Wh in the interval {format_utc(self.interval)} "
            f"is more than {self.bound_wh} Wh, {MEANING[self.code]} ({self.code}); "
            f"it is settled at {self.bound_wh} Wh"
        )


@dataclass(frozen=True, slots=True)
class Checked:
    """Per reading: its plausible bound and the rule that set it (``NO_RULE``: none)."""

    reading_wh: IntArray
    bound_wh: IntArray
    rule: NDArray[np.int8]

    @property
    def settle_wh(self) -> IntArray:
        """What settlement counts: the reading, or its bound when the reading is above it."""
        return np.minimum(self.reading_wh, self.bound_wh)

    @property
    def flagged(self) -> NDArray[np.bool_]:
        return self.reading_wh > self.bound_wh

    def flags(self, assets: Sequence[str], interval: datetime) -> list[Flag]:
        """The flagged readings, named by ``assets`` (one label per reading)."""
        return [
            Flag(
                assets[i],
                interval,
                int(self.reading_wh[i]),
                int(self.bound_wh[i]),
                RULES[int(self.rule[i])],
            )
            for i in np.flatnonzero(self.flagged)
        ]


def tightest(reading_wh: IntArray, bounds: Sequence[tuple[FlagCode, IntArray]]) -> Checked:
    """The smallest of several bounds per reading, and which rule it came from."""
    reading = np.asarray(reading_wh, dtype=np.int64)
    bound = np.full(reading.shape, UNBOUNDED, dtype=np.int64)
    rule = np.full(reading.shape, NO_RULE, dtype=np.int8)
    for code, values in bounds:
        tighter = values < bound
        bound = np.where(tighter, values, bound)
        rule = np.where(tighter, np.int8(RULES.index(code)), rule)
    return Checked(reading, bound, rule)


def rating_bound_wh(power_w: IntArray, window_s: int) -> IntArray:
    """Energy (Wh, rounded up) a device of ``power_w`` moves in ``window_s`` seconds, exactly."""
    power = np.asarray(power_w, dtype=np.int64)
    return -((-power * window_s) // 3600)


def scaled_bound_wh(power_w: IntArray, wh_per_w: float) -> IntArray:
    """``power_w × wh_per_w`` rounded up to whole Wh."""
    return np.ceil(np.asarray(power_w, dtype=np.float64) * wh_per_w).astype(np.int64)


class SolarBound(Protocol):
    """What a W of PV rating can make at most over a window (Wh), e.g. ClearSkyEnvelope."""

    def wh_per_w(self, start: datetime, end: datetime) -> float: ...


@dataclass(frozen=True, slots=True)
class BatteryRule:
    """How batteries are checked (``[grid.meters.battery]``)."""

    round_trip_efficiency: float = 1.0
    unlinked_cycles_per_day: float = 3.0
    fallback_hours: float = 4.0

    def __post_init__(self) -> None:
        if not 0 < self.round_trip_efficiency <= 1:
            raise ValueError("round_trip_efficiency must be in (0, 1]")
        if self.unlinked_cycles_per_day <= 0 or self.fallback_hours <= 0:
            raise ValueError("unlinked_cycles_per_day and fallback_hours must be positive")


@dataclass(frozen=True, slots=True)
class Rules:
    """Everything the checks need besides the readings (built from ``[grid.meters]``)."""

    clock_skew_seconds: int = 300
    unrated_power_w: int = 43_000  # the grid's household_max_power_w
    battery: BatteryRule = field(default_factory=BatteryRule)
    solar: SolarBound | None = None  # None: no location configured, solar held to its rating


@dataclass(frozen=True, slots=True)
class IntervalReadings:
    """One interval's readings, one row each, with the approved values the rules need.

    ``power_w`` is the approved rating (0 for a consumer meter declared
    without one); ``capacity_wh`` the approved usable capacity of a battery
    (0: not declared); ``charge_row`` the row of a battery's charge meter
    reading (-1: none linked). Every approved battery needs a row, with 0 Wh
    when it sent no reading, so that its charging is carried; a linked charge
    meter without a reading needs a row with 0 Wh too.
    """

    asset: Sequence[str]
    kind: NDArray[np.int8]
    power_w: IntArray
    reading_wh: IntArray
    charge_row: IntArray
    capacity_wh: IntArray

    def __post_init__(self) -> None:
        n = len(self.asset)
        arrays = (self.kind, self.power_w, self.reading_wh, self.charge_row, self.capacity_wh)
        if any(np.shape(a) != (n,) for a in arrays):
            raise ValueError("every column of IntervalReadings needs one value per reading")
        if np.any(self.reading_wh < 0) or np.any(self.power_w < 0):
            raise ValueError("readings and ratings must not be negative")
        if np.any((self.power_w == 0) & (self.kind != METER)):
            raise ValueError("every source needs an approved rating")
        linked = self.charge_row >= 0
        if np.any(linked & (self.kind != BATTERY)) or np.any(self.charge_row >= n):
            raise ValueError("only batteries link a charge meter, and to a row of this interval")
        if np.any(self.kind[self.charge_row[linked]] != METER):
            raise ValueError("a battery's charge meter must be a consumer meter")

    @classmethod
    def of(
        cls,
        asset: Sequence[str],
        kind: Sequence[AssetKind],
        power_w: Sequence[int],
        reading_wh: Sequence[int],
        *,
        charge_row: Sequence[int] | None = None,
        capacity_wh: Sequence[int] | None = None,
    ) -> IntervalReadings:
        """From plain sequences (tests, small grids); missing battery columns mean none."""
        n = len(asset)
        return cls(
            asset,
            kind_codes(kind),
            np.asarray(power_w, dtype=np.int64),
            np.asarray(reading_wh, dtype=np.int64),
            np.asarray(charge_row if charge_row is not None else [-1] * n, dtype=np.int64),
            np.asarray(capacity_wh if capacity_wh is not None else [0] * n, dtype=np.int64),
        )

    @property
    def battery_rows(self) -> IntArray:
        return np.flatnonzero(self.kind == BATTERY).astype(np.int64)


@dataclass(frozen=True, slots=True)
class IntervalCheck:
    """The verdict on one interval, and the batteries' state to carry to the next.

    ``headroom_wh[j]`` belongs to the battery in row ``battery_rows[j]``.
    """

    checked: Checked
    battery_rows: IntArray
    headroom_wh: IntArray

    def flags(self, assets: Sequence[str], interval: datetime) -> list[Flag]:
        return self.checked.flags(assets, interval)


def battery_capacity_wh(capacity_wh: IntArray, power_w: IntArray, rule: BatteryRule) -> IntArray:
    """The declared usable capacity, or ``fallback_hours`` of the rating without one."""
    fallback = scaled_bound_wh(power_w, rule.fallback_hours)
    return np.where(capacity_wh > 0, capacity_wh, fallback)


def battery_bound_wh(headroom_wh: IntArray, charge_wh: IntArray, efficiency: float) -> IntArray:
    """The most a battery may discharge this interval: its headroom plus its charge × η."""
    return np.asarray(headroom_wh + np.ceil(charge_wh * efficiency), dtype=np.int64)


def carry_headroom(bound_wh: IntArray, settled_wh: IntArray, capacity_wh: IntArray) -> IntArray:
    """The headroom after the interval: what was allowed minus what is settled, capped."""
    return np.asarray(np.minimum(capacity_wh, bound_wh - settled_wh), dtype=np.int64)


def check_interval(
    rules: Rules,
    interval: datetime,
    length_s: int,
    readings: IntervalReadings,
    headroom_wh: IntArray | None = None,
) -> IntervalCheck:
    """Check every reading of one interval; carry each battery's headroom.

    ``headroom_wh`` is the state returned for the previous interval, one
    value per battery row (-1, or ``None`` for all: a battery seen for the
    first time, which starts full). Call it once per interval, in order,
    with the readings as they are settled.
    """
    skew = rules.clock_skew_seconds
    power = np.where(readings.power_w > 0, readings.power_w, rules.unrated_power_w)
    bounds: list[tuple[FlagCode, IntArray]] = [
        (FlagCode.OVER_RATING, rating_bound_wh(power, length_s + skew))
    ]
    if rules.solar is not None:
        window = timedelta(seconds=skew)
        end = interval + timedelta(seconds=length_s)
        wh_per_w = rules.solar.wh_per_w(interval - window, end + window)
        solar = scaled_bound_wh(power, wh_per_w)
        bounds.append(
            (FlagCode.ABOVE_CLEAR_SKY, np.where(readings.kind == SOLAR, solar, UNBOUNDED))
        )
    checked = tightest(readings.reading_wh, bounds)
    rows = readings.battery_rows
    if not len(rows):
        return IntervalCheck(checked, rows, np.zeros(0, dtype=np.int64))
    # Batteries: their charge meters' settled readings (rating only) feed their bound.
    capacity = battery_capacity_wh(readings.capacity_wh[rows], power[rows], rules.battery)
    previous = np.full(len(rows), -1, dtype=np.int64) if headroom_wh is None else headroom_wh
    if np.shape(previous) != rows.shape:
        raise ValueError("headroom_wh needs one value per battery row")
    headroom = np.where(previous < 0, capacity, np.minimum(previous, capacity))
    links = readings.charge_row[rows]
    allowance = scaled_bound_wh(
        capacity, rules.battery.unlinked_cycles_per_day * length_s / SECONDS_PER_DAY
    )
    charge = np.where(links >= 0, checked.settle_wh[np.maximum(links, 0)], allowance)
    battery = np.full(len(readings.asset), UNBOUNDED, dtype=np.int64)
    battery[rows] = battery_bound_wh(headroom, charge, rules.battery.round_trip_efficiency)
    checked = tightest(readings.reading_wh, [*bounds, (FlagCode.BATTERY_OVER_DISCHARGE, battery)])
    carried = carry_headroom(battery[rows], checked.settle_wh[rows], capacity)
    return IntervalCheck(checked, rows, carried)
