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
  ``surplus_feed_in``, and with sharing ``shared_in`` (shortfall covered by
  neighbours) and ``shared_out`` (surplus taken by neighbours);
* the utility: ``market_sell`` / ``market_buy`` (its clearing trades in each
  zone, at that zone's price), ``shortfall_retail`` / ``surplus_feed_in``
  (the deviations, in total);
* the grid: per link ``link_fee`` (fee x energy) and ``congestion``
  ((price difference - fee) x energy, never negative at valid prices); with
  sharing, per link ``sharing_link_fee`` (fee x shared energy over it) and
  one ``sharing_spread`` (what shortfalls paid for shared energy minus what
  surpluses earned and the sharing link fees: never negative); and one
  ``rounding`` line, the remainder.

Sharing after delivery (:mod:`grid_server.domain.sharing`, a
:class:`~grid_server.domain.sharing.SharingRule` passed to :func:`settle`)
first matches deviations between participants; the utility lines then carry
only the rest. A participant's two lines of one side (``shared_in`` and
``shortfall_retail``, or ``shared_out`` and ``surplus_feed_in``) are rounded
together: the utility line as without sharing, the shared line the rest, so
splitting a deviation never costs a rounding unit and sharing never leaves a
participant below what the utility alone would give, to the micro-unit.
Without a rule every line is exactly what it was before sharing existed.

Every interval the amounts of all accounts sum to exactly zero, and the
rounding line is at least 0 and below the number of lines (in micro-units),
provided the positions balance every zone as the clearing did; :func:`settle`
checks that first.

