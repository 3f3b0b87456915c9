"""The grid's notion of time, injectable so tests and the demo control it.

Everything that asks "what time is it" in the grid server (freshness checks,
gate closure, the interval cycle) goes through a :class:`Clock`, never
``datetime.now`` directly. ``seconds_until`` converts a moment of grid time
into real seconds to sleep, which is how an accelerated clock runs a day in
minutes.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current grid time (timezone-aware UTC)."""
        ...

    def seconds_until(self, moment: datetime) -> float:
        """Real seconds until the grid clock reaches ``moment`` (<= 0 when past)."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def seconds_until(self, moment: datetime) -> float:
        return (moment - self.now()).total_seconds()


class SimulatedClock:
    """Grid time starting at ``start`` and running ``speed`` times faster than real time."""

    def __init__(self, start: datetime, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.start = start.astimezone(UTC)
        self.speed = speed
        self._t0 = time.monotonic()

    def now(self) -> datetime:
        return self.start + timedelta(seconds=(time.monotonic() - self._t0) * self.speed)

    def seconds_until(self, moment: datetime) -> float:
        return (moment - self.now()).total_seconds() / self.speed


class ManualClock:
    """A clock that only moves when told to (tests).

    ``seconds_until`` never promises more than ``poll`` real seconds, so a
    sleeper notices a jump soon even if nobody wakes it.
    """

    def __init__(self, start: datetime, poll: float = 0.05) -> None:
        self._now = start.astimezone(UTC)
        self.poll = poll

    def now(self) -> datetime:
        return self._now

    def set(self, moment: datetime) -> None:
        self._now = moment.astimezone(UTC)

    def advance(self, seconds: float = 0, **kwargs: float) -> datetime:
        self._now += timedelta(seconds=seconds, **kwargs)
        return self._now

    def seconds_until(self, moment: datetime) -> float:
        if moment <= self._now:
            return 0.0
        return self.poll


class FileClock:
    """Grid time read from a file that a test writes (test-only; off unless configured).

    Several worker processes (``p2p-grid serve --workers N``, or servers on
    other ports) share one clock that the test moves, like a
    :class:`ManualClock` across processes: the file holds one UTC timestamp
    (``2026-11-27T10:30:00Z``), replaced atomically by the test. Setting:
    ``P2P_TEST_CLOCK_FILE``. Like ``ManualClock``, ``seconds_until`` never
    promises more than ``poll`` real seconds, so a sleeper notices a jump.
    """

    def __init__(self, path: Path, poll: float = 0.2) -> None:
        self.path = path
        self.poll = poll
        self.now()  # fail at start, not at the first request

    def now(self) -> datetime:
        moment = datetime.fromisoformat(self.path.read_text().strip().replace("Z", "+00:00"))
        if moment.tzinfo is None:
            raise ValueError(f"{self.path}: the time must be UTC (end it with Z)")
        return moment.astimezone(UTC)

    def seconds_until(self, moment: datetime) -> float:
        if moment <= self.now():
            return 0.0
        return self.poll
