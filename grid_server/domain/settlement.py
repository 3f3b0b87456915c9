"""Settlement arithmetic of one interval: who owes whom, exactly.

Rules (ARCHITECTURE.md, Settlement): every matched trade is paid at the
participant's zone price. Then the participant's metered net export
``m = produced - consumed`` is compared with its matched position
``s - b`` (sold minus bought): a shortfall (``m < s - b``) is bought from the
utility at retail, a surplus (``m > s - b``) sold to it at feed-in.

Money is in integer micro-units (10^-6 currency). Each line is first exact in
10^-9 currency (price ticks x Wh) and then rounded on its own toward the
grid: whoever pays rounds up, whoever receives rounds down
(:func:`~p2p_energy_client.units.micro_ceil` and
:func:`~p2p_energy_client.units.micro_floor`). That holds for the utility too.

Sign convention: an amount is what the account *receives*; payments are
negative. Three kinds of account take part:

* participants: ``market_buy``, ``market_sell``, ``shortfall_retail``,
  ``surplus_feed_in``;
* the utility: ``market_sell`` / ``market_buy`` (its clearing trades in each
  zone, at that zone's price), ``shortfall_retail`` / ``surplus_feed_in``
  (the deviations, in total);
* the grid: per link ``link_fee`` (fee x energy) and ``congestion``
  ((price difference - fee) x energy, never negative at valid prices), and
  one ``rounding`` line, the remainder.

Every interval the amounts of all accounts sum to exactly zero, and the
rounding line is at least 0 and below the number of lines (in micro-units),
provided the positions balance every zone as the clearing did; :func:`settle`
checks that first.

Per-participant work is a handful of NumPy operations over all participants,
so 100,000 households settle in milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from grid_server.domain.market import MarketResult, Utility, ZoneTree
from grid_server.domain.market.book import as_ints
from p2p_energy_client.units import micro_ceil, micro_floor

I64 = NDArray[np.int64]
Account = Literal["participant", "utility", "grid"]

# Products of price and energy, and their sums, must stay inside int64.
_INT64_SAFE = 1 << 62
# Per-zone sums use float bincount, exact for integers below 2^53.
_FLOAT_EXACT = float(1 << 53)


class SettlementError(ValueError):
    """Inputs that cannot be settled (they do not match the clearing result)."""


@dataclass(frozen=True, eq=False)
class Participants:
    """One interval's participants as parallel arrays.

    ``bought_wh``/``sold_wh``: matched energy, the sum of the participant's
    buy and sell fills (see :func:`matched_positions`); ``consumed_wh`` and
    ``produced_wh``: what its meters measured.
    """

    zone: NDArray[np.int32]
    bought_wh: I64
    sold_wh: I64
    consumed_wh: I64
    produced_wh: I64

    def __len__(self) -> int:
        return len(self.zone)


def matched_positions(
    owner: NDArray[np.intp], is_buy: NDArray[np.bool_], fills_wh: I64, count: int
) -> tuple[I64, I64]:
    """Sum order fills per participant: ``(bought_wh, sold_wh)``.

    ``owner[i]`` is the participant of order ``i``. Float sums are exact here:
    the engine bounds a book's energy far below 2^53 Wh.
    """
    bought = np.bincount(owner, weights=np.where(is_buy, fills_wh, 0), minlength=count)
    sold = np.bincount(owner, weights=np.where(is_buy, 0, fills_wh), minlength=count)
    return bought.astype(np.int64), sold.astype(np.int64)


@dataclass(frozen=True, eq=False)
class ParticipantLines:
    """Micro-unit amounts per participant and kind (positive = received)."""

    market_buy: I64
    market_sell: I64
    shortfall_retail: I64
    surplus_feed_in: I64

    def total(self) -> I64:
        total: I64 = (
            self.market_buy + self.market_sell + self.shortfall_retail + self.surplus_feed_in
        )
        return total


@dataclass(frozen=True, slots=True)
class LineItem:
    account: Account
    kind: str
    energy_wh: int
    price_ticks: int
    amount_micro: int
    participant: int | None = None  # index into the participants
    zone: int | None = None  # zone index, where the line belongs to one


@dataclass(frozen=True, eq=False)
class Settlement:
    price_ticks: I64  # each participant's zone price
    retail_ticks: int
    feed_in_ticks: int
    bought_wh: I64
    sold_wh: I64
    shortfall_wh: I64  # bought from the utility at retail
    surplus_wh: I64  # sold to the utility at feed-in
    participants: ParticipantLines
    utility: tuple[LineItem, ...]
    grid: tuple[LineItem, ...]

    def total_micro(self) -> int:
        """Sum over every account; zero by construction."""
        return (
            sum(int(getattr(self.participants, f.name).sum()) for f in fields(ParticipantLines))
            + sum(line.amount_micro for line in self.utility)
            + sum(line.amount_micro for line in self.grid)
        )

    def rounding_micro(self) -> int:
        return next(line.amount_micro for line in self.grid if line.kind == "rounding")

    def lines(self) -> Iterator[LineItem]:
        """Every line that moves energy, as an object: participants by kind, then utility
        and grid (rounding last). A line can be worth 0 micro-units after rounding."""
        retail = np.full(len(self.price_ticks), self.retail_ticks)
        feed_in = np.full(len(self.price_ticks), self.feed_in_ticks)
        terms = {
            "market_buy": (self.bought_wh, self.price_ticks),
            "market_sell": (self.sold_wh, self.price_ticks),
            "shortfall_retail": (self.shortfall_wh, retail),
            "surplus_feed_in": (self.surplus_wh, feed_in),
        }
        for f in fields(ParticipantLines):
            amounts = getattr(self.participants, f.name)
            energy, price = terms[f.name]
            for i in as_ints(np.flatnonzero(energy)):
                yield LineItem(
                    "participant",
                    f.name,
                    int(energy[i]),
                    int(price[i]),
                    int(amounts[i]),
                    participant=i,
                )
        yield from self.utility
        yield from self.grid


def settle(
    tree: ZoneTree, utility: Utility, market: MarketResult, participants: Participants
) -> Settlement:
    """Line items of one interval for every participant, the utility and the grid."""
    _check(tree, market, participants)
    price = market.price_ticks[participants.zone]
    position = participants.sold_wh - participants.bought_wh
    metered = participants.produced_wh - participants.consumed_wh
    shortfall = np.maximum(position - metered, 0)
    surplus = np.maximum(metered - position, 0)
    _check_range(utility, market, participants, shortfall, surplus)
    lines = ParticipantLines(
        market_buy=-micro_ceil(price * participants.bought_wh),
        market_sell=micro_floor(price * participants.sold_wh),
        shortfall_retail=-micro_ceil(utility.retail_ticks * shortfall),
        surplus_feed_in=micro_floor(utility.feed_in_ticks * surplus),
    )
    utility_lines = _utility_lines(utility, market, int(shortfall.sum()), int(surplus.sum()))
    link_lines = _link_lines(tree, market)
    so_far = (
        int(lines.total().sum())
        + sum(line.amount_micro for line in utility_lines)
        + sum(line.amount_micro for line in link_lines)
    )
    rounding = LineItem("grid", "rounding", 0, 0, -so_far)
    return Settlement(
        price_ticks=price,
        retail_ticks=utility.retail_ticks,
        feed_in_ticks=utility.feed_in_ticks,
        bought_wh=participants.bought_wh,
        sold_wh=participants.sold_wh,
        shortfall_wh=shortfall,
        surplus_wh=surplus,
        participants=lines,
        utility=tuple(utility_lines),
        grid=(*link_lines, rounding),
    )


def _utility_lines(
    utility: Utility, market: MarketResult, shortfall_wh: int, surplus_wh: int
) -> list[LineItem]:
    lines = []
    for z, (price, sold, bought) in enumerate(
        zip(
            as_ints(market.price_ticks),
            as_ints(market.utility_sell_wh),
            as_ints(market.utility_buy_wh),
            strict=True,
        )
    ):
        if sold:
            lines.append(
                LineItem("utility", "market_sell", sold, price, micro_floor(price * sold), zone=z)
            )
        if bought:
            lines.append(
                LineItem(
                    "utility", "market_buy", bought, price, -micro_ceil(price * bought), zone=z
                )
            )
    if shortfall_wh:
        amount = micro_floor(utility.retail_ticks * shortfall_wh)
        lines.append(
            LineItem("utility", "shortfall_retail", shortfall_wh, utility.retail_ticks, amount)
        )
    if surplus_wh:
        amount = -micro_ceil(utility.feed_in_ticks * surplus_wh)
        lines.append(
            LineItem("utility", "surplus_feed_in", surplus_wh, utility.feed_in_ticks, amount)
        )
    return lines


def _link_lines(tree: ZoneTree, market: MarketResult) -> list[LineItem]:
    """The grid's income on each link: the fee, and the rest of the price difference."""
    lines = []
    prices = as_ints(market.price_ticks)
    for z, flow in enumerate(as_ints(market.flow_to_parent_wh)):
        if not flow:
            continue
        fee = int(tree.fee_ticks[z])
        energy = abs(flow)
        spread = (prices[int(tree.parent[z])] - prices[z]) * (1 if flow > 0 else -1)
        lines.append(LineItem("grid", "link_fee", energy, fee, micro_floor(fee * energy), zone=z))
        congestion = spread - fee
        if congestion:
            lines.append(
                LineItem(
                    "grid",
                    "congestion",
                    energy,
                    congestion,
                    micro_floor(congestion * energy),
                    zone=z,
                )
            )
    return lines


