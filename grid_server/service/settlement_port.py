"""What the cycle hands to the settlement arithmetic, and what it gets back.

The arithmetic itself (``grid_server.domain.settlement``) belongs to the
market engine; this module only adapts the stored interval (fills, metered
energy, prices) to it and its line items back to rows. A participant with no
readings for an interval is settled as metered zero: everything it bought is
counted as not consumed and everything it sold as not delivered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from grid_server.domain import market


@dataclass(frozen=True, slots=True)
class FillInput:
    participant_id: int
    order_id: str
    side: str
    zone: str
    filled_wh: int
    price_ticks: int


@dataclass(frozen=True, slots=True)
class Metered:
    produced_wh: int
    consumed_wh: int


@dataclass(frozen=True, slots=True)
class IntervalInputs:
    interval: datetime
    interval_minutes: int
    retail_ticks: int
    feed_in_ticks: int
    zone_prices: dict[str, int]
    zones: tuple[market.Zone, ...]
    fills: tuple[FillInput, ...]
    metered: dict[int, Metered]
    zone_of: dict[int, str]
    addresses: dict[int, str]


@dataclass(frozen=True, slots=True)
class LineOut:
    participant_id: int | None  # None: the grid's own account
    kind: str
    energy_wh: int
    price_ticks: int
    amount_micro: int  # > 0: owed to the grid


def settle(inputs: IntervalInputs) -> list[LineOut]:
    raise NotImplementedError("waiting for grid_server.domain.settlement")
