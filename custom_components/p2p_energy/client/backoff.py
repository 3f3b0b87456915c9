"""How long to wait before trying again after consecutive failures.

One rule for every retry that outlasts a single call (the live stream's
reconnects, a payment the ledger refused): the wait doubles with each
failure, from ``first`` up to ``longest``, so a brief outage is bridged
quickly and a long one is not hammered.
"""

from __future__ import annotations


def retry_delay(failures: int, *, first: float, longest: float) -> float:
    """Seconds to wait after ``failures`` consecutive failures (0 after none)."""
    if failures <= 0:
        return 0.0
    # Capped before raising 2 to a large power.
    return min(longest, first * 2.0 ** min(failures - 1, 62))