def _check(tree: ZoneTree, market: MarketResult, participants: Participants) -> None:
    n = len(participants)
    arrays = (participants.bought_wh, participants.sold_wh)
    meters = (participants.consumed_wh, participants.produced_wh)
    if any(len(a) != n for a in (*arrays, *meters)):
        raise SettlementError("participant arrays differ in length")
    if n and (int(participants.zone.min()) < 0 or int(participants.zone.max()) >= tree.size):
        raise SettlementError("participant in an unknown zone")
    for values in (*arrays, *meters):
        if n and int(values.min()) < 0:
            raise SettlementError("energy must not be negative")
    if sum(float(values.sum()) for values in (*arrays, *meters)) >= _FLOAT_EXACT:
        raise SettlementError("energy too large to settle exactly")
    sold = np.bincount(participants.zone, weights=participants.sold_wh, minlength=tree.size)
    bought = np.bincount(participants.zone, weights=participants.bought_wh, minlength=tree.size)
    inflow = np.zeros(tree.size, np.int64)
    links = np.flatnonzero(tree.parent >= 0)
    np.add.at(inflow, tree.parent[links], market.flow_to_parent_wh[links])
    inflow -= market.flow_to_parent_wh
    supply = sold.astype(np.int64) + market.utility_sell_wh + inflow
    demand = bought.astype(np.int64) + market.utility_buy_wh
    unbalanced = np.flatnonzero(supply != demand)
    if len(unbalanced):
        z = int(unbalanced[0])
        raise SettlementError(
            f"zone {tree.ids[z]!r}: matched positions ({int(supply[z])} Wh in, "
            f"{int(demand[z])} Wh out) do not balance as the clearing did"
        )


def _check_range(
    utility: Utility,
    market: MarketResult,
    participants: Participants,
    shortfall: I64,
    surplus: I64,
) -> None:
    """Refuse inputs whose exact amounts, or their sums, could overflow int64."""
    top_price = max(
        abs(utility.retail_ticks),
        abs(utility.feed_in_ticks),
        int(np.abs(market.price_ticks).max()) if len(market.price_ticks) else 0,
    )
    energy = sum(
        int(a.sum()) for a in (participants.bought_wh, participants.sold_wh, shortfall, surplus)
    )
    if top_price * energy >= _INT64_SAFE:
        raise SettlementError("amounts too large to settle exactly in int64")
