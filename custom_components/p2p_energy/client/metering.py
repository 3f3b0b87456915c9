"""Turn cumulative energy meters into energy per delivery interval.

Home Assistant energy sensors are cumulative (``state_class:
total_increasing``): the state is a running total that occasionally resets
to zero (a new inverter day, a replaced meter) and sometimes is
``unavailable``. The grid wants integer Wh per asset and interval. The rules:

* Energy between two observations is spread over that time span linearly and
  split at interval boundaries, so an update that straddles a boundary is
  shared fairly.
* A drop of at least ``RESET_DROP_FRACTION`` of the previous total starts a
  new cycle (as Home Assistant's statistics treat it): the new total counts
  from zero. A smaller drop is meter jitter: it is ignored until the total
  climbs back above the highest value seen, so nothing is counted twice.
* When the asset's rated power is known, a change its power cannot explain
  in the time it took (and at least one interval) is not energy: a swapped
  meter that starts at its own reading, a glitch to some lower value, or the
  jump back from a glitch. The
  new total then only becomes the starting point (:attr:`MeterTracker.jumps`
  counts these, for the diagnostics). Without a rated power Home
  Assistant's rule applies alone. So a meter swap is never sent as one
  enormous reading that the grid refuses as over capacity.
* Unavailable or unknown states are skipped; the energy across the gap is
  spread over the gap when the meter comes back.
* An interval is final once an observation at or after its end has arrived
  (everything up to the boundary is known), or when ``grace`` has passed
  after its end while the meter is available (a meter whose total does not
  change sends no updates). While the meter is unavailable, intervals wait
  up to ``max_hold`` after their end for it to come back, so the energy of
  the gap can still be spread over them; the grid accepts readings for a
  while after an interval (its settlement window). Energy that arrives for an
  interval that is already final is added to the oldest open interval:
  energy is never lost, and a sent reading is never changed.
* Wh are integers; fractions are carried to the next interval rather than
  rounded away, so totals are exact over time.

The whole state is a JSON-able dict (:meth:`MeterTracker.to_state` /
:meth:`MeterTracker.from_state`), so it survives a Home Assistant restart
without double counting: after a restart the first observation is compared
with the last total seen before it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .units import interval_start

RESET_DROP_FRACTION = 0.1
ENERGY_UNITS_TO_WH: dict[str, float] = {
    "Wh": 1.0,
    "kWh": 1_000.0,
    "MWh": 1_000_000.0,
    "GWh": 1_000_000_000.0,
}


class MeteringError(ValueError):
    """A sensor state cannot be read as energy."""


def to_wh(value: float, unit: str | None) -> float:
    """Convert a state in ``unit`` to Wh (energy sensors report Wh, kWh or MWh)."""
    if unit not in ENERGY_UNITS_TO_WH:
        known = ", ".join(ENERGY_UNITS_TO_WH)
        raise MeteringError(f"unit {unit!r} is not an energy unit ({known})")
    return value * ENERGY_UNITS_TO_WH[unit]


def parse_state(state: str | float | None) -> float | None:
    """A sensor state as a number, or ``None`` for unavailable/unknown/garbage."""
    if state is None:
        return None
    try:
        value = float(state)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return value


@dataclass(frozen=True, slots=True)
class IntervalEnergy:
    """A finished interval's energy for one asset."""

    interval: datetime
    energy_wh: int


