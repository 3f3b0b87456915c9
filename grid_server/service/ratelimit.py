"""Token buckets per key and per client address (in process memory).

Each worker limits on its own; behind N workers the effective limit is up to
N times the configured one, which is fine for what it guards against (one
client flooding, invitation and token guessing).

Buckets are bounded: when ``MAX_TRACKED`` keys are tracked, the least
recently used bucket is forgotten. Only a bucket that was not drained can be
forgotten without loss of state; a flood of fresh keys or addresses forgets
the oldest ones first and so cannot reset the limit of the client it is
throttling right now (clearing every bucket at once would).
"""

from __future__ import annotations

import time
from collections import OrderedDict
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
    def __init__(self, rate: float, burst: float, max_tracked: int = MAX_TRACKED) -> None:
        self.rate = rate
        self.burst = burst
        self.max_tracked = max_tracked
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, key: str, cost: float = 1.0) -> bool:
        now = time.monotonic()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_tracked:
                self._buckets.popitem(last=False)  # the least recently used
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        else:
            self._buckets.move_to_end(key)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
        bucket.stamp = now
        if bucket.tokens < cost:
            return False
        bucket.tokens -= cost
        return True

    def give_back(self, key: str, cost: float = 1.0) -> None:
        """Return what :meth:`take` took (the request turned out not to count)."""
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.tokens = min(self.burst, bucket.tokens + cost)

    def peek(self, key: str) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            return True
        tokens = min(self.burst, bucket.tokens + (time.monotonic() - bucket.stamp) * self.rate)
        return tokens >= 1.0

    def __len__(self) -> int:
        return len(self._buckets)


def _per_hour(count: int) -> TokenBuckets:
    count = max(1, count)
    return TokenBuckets(count / 3600.0, count)


class RateLimiter:
    def __init__(self, settings: Settings) -> None:
        self.per_key = TokenBuckets(settings.rate_per_key, settings.burst_per_key)
        self.per_address = TokenBuckets(settings.rate_per_address, settings.burst_per_address)
        self.refusals = TokenBuckets(
            settings.refusals_per_address, settings.refusal_burst_per_address
        )
        self.join_failures = _per_hour(settings.join_failures_per_hour)
        self.auth_failures = _per_hour(settings.auth_failures_per_hour)

    def check_address(self, address: str) -> None:
        if not self.per_address.take(address):
            raise ProtocolError(
                ErrorCode.RATE_LIMITED, "too many requests from this address", "client"
            )

    def check_key(self, key: str) -> None:
        """Per member key: called only once the key is known to be a member, so that
        keys made up by the thousand neither get buckets nor push members' out."""
        if not self.per_key.take(key):
            raise ProtocolError(
                ErrorCode.RATE_LIMITED, "too many requests for this key", "public_key"
            )

    def check_refusals(self, address: str) -> None:
        """Before any work for an address that keeps sending envelopes of non-members."""
        if not self.refusals.peek(address):
            raise ProtocolError(
                ErrorCode.RATE_LIMITED,
                "too many envelopes from keys that are not members; retry later",
                "public_key",
            )

    def take_lookup(self, address: str) -> None:
        """Before looking up a key this process does not know: one of the address's
        refusal tokens, given back if the key is a member (:meth:`give_back_lookup`).
        Taken before the lookup, so concurrent requests cannot all slip past a peek."""
        if not self.refusals.take(address):
            raise ProtocolError(
                ErrorCode.RATE_LIMITED,
                "too many envelopes from keys that are not members; retry later",
                "public_key",
            )

    def give_back_lookup(self, address: str) -> None:
        self.refusals.give_back(address)

    def check_join_allowed(self, address: str) -> None:
        if not self.join_failures.peek(address):
            raise ProtocolError(
                ErrorCode.RATE_LIMITED,
                "too many failed invitation codes from this address; retry later",
                "payload.invitation",
            )

    def record_join_failure(self, address: str) -> None:
        self.join_failures.take(address)

    def check_auth_allowed(self, address: str, field: str = "authorization") -> None:
        """Before comparing an operator token: an address that guessed wrong too often waits."""
        if not self.auth_failures.peek(address):
            raise ProtocolError(
                ErrorCode.RATE_LIMITED, "too many wrong operator tokens; retry later", field
            )

    def record_auth_failure(self, address: str) -> None:
        self.auth_failures.take(address)
