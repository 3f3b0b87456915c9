"""Community savings against the status quo, exact in nano-units (10^-9 of the currency).

In the status quo every seller sells to the utility at the feed-in price and
every buyer buys from it at the retail price. For a cleared interval ``t``
with utility prices ``retail(t)`` and ``feed_in(t)``::

    savings(t) = Σ sell fills (price(zone) − feed_in(t)) × filled_wh
               + Σ buy fills  (retail(t) − price(zone)) × filled_wh

Every fill of a zone trades at the zone's one price, so this equals
``Σ zones (price − feed_in) × sold_wh + (retail − price) × bought_wh`` over
the zone results, which is how it is computed (a handful of rows per
interval however many households trade; the tests check the identity
against the fills). It counts what was traded at gate closure; deviations
settled at the utility's prices afterwards save nothing against the status
quo, which would have priced them the same. Link fees are paid out of the
zone price differences, so they are not savings.

**Energy.** Of the energy participants sold in the market (``sold_wh``), the
utility bought ``utility_buy_wh`` ("sold to the utility"); the rest went to
neighbours ("matched locally"). Equally, participants bought ``bought_wh`` =
matched locally + ``utility_sell_wh`` ("bought from the utility").

Both the dashboard and the demo's report use these, over any range of
intervals.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from grid_server.storage import grid_setup
from grid_server.storage import intervals as stored_intervals
from grid_server.storage.intervals import ZoneTotals


@dataclass(frozen=True, slots=True)
class PriceSteps:
    """The utility's prices over time: ``(effective_from, retail, feed_in)`` ascending."""

    starts: list[datetime]
    retail: list[int]
    feed_in: list[int]

    @classmethod
    def of(cls, rows: Sequence[Any]) -> PriceSteps:
        """From ``utility_prices`` rows, oldest first."""
        return cls(
            [r.effective_from for r in rows],
            [int(r.retail_ticks) for r in rows],
            [int(r.feed_in_ticks) for r in rows],
        )

    def at(self, t: datetime) -> tuple[int, int]:
        """``(retail, feed_in)`` ticks in force at ``t`` (the first step before any)."""
        i = max(bisect.bisect_right(self.starts, t) - 1, 0)
        return self.retail[i], self.feed_in[i]

    def ranges(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> list[tuple[datetime | None, datetime | None, int, int]]:
        """``(from, until, retail, feed_in)`` of each step overlapping ``[since, until)``.

        The first step also covers earlier times; ``None`` is an open end.
        """
        out: list[tuple[datetime | None, datetime | None, int, int]] = []
        for i in range(len(self.starts)):
            begin = None if i == 0 else self.starts[i]
            end = self.starts[i + 1] if i + 1 < len(self.starts) else None
            if since is not None and (end is not None and end <= since):
                continue
            if until is not None and (begin is not None and begin >= until):
                continue
            begin = _later(begin, since)
            end = _earlier(end, until)
            out.append((begin, end, self.retail[i], self.feed_in[i]))
        return out


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else max(a, b)


def _earlier(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


async def price_steps(conn: AsyncConnection) -> PriceSteps:
    return PriceSteps.of(await grid_setup.price_rows(conn))


def savings_nano(
    sold_wh: int, sold_value: int, bought_wh: int, bought_value: int, *, retail: int, feed_in: int
) -> int:
    """Savings of sales worth ``sold_value`` and purchases worth ``bought_value`` (ticks × Wh)."""
    return (sold_value - feed_in * sold_wh) + (retail * bought_wh - bought_value)


@dataclass(frozen=True, slots=True)
class MarketTotals:
    """Energy traded in the market over a range of intervals, and what it saved."""

    sold_wh: int = 0
    bought_wh: int = 0
    to_utility_wh: int = 0
    from_utility_wh: int = 0
    savings_nano: int = 0

    @property
    def local_wh(self) -> int:
        """Matched between neighbours: sold and not bought by the utility."""
        return self.sold_wh - self.to_utility_wh

    def plus(self, zone: ZoneTotals, *, retail: int, feed_in: int) -> MarketTotals:
        saved = savings_nano(
            zone.sold_wh,
            zone.sold_value,
            zone.bought_wh,
            zone.bought_value,
            retail=retail,
            feed_in=feed_in,
        )
        return MarketTotals(
            self.sold_wh + zone.sold_wh,
            self.bought_wh + zone.bought_wh,
            self.to_utility_wh + zone.utility_buy_wh,
            self.from_utility_wh + zone.utility_sell_wh,
            self.savings_nano + saved,
        )


async def market_totals(
    conn: AsyncConnection,
    steps: PriceSteps,
    since: datetime | None = None,
    until: datetime | None = None,
) -> MarketTotals:
    """:class:`MarketTotals` of ``[since, until)``: one query per utility price step."""
    totals = MarketTotals()
    for begin, end, retail, feed_in in steps.ranges(since, until):
        zone = await stored_intervals.zone_totals(conn, begin, end)
        totals = totals.plus(zone, retail=retail, feed_in=feed_in)
    return totals


__all__ = ["MarketTotals", "PriceSteps", "market_totals", "price_steps", "savings_nano"]