Per-participant work is a handful of NumPy operations over all participants,
so 100,000 households settle in milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from grid_server.domain.market import MarketResult, Utility, ZoneTree
from grid_server.domain.market.book import as_ints
from grid_server.domain.market.clearing import ClearingInvariantError
from grid_server.domain.sharing import Deviations, SharingError, SharingResult, SharingRule, share
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
    ``produced_wh``: what its meters measured. ``ids`` (optional, unique):
    what static sharing shares are keyed by, and the order in which sharing
    breaks ties, so that its result does not depend on the arrays' order.
    """

    zone: NDArray[np.int32]
    bought_wh: I64
    sold_wh: I64
    consumed_wh: I64
    produced_wh: I64
    ids: Sequence[str] | None = None

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
    """Micro-unit amounts per participant and kind (positive = received).

    ``shared_in``/``shared_out`` are zero without sharing (and default to it).
    """

    market_buy: I64
    market_sell: I64
    shortfall_retail: I64
    surplus_feed_in: I64
    shared_in: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    shared_out: I64 = field(default_factory=lambda: np.zeros(0, np.int64))

    def __post_init__(self) -> None:
        for name in ("shared_in", "shared_out"):
            if len(getattr(self, name)) != len(self.market_buy):  # the default: none shared
                object.__setattr__(self, name, np.zeros_like(self.market_buy))

    def total(self) -> I64:
        total: I64 = (
            self.market_buy
            + self.market_sell
            + self.shortfall_retail
            + self.surplus_feed_in
            + self.shared_in
            + self.shared_out
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
    shortfall_wh: I64  # bought from the utility at retail (after sharing)
    surplus_wh: I64  # sold to the utility at feed-in (after sharing)
    participants: ParticipantLines
    utility: tuple[LineItem, ...]
    grid: tuple[LineItem, ...]
    sharing: SharingResult | None = None  # None: sharing is off

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
        none = np.zeros_like(self.price_ticks)
        shared_in, shared_out, p_in, p_out = none, none, none, none
        if self.sharing is not None:
            shared_in, shared_out = self.sharing.shared_in_wh, self.sharing.shared_out_wh
            p_in, p_out = self.sharing.participant_prices()
        terms = {
            "market_buy": (self.bought_wh, self.price_ticks),
            "market_sell": (self.sold_wh, self.price_ticks),
            "shortfall_retail": (self.shortfall_wh, retail),
            "surplus_feed_in": (self.surplus_wh, feed_in),
            "shared_in": (shared_in, p_in),
            "shared_out": (shared_out, p_out),
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
    tree: ZoneTree,
    utility: Utility,
    market: MarketResult,
    participants: Participants,
    sharing: SharingRule | None = None,
) -> Settlement:
    """Line items of one interval for every participant, the utility and the grid.

    With a ``sharing`` rule, deviations are first shared between participants
    (:func:`grid_server.domain.sharing.share`); without one, nothing is.
    """
    _check(tree, market, participants)
    price = market.price_ticks[participants.zone]
    position = participants.sold_wh - participants.bought_wh
    metered = participants.produced_wh - participants.consumed_wh
    shortfall = np.maximum(position - metered, 0)
    surplus = np.maximum(metered - position, 0)
    _check_range(utility, market, participants, shortfall, surplus)
    shared = None
    none: I64 = np.zeros(len(participants), np.int64)
    shared_in, shared_out, p_in, p_out = none, none, none, none
    sharing_lines: list[LineItem] = []
    if sharing is not None:
        deviations = Deviations(
            zone=participants.zone,
            shortfall_wh=shortfall,
            surplus_wh=surplus,
            consumed_wh=participants.consumed_wh,
            produced_wh=participants.produced_wh,
            ids=participants.ids,
        )
        shared = _share(tree, utility, market, deviations, sharing)
        shared_in, shared_out = shared.shared_in_wh, shared.shared_out_wh
        p_in, p_out = shared.participant_prices()
        sharing_lines = _sharing_lines(tree, shared)
    from_utility = shortfall - shared_in
    to_utility = surplus - shared_out
    shortfall_retail = -micro_ceil(utility.retail_ticks * from_utility)
    surplus_feed_in = micro_floor(utility.feed_in_ticks * to_utility)
    lines = ParticipantLines(
        market_buy=-micro_ceil(price * participants.bought_wh),
        market_sell=micro_floor(price * participants.sold_wh),
        shortfall_retail=shortfall_retail,
        surplus_feed_in=surplus_feed_in,
        # Each side's two lines are rounded together (module docstring).
        shared_in=-micro_ceil(utility.retail_ticks * from_utility + p_in * shared_in)
        - shortfall_retail,
        shared_out=micro_floor(utility.feed_in_ticks * to_utility + p_out * shared_out)
        - surplus_feed_in,
    )
    utility_lines = _utility_lines(utility, market, int(from_utility.sum()), int(to_utility.sum()))
    grid_lines = [*_link_lines(tree, market), *sharing_lines]
    so_far = (
        int(lines.total().sum())
        + sum(line.amount_micro for line in utility_lines)
        + sum(line.amount_micro for line in grid_lines)
    )
    rounding = LineItem("grid", "rounding", 0, 0, -so_far)
    return Settlement(
        price_ticks=price,
        retail_ticks=utility.retail_ticks,
        feed_in_ticks=utility.feed_in_ticks,
        bought_wh=participants.bought_wh,
        sold_wh=participants.sold_wh,
        shortfall_wh=from_utility,
        surplus_wh=to_utility,
        participants=lines,
        utility=tuple(utility_lines),
        grid=(*grid_lines, rounding),
        sharing=shared,
    )


def _share(
    tree: ZoneTree,
    utility: Utility,
    market: MarketResult,
    deviations: Deviations,
    rule: SharingRule,
) -> SharingResult:
    try:
        return share(tree, utility, market, deviations, rule)
    except SharingError as exc:
        raise SettlementError(str(exc)) from exc


def _sharing_lines(tree: ZoneTree, shared: SharingResult) -> list[LineItem]:
    """The grid's income from sharing: each link's fees, then the spread (the rest).

    The spread is never negative: inside a zone ``p_in >= p_out``, and energy
    crosses links only where the buyer's ``p_in`` covers the seller's ``p_out``
    plus the fees on its way.
    """
    lines = []
    fees = 0
    for z, flow in enumerate(as_ints(shared.flow_to_parent_wh)):
        if flow:
            fee, energy = int(tree.fee_ticks[z]), abs(flow)
            fees += fee * energy
            lines.append(
                LineItem("grid", "sharing_link_fee", energy, fee, micro_floor(fee * energy), zone=z)
            )
    energy = shared.shared_wh
    if energy:
        p_in, p_out = shared.participant_prices()
        spread = (
            int(np.dot(p_in, shared.shared_in_wh)) - int(np.dot(p_out, shared.shared_out_wh)) - fees
        )
        if spread < 0:
            raise ClearingInvariantError(f"sharing spread {spread} nano is negative")
        lines.append(LineItem("grid", "sharing_spread", energy, 0, micro_floor(spread)))
    return lines


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
