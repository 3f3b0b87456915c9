"""Token buckets per key and per client address (in process memory).

Each worker limits on its own; behind N workers the effective limit is up to
N times the configured one, which is fine for what it guards against (one
client flooding, invitation guessing).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from p2p_energy_client.protocol import ErrorCode, ProtocolError

if TYPE_CHECKING:
    from grid_server.config import Settings

MAX_TRACKED = 100_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class TokenBuckets:
    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str, cost: float = 1.0) -> bool:
        now = time.monotonic()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_TRACKED:
                self._buckets.clear()  # crude but bounded; a flood only resets the limits
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
        bucket.stamp = now
        if bucket.tokens < cost:
            return False
        bucket.tokens -= cost
        return True

    def peek(self, key: str) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            return True
        tokens = min(self.burst, bucket.tokens + (time.monotonic() - bucket.stamp) * self.rate)
        return tokens >= 1.0


class RateLimiter:
    def __init__(self, settings: Settings) -> None:
        self.per_key = TokenBuckets(settings.rate_per_key, settings.burst_per_key)
        self.per_address = TokenBuckets(settings.rate_per_address, settings.burst_per_address)
        per_hour = max(1, settings.join_failures_per_hour)
        self.join_failures = TokenBuckets(per_hour / 3600.0, per_hour)

    def check_address(self, address: str) -> None:
        if not self.per_address.take(address):
            raise ProtocolError(
                ErrorCode.RATE_LIMITED, "too many requests from this address", "client"
            )

    def check_key(self, key: str) -> None:
        if not self.per_key.take(key):
            raise ProtocolError(
                ErrorCode.RATE_LIMITED, "too many requests for this key", "public_key"
            )

    def check_join_allowed(self, address: str) -> None:
        if not self.join_failures.peek(address):
            raise ProtocolError(
                ErrorCode.RATE_LIMITED,
                "too many failed invitation codes from this address; retry later",
                "payload.invitation",
            )

    def record_join_failure(self, address: str) -> None:
        self.join_failures.take(address)