@dataclass(slots=True)
class MeterTracker:
    """Energy per interval for one cumulative meter."""

    interval_minutes: int
    grace: timedelta = timedelta(minutes=2)
    max_hold: timedelta = timedelta(minutes=40)
    available: bool = True
    last_total_wh: float | None = None  # highest cumulative total counted so far
    last_time: datetime | None = None
    open_wh: dict[datetime, float] = field(default_factory=dict)  # open intervals
    carry_wh: float = 0.0  # fractional Wh not yet reported
    finalized_until: datetime | None = None  # intervals before this are reported
    jumps: int = 0  # implausible changes taken as a new starting point

    @property
    def _length(self) -> timedelta:
        return timedelta(minutes=self.interval_minutes)

    def observe(self, total_wh: float, at: datetime, max_power_w: int | None = None) -> None:
        """Record a cumulative total (already converted to Wh) observed at ``at``.

        ``max_power_w``: the asset's rated power, when known (see the module's rules).
        """
        if at.tzinfo is None:
            raise MeteringError("observation time must be timezone-aware (UTC)")
        at = at.astimezone(UTC)
        self.available = True
        if self.last_total_wh is None or self.last_time is None:
            self._start(total_wh, at)
            return
        if at < self.last_time:
            return  # out-of-order state: the later one already counted this span
        if total_wh >= self.last_total_wh:
            delta = total_wh - self.last_total_wh
        elif total_wh <= self.last_total_wh * (1 - RESET_DROP_FRACTION):
            delta = total_wh  # a new cycle: the new total counts from zero
        else:
            # Jitter below the highest total: wait until the meter passes it again.
            self.last_time = at
            return
        if max_power_w is not None and delta > self._possible_wh(max_power_w, at):
            # Not energy the asset can have delivered: a new starting point.
            self.jumps += 1
            delta = 0.0
        self._spread(delta, self.last_time, at)
        self.last_total_wh = total_wh
        self.last_time = at

    def _possible_wh(self, max_power_w: int, at: datetime) -> float:
        """The most the asset can deliver since the last observation, generously.

        At least one interval's worth, as the grid bounds a reading: energy
        within it never makes a reading the grid refuses, and the timestamps
        of two updates a few seconds apart (a meter near its rated power)
        cannot make real energy look impossible.
        """
        assert self.last_time is not None
        seconds = max((at - self.last_time).total_seconds(), self._length.total_seconds())
        return max_power_w * seconds / 3600

    def _start(self, total_wh: float, at: datetime) -> None:
        self.last_total_wh = total_wh
        self.last_time = at
        if self.finalized_until is None:
            self.finalized_until = interval_start(at, self.interval_minutes)

    def _spread(self, delta: float, start: datetime, end: datetime) -> None:
        if delta <= 0:
            return
        span = (end - start).total_seconds()
        if span <= 0:
            self._add(interval_start(end, self.interval_minutes), delta)
            return
        cursor = start
        while cursor < end:
            slot = interval_start(cursor, self.interval_minutes)
            upto = min(slot + self._length, end)
            self._add(slot, delta * (upto - cursor).total_seconds() / span)
            cursor = upto

    def _add(self, slot: datetime, wh: float) -> None:
        assert self.finalized_until is not None
        # Energy for a reported interval goes to the oldest open one.
        slot = max(slot, self.finalized_until)
        self.open_wh[slot] = self.open_wh.get(slot, 0.0) + wh

    def mark_unavailable(self) -> None:
        """The sensor is unavailable or unknown: hold intervals open for a while."""
        self.available = False

    def finalize(self, now: datetime) -> list[IntervalEnergy]:
        """Close every interval that is complete at ``now``; return their energy in order.

        Intervals without observations are reported as 0 Wh once the meter
        has been seen at least once, so the grid sees a continuous series.
        """
        if self.finalized_until is None or self.last_time is None:
            return []
        done: list[IntervalEnergy] = []
        while True:
            slot = self.finalized_until
            end = slot + self._length
            known = self.last_time >= end
            wait = self.grace if self.available else self.max_hold
            if not (known or now >= end + wait):
                break
            exact = self.open_wh.pop(slot, 0.0) + self.carry_wh
            whole = math.floor(exact + 1e-9)
            self.carry_wh = max(exact - whole, 0.0)
            done.append(IntervalEnergy(slot, whole))
            self.finalized_until = end
        return done

    def to_state(self) -> dict[str, Any]:
        return {
            "interval_minutes": self.interval_minutes,
            "grace_s": self.grace.total_seconds(),
            "max_hold_s": self.max_hold.total_seconds(),
            "available": self.available,
            "last_total_wh": self.last_total_wh,
            "last_time": self.last_time.isoformat() if self.last_time else None,
            "open_wh": {k.isoformat(): v for k, v in sorted(self.open_wh.items())},
            "carry_wh": self.carry_wh,
            "finalized_until": self.finalized_until.isoformat() if self.finalized_until else None,
            "jumps": self.jumps,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> MeterTracker:
        def when(text: str | None) -> datetime | None:
            return datetime.fromisoformat(text) if text else None

        return cls(
            interval_minutes=int(state["interval_minutes"]),
            grace=timedelta(seconds=float(state.get("grace_s", 120))),
            max_hold=timedelta(seconds=float(state.get("max_hold_s", 2400))),
            available=bool(state.get("available", True)),
            last_total_wh=state.get("last_total_wh"),
            last_time=when(state.get("last_time")),
            open_wh={datetime.fromisoformat(k): float(v) for k, v in state["open_wh"].items()},
            carry_wh=float(state.get("carry_wh", 0.0)),
            finalized_until=when(state.get("finalized_until")),
            jumps=int(state.get("jumps", 0)),
        )
