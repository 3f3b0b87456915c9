"""Per-key sequence numbers that stay strictly increasing across restarts.

The grid refuses any envelope whose ``seq`` is not above the last one it
accepted for the key. A household that loses its stored counter (a restore
from backup, a reinstall) must still move forward, so the next number is
``max(last + 1, now in Unix milliseconds)``: wall-clock milliseconds grow
faster than any household sends, and the counter never goes backwards.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .protocol import MAX_SEQ


class SequenceCounter:
    """Hands out the next sequence number; remembers the last one used."""

    __slots__ = ("_clock_ms", "last")

    def __init__(self, last: int = 0, clock_ms: Callable[[], int] | None = None) -> None:
        self.last = last
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)

    def next(self) -> int:
        seq = max(self.last + 1, self._clock_ms())
        if seq > MAX_SEQ:
            raise OverflowError("sequence number space exhausted")
        self.last = seq
        return seq

    def observe(self, seq: int) -> None:
        """Move past a number the grid says it already accepted (resync)."""
        self.last = max(self.last, seq)
