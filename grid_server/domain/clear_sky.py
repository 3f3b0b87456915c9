"""The most a PV array can make at the grid's location and time: a clear-sky envelope (pvlib).

A PV reading is plausible only up to what its approved rating could make
under a clear sky at that place and time, whatever the array's orientation
and whatever the weather did to help. The bound per watt of rating is

    P_max(t) / P_rated = margin × G_max(t) / 1000 W/m²

* ``G_max = DNI + DHI + ground_reflectance × GHI``: no plane can receive
  more direct light than the beam itself (cos θ ≤ 1), more sky light than
  the whole sky's diffuse irradiance, or more ground light than the ground
  reflects (a plane tilted at most vertically sees at most half of the
  ground: 0.5 of fresh snow's ~0.9 reflectance), so this bounds every
  orientation at once; from pvlib's solar position and Ineichen clear-sky
  model with a fixed, low Linke turbidity (very clean, dry air: more light
  than the climatology gives, and no data files to read).
* Twilight: the clear-sky model is dark once the sun is below the horizon,
  but the sky is not. While the sun is less than 6° below the horizon (civil
  twilight) ``G_max`` is at least ``twilight_irradiance`` (the whole sky
  gives a few W/m² around sunrise and sunset; an array feeds in a few watts).
* ``margin = cloud_enhancement × cold_cell_gain × dc_ac_ratio``: sunlight
  focused by cloud edges above the clear-sky value, cells colder than the
  25 °C of the rating (more power), and arrays with more panel peak power
  than the rating (the rating is the AC output; many inverters carry 1.1-1.5
  times their rating in panels). System and inverter losses are not counted,
  which favours the household.

The energy bound of a time window integrates ``P_max``: the irradiance is
evaluated at the points of a fixed grid of ``sample_seconds`` from UTC
midnight and each cell counts with the larger of its two ends, an upper sum
for a curve that rises until noon and falls after it (at sunrise a cell
counts with the light at its end). Each UTC day is computed once (one pvlib
call) and kept, so checking an interval costs a few array sums.

See docs/operators/meters.md for the defaults and why.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from pvlib.location import Location

FloatArray = NDArray[np.float64]

SECONDS_PER_DAY: Final = 86_400
STC_IRRADIANCE: Final = 1000.0  # W/m²: what a panel's peak rating is measured at
CIVIL_TWILIGHT: Final = -6.0  # degrees of solar elevation: the sky is dark below it
CACHED_DAYS: Final = 800  # about two years of days: a server never recomputes a week


@dataclass(frozen=True, slots=True)
class Site:
    """Where the grid is: the sun's position and the air above depend on it."""

    latitude: float
    longitude: float
    altitude_m: float = 0.0


@dataclass(frozen=True, slots=True)
class SolarMargins:
    """How far above the clear-sky irradiance a PV reading may still be believed."""

    linke_turbidity: float = 2.0
    ground_reflectance: float = 0.5
    cloud_enhancement: float = 1.5
    cold_cell_gain: float = 1.2
    dc_ac_ratio: float = 1.5
    twilight_irradiance: float = 10.0  # W/m²
    sample_seconds: int = 300

    def __post_init__(self) -> None:
        if self.sample_seconds <= 0 or SECONDS_PER_DAY % self.sample_seconds:
            raise ValueError("sample_seconds must divide a day")

    @property
    def factor(self) -> float:
        """What one W/m² of clear-sky envelope may give per W of rating, over 1000 W/m²."""
        return self.cloud_enhancement * self.cold_cell_gain * self.dc_ac_ratio / STC_IRRADIANCE


class ClearSkyEnvelope:
    """Upper bound of the energy one watt of approved PV rating makes over a time window."""

    def __init__(self, site: Site, margins: SolarMargins | None = None) -> None:
        self.site = site
        self.margins = margins or SolarMargins()
        self._location = Location(site.latitude, site.longitude, tz="UTC", altitude=site.altitude_m)
        # Per UTC day: the bound on each sample cell, in Wh per W of rating.
        self._days: OrderedDict[date, FloatArray] = OrderedDict()

    def irradiance(self, times: pd.DatetimeIndex) -> FloatArray:
        """``G_max`` (W/m²) at ``times``: the most any plane receives under clear sky."""
        position = self._location.get_solarposition(times)
        clear = self._location.get_clearsky(
            times,
            model="ineichen",
            solar_position=position,
            linke_turbidity=self.margins.linke_turbidity,
        )
        total = np.nan_to_num(
            np.asarray(clear["dni"], dtype=np.float64)
            + np.asarray(clear["dhi"], dtype=np.float64)
            + self.margins.ground_reflectance * np.asarray(clear["ghi"], dtype=np.float64)
        ).clip(0.0)
        twilight = np.asarray(position["elevation"], dtype=np.float64) > CIVIL_TWILIGHT
        return np.where(twilight, np.maximum(total, self.margins.twilight_irradiance), total)

    def prepare(self, first: date, last: date) -> None:
        """Compute the days ``first`` to ``last`` (inclusive) in one pvlib call.

        Needed only to warm the cache for many days at once (a year in a
        test); :meth:`wh_per_w` computes a missing day by itself.
        """
        missing = [
            first + timedelta(days=i)
            for i in range((last - first).days + 1)
            if first + timedelta(days=i) not in self._days
        ]
        if not missing:
            return
        step = self.margins.sample_seconds
        per_day = SECONDS_PER_DAY // step
        points = [_day_points(day, step) for day in missing]
        values = self.irradiance(pd.DatetimeIndex(np.concatenate(points)).tz_localize(UTC))
        for i, day in enumerate(missing):
            g = values[i * (per_day + 1) : (i + 1) * (per_day + 1)]
            cells = np.maximum(g[:-1], g[1:]) * (self.margins.factor * step / 3600.0)
            self._keep(day, np.asarray(cells, dtype=np.float64))

    def _keep(self, day: date, cells: FloatArray) -> None:
        self._days[day] = cells
        self._days.move_to_end(day)
        while len(self._days) > CACHED_DAYS:
            self._days.popitem(last=False)

    def _cells(self, day: date) -> FloatArray:
        cells = self._days.get(day)
        if cells is None:
            self.prepare(day, day)
            cells = self._days[day]
        return cells

    def wh_per_w(self, start: datetime, end: datetime) -> float:
        """Upper bound of the energy (Wh) per W of rating between ``start`` and ``end``."""
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("times must be timezone-aware (UTC)")
        start, end = start.astimezone(UTC), end.astimezone(UTC)
        step = self.margins.sample_seconds
        total = 0.0
        day = start.date()
        while day <= end.date():
            midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
            lo = max((start - midnight).total_seconds(), 0.0)
            hi = min((end - midnight).total_seconds(), float(SECONDS_PER_DAY))
            if hi > lo:
                total += _window_sum(self._cells(day), lo / step, hi / step)
            day += timedelta(days=1)
        return total


def _day_points(day: date, step: int) -> NDArray[np.datetime64]:
    """The sample grid of one UTC day, both midnights included."""
    midnight = np.datetime64(day.isoformat(), "s")
    return midnight + np.arange(0, SECONDS_PER_DAY + 1, step).astype("timedelta64[s]")


def _window_sum(cells: FloatArray, lo: float, hi: float) -> float:
    """Sum of ``cells`` over the fractional cell range ``[lo, hi)`` (partial cells pro rata)."""
    first, last = int(np.floor(lo)), int(np.ceil(hi))
    weights = np.ones(last - first)
    weights[0] -= lo - first
    weights[-1] -= last - hi
    return float(np.dot(cells[first:last], weights))
