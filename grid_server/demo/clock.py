"""The demo's grid clock: held at the start while the neighbourhood joins, then accelerated.

Joining thousands of households takes real seconds; with the clock already
running at 300x that would be simulated hours before the first meter reading.
So the clock stands still at ``start`` until :meth:`DemoClock.run` and then
runs ``speed`` times faster than real time, like
:class:`grid_server.domain.clock.SimulatedClock`. It implements the grid's
:class:`~grid_server.domain.clock.Clock` protocol; the households' clients
sign their envelopes with the same clock, so their timestamps agree with the
grid's to the microsecond.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

# While held, sleepers wake this often (real seconds) to notice the start.
HELD_POLL_SECONDS = 0.05


class DemoClock:
    def __init__(self, start: datetime, speed: float) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware (UTC)")
        self.start = start.astimezone(UTC)
        self.speed = speed
        self._t0: float | None = None

    @property
    def running(self) -> bool:
        return self._t0 is not None

    def run(self) -> None:
        """Let time pass from now on (idempotent)."""
        if self._t0 is None:
            self._t0 = time.monotonic()

    def now(self) -> datetime:
        if self._t0 is None:
            return self.start
        return self.start + timedelta(seconds=(time.monotonic() - self._t0) * self.speed)

    def seconds_until(self, moment: datetime) -> float:
        """Real seconds until the clock shows ``moment``."""
        if self._t0 is None:
            return 0.0 if moment <= self.start else HELD_POLL_SECONDS
        return (moment - self.now()).total_seconds() / self.speed
