"""Sharing after delivery: what the market did not match, neighbours share on metered data.

Settlement compares each participant's metered net export with its matched
position. Without sharing, a *shortfall* (used more, or delivered less, than
traded) is bought from the utility at retail and a *surplus* sold to it at
feed-in, even when the house next door had the opposite deviation in the
same interval. With sharing on (an operator option per grid, issue 15), the
deviations are first matched with each other; the utility covers only the
rest. The rule, in the order it is applied:

1. **Prices.** Each zone z gets two prices from its clearing price c (the
   engine defines one for every zone in every interval, traded or not: the
   midpoint of [feed-in, retail] when nothing in the grid traded, what an
   order there would have traded at when only the zone itself did not):
   a shortfall pays ``p_in = c + ceil(a * (retail - c))`` per kWh shared and
   a surplus earns ``p_out = c - ceil(b * (c - feed_in))``, with the shares
   ``a`` and ``b`` in [0, 1] (default 1/2), rounded toward the grid. So
   ``feed_in <= p_out <= c <= p_in <= retail``: nobody does worse than with
   the utility, and nobody does better than by trading the same energy
   ahead at c (see *Why trading ahead stays worth it* below).
2. **Within the zone.** ``min(shortfalls, surpluses)`` of each zone is
   matched inside it: no link, no fee.
3. **Across the tree.** What is left of each zone is one-sided. The leftovers
   are cleared like an order book by the exact market engine
   (:func:`~grid_server.domain.market.clear_arrays`, its bottom-up curve pass
   and top-down price pass): a zone's leftover shortfall is a buy at its
   ``p_in``, its leftover surplus a sell at its ``p_out``, over the same zone
   tree and link fees, with each link's capacity reduced by what the market
   already sends over it (market flow + shared flow stays within
   [-capacity down, capacity up]; a flow against the market's direction
   nets against it). Energy therefore crosses links only where the buyer's
   zone price covers the seller's zone price plus every fee on the way, and
   where leftovers compete it goes where the spread left after fees is
   largest. The utility takes no part in this step (its prices are set just
   outside [feed-in, retail], so it never trades): what is not matched stays
   with the utility at retail and feed-in, as without sharing.
4. **Allocation.** Each zone's shared energy on each side (matched inside it
   plus what it imported or exported) is divided among its participants in
   whole Wh by the grid's *allocation key*, nobody above its own deviation:

   * ``proportional`` (default): in proportion to each participant's
     deviation (its shortfall, or its surplus), with
     :func:`~grid_server.domain.market.allocation.prorata` (largest
     remainders).
   * ``dynamic``: in proportion to what the participant consumed (shortfall
     side) or produced (surplus side) in the interval, capped at its
     deviation; what a capped participant cannot take goes to the others in
     the same proportion, and participants who consumed (produced) nothing
     share only what is left after that. This is the *dynamic* key of
     Austria's energy communities (§ 16a ElWOG: allocation per quarter hour,
     in relation to the metered consumption, never above it; the EDA
     portal's "Aufteilungsmodelle": distributed "as far as possible by
     need"), Wallonia's "clé dynamique au prorata de la consommation" and
     Luxembourg's default "Prorata" key (Creos).
   * ``static``: the operator sets a weight per participant (by id); a
     shortfall is served in proportion to its weight, capped at the
     shortfall, and a participant without a weight receives nothing (its
     shortfall goes to the utility). The statutory static keys (Austria's
     "statisch", Flanders (Fluvius), Wallonia's "clé fixe") give each
     consumer a fixed share of the production and send what it does not use
     to the grid. Here what a shareholder cannot use goes to the other
     shareholders in the same proportion before the utility: every
     shareholder still gets at least its fixed share (or its whole
     shortfall), and energy that someone with a share needs is never sold
     at feed-in meanwhile. Static weights apply to the receiving side only,
     as in those schemes; surpluses are shared in proportion to their size.

   Germany's § 42c EnWG (energy sharing from June 2026) and § 42b leave the
   key ("Aufteilungsschlüssel") to the sharing contract; the keys above are
   the ones those contracts and the schemes use.

Remainders: largest remainders, ties to the participant with the smaller id
(string order), or the smaller position when no ids are given, so the result
does not depend on the order of the input when ids are given.

Why trading ahead stays worth it: for every participant,
``money <= c * metered_net_export`` (exact in 10^-9), with equality when it
delivered exactly what it traded. A deviation is worth at most c per Wh:
a shortfall pays ``p_in >= c`` or ``retail >= c``, a surplus earns
``p_out <= c`` or ``feed_in <= c``. A household that trades its forecast ahead
and meets it earns exactly ``c * metered``; any under- or over-trading at the
same clearing price earns less or the same. Withholding can only pay by
moving the clearing price itself (market power in a thin book); the gain is
then at most the price change times the participant's metered volume, and
sharing can add to it (``(retail - p_in)`` per Wh of a withheld purchase that
neighbours cover). ``docs/developers/sharing.md`` states exactly what the
tests prove.

Everything here is integer arithmetic on NumPy arrays; per participant it is
a handful of vector operations, so 100,000 households share in milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Literal, cast, get_args

import numpy as np
from numpy.typing import NDArray

from grid_server.domain.market import (
    UNLIMITED,
    BookError,
    MarketResult,
    OrderArrays,
    Utility,
    ZoneTree,
    clear_arrays,
)
from grid_server.domain.market.allocation import TieOrder, by_position, prorata
from grid_server.domain.market.book import as_ints
from grid_server.domain.market.clearing import ClearingInvariantError
from p2p_energy_client.units import MAX_PRICE_TICKS

I64 = NDArray[np.int64]
AllocationKey = Literal["proportional", "dynamic", "static"]
ALLOCATION_KEYS: tuple[AllocationKey, ...] = get_args(AllocationKey)

MAX_STATIC_WEIGHT = 10**9
"""Largest static share weight: weights are ratios (percent, per mille, parts per million)."""

# Products of energies and weights must stay inside int64 to use NumPy.
_INT64_SAFE = 1 << 62


class SharingError(ValueError):
    """A sharing rule or input that cannot be applied, naming the field at fault."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


@dataclass(frozen=True)
class SharingRule:
    """How a grid shares deviations after delivery (None in :func:`settle`: not at all).

    ``shortfall_share`` (a): the part of the gap from the clearing price up to
    retail that a shortfall pays on top of the clearing price;
    ``surplus_share`` (b): the part of the gap down to feed-in taken off what
    a surplus earns. ``static_shares`` maps participant ids to weights, for
    the ``static`` key only.
    """

    key: AllocationKey = "proportional"
    shortfall_share: Fraction = Fraction(1, 2)
    surplus_share: Fraction = Fraction(1, 2)
    static_shares: Mapping[str, int] = field(default_factory=dict)

    def validate(self) -> None:
        if self.key not in ALLOCATION_KEYS:
            raise SharingError(
                "sharing.key", f"must be one of {', '.join(ALLOCATION_KEYS)}, not {self.key!r}"
            )
        shares: tuple[tuple[str, object], ...] = (
            ("shortfall_share", self.shortfall_share),
            ("surplus_share", self.surplus_share),
        )
        for name, share in shares:
            if isinstance(share, bool) or not isinstance(share, Fraction | int):
                raise SharingError(f"sharing.{name}", f"must be an exact fraction, not {share!r}")
            if not 0 <= cast(Fraction, share) <= 1:
                raise SharingError(f"sharing.{name}", f"must be within [0, 1], not {share}")
        for pid, weight in self.static_shares.items():
            where = f"sharing.static_shares[{pid!r}]"
            if not isinstance(pid, str) or not pid:
                raise SharingError(where, "participant id must be a non-empty string")
            if isinstance(weight, bool) or not isinstance(weight, int):
                raise SharingError(where, f"must be an integer weight, not {weight!r}")
            if not 0 <= weight <= MAX_STATIC_WEIGHT:
                raise SharingError(where, f"must be within [0, {MAX_STATIC_WEIGHT}], not {weight}")
        if self.key == "static" and not any(self.static_shares.values()):
            raise SharingError(
                "sharing.static_shares", "the static key needs at least one positive weight"
            )
        if self.key != "static" and self.static_shares:
            raise SharingError(
                "sharing.static_shares", f"apply only to the static key, not to {self.key!r}"
            )


@dataclass(frozen=True, eq=False)
class Deviations:
    """One interval's deviations per participant, the input of :func:`share`.

    ``shortfall_wh``/``surplus_wh``: what the participant used beyond (or
    delivered short of) its position, and the reverse; at most one is
    positive. ``consumed_wh``/``produced_wh``: its meters, the weights of
    the dynamic key. ``ids``: unique participant ids, for static shares and
    to break ties independently of the input order.
    """

    zone: NDArray[np.int32]
    shortfall_wh: I64
    surplus_wh: I64
    consumed_wh: I64
    produced_wh: I64
    ids: Sequence[str] | None = None

    def __len__(self) -> int:
        return len(self.zone)


@dataclass(frozen=True, eq=False)
class SharingResult:
    """Who shared what in one interval. Zone arrays are indexed like the tree.

    ``flow_to_parent_wh``: shared energy over each zone's link to its parent
    (negative downward), on top of the market's flow.
    """

    zone: NDArray[np.int32]  # each participant's zone
    shortfall_price_ticks: I64  # per zone: p_in, what a shortfall pays per kWh shared
    surplus_price_ticks: I64  # per zone: p_out, what a surplus earns per kWh shared
    shared_in_wh: I64  # per participant: shortfall covered by neighbours
    shared_out_wh: I64  # per participant: surplus taken by neighbours
    local_wh: I64  # per zone: matched inside the zone
    imported_wh: I64  # per zone: shortfall covered from other zones
    exported_wh: I64  # per zone: surplus sent to other zones
    flow_to_parent_wh: I64

    @property
    def shared_wh(self) -> int:
        return int(self.shared_in_wh.sum())

    def participant_prices(self) -> tuple[I64, I64]:
        """``(p_in, p_out)`` of each participant's zone."""
        return self.shortfall_price_ticks[self.zone], self.surplus_price_ticks[self.zone]


def sharing_prices(utility: Utility, zone_price_ticks: I64, rule: SharingRule) -> tuple[I64, I64]:
    """Each zone's ``(p_in, p_out)`` from its clearing price (rule 1 of the module docstring).

    The shares of the gaps are rounded up, toward the grid: a shortfall pays
    a little more, a surplus earns a little less, and both stay within
    [feed-in, retail] because ``ceil(share * gap) <= gap`` for a share <= 1.
    """
    p_in, p_out = [], []
    for z, c in enumerate(as_ints(zone_price_ticks)):
        if not utility.feed_in_ticks <= c <= utility.retail_ticks:
            raise SharingError(
                f"zones[{z}].price", f"clearing price {c} ticks is outside [feed-in, retail]"
            )
        p_in.append(c + math.ceil(rule.shortfall_share * (utility.retail_ticks - c)))
        p_out.append(c - math.ceil(rule.surplus_share * (c - utility.feed_in_ticks)))
    return np.array(p_in, dtype=np.int64), np.array(p_out, dtype=np.int64)


def share(
    tree: ZoneTree,
    utility: Utility,
    market: MarketResult,
    deviations: Deviations,
    rule: SharingRule,
) -> SharingResult:
    """Match the interval's shortfalls with its surpluses (the module docstring's rule)."""
    rule.validate()
    _check(tree, deviations)
    p_in, p_out = sharing_prices(utility, market.price_ticks, rule)
    zone = deviations.zone
    receive_caps, receive_weights = _receiving_side(rule, deviations)
    give_caps = deviations.surplus_wh
    give_weights = deviations.produced_wh if rule.key == "dynamic" else give_caps
    short = _per_zone(zone, receive_caps, tree.size)
    extra = _per_zone(zone, give_caps, tree.size)
    local = np.minimum(short, extra)
    flow, traded = _exchange(tree, utility, market, extra - short, (p_in, p_out))
    imported = np.where(extra < short, traded, 0)
    exported = np.where(extra > short, traded, 0)
    groups = _Groups.build(zone, tree.size, deviations.ids)
    return SharingResult(
        zone=zone,
        shortfall_price_ticks=p_in,
        surplus_price_ticks=p_out,
        shared_in_wh=groups.allocate(local + imported, receive_weights, receive_caps),
        shared_out_wh=groups.allocate(local + exported, give_weights, give_caps),
        local_wh=local,
        imported_wh=imported,
        exported_wh=exported,
        flow_to_parent_wh=flow,
    )


def _check(tree: ZoneTree, deviations: Deviations) -> None:
    n = len(deviations)
    arrays = (
        deviations.shortfall_wh,
        deviations.surplus_wh,
        deviations.consumed_wh,
        deviations.produced_wh,
    )
    if any(len(a) != n for a in arrays):
        raise SharingError("participants", "arrays differ in length")
    if n and (int(deviations.zone.min()) < 0 or int(deviations.zone.max()) >= tree.size):
        raise SharingError("participants.zone", "unknown zone index")
    if n and min(int(a.min()) for a in arrays) < 0:
        raise SharingError("participants", "energy must not be negative")
    if n and bool(((deviations.shortfall_wh > 0) & (deviations.surplus_wh > 0)).any()):
        raise SharingError("participants", "a participant cannot be short and in surplus at once")
    ids = deviations.ids
    if ids is not None and (len(ids) != n or len(set(ids)) != n):
        raise SharingError("participants.ids", "must name each participant once")


def _receiving_side(rule: SharingRule, deviations: Deviations) -> tuple[I64, I64]:
    """Shortfall each participant may receive (its cap) and its allocation weight."""
    caps = deviations.shortfall_wh
    if rule.key == "proportional":
        return caps, caps
    if rule.key == "dynamic":
        return caps, deviations.consumed_wh
    if deviations.ids is None:
        raise SharingError("participants.ids", "the static key needs participant ids")
    shares = rule.static_shares
    weights = np.fromiter(
        (shares.get(pid, 0) for pid in deviations.ids), dtype=np.int64, count=len(deviations)
    )
    return np.where(weights > 0, caps, 0), weights


def _per_zone(zone: NDArray[np.int32], values: I64, size: int) -> I64:
    # Float sums are exact: settlement bounds all energy below 2^53 Wh.
    return np.bincount(zone, weights=values, minlength=size).astype(np.int64)


def _exchange(
    tree: ZoneTree,
    utility: Utility,
    market: MarketResult,
    leftover: I64,
    prices: tuple[I64, I64],
) -> tuple[I64, I64]:
    """Clear the zones' leftovers over the tree (rule 3): flows, and each zone's traded Wh.

    ``leftover`` is each zone's surplus minus its shortfall after matching
    inside it; ``prices`` are the zones' ``(p_in, p_out)``. Prices are shifted
    by the midpoint of [feed-in, retail] so that the utility, placed one tick
    outside that range, fits the engine's price bound; a uniform shift
    changes neither the optimum nor its ties.
    """
    p_in, p_out = prices
    zeros = np.zeros(tree.size, np.int64)
    if not (leftover > 0).any() or not (leftover < 0).any():
        return zeros, zeros
    room_up, room_down = _room(tree, market)
    offset = (utility.retail_ticks + utility.feed_in_ticks) // 2
    outside = Utility(utility.retail_ticks - offset + 1, utility.feed_in_ticks - offset - 1)
    if max(outside.retail_ticks, -outside.feed_in_ticks) > MAX_PRICE_TICKS:
        raise SharingError("utility", "retail and feed-in are too far apart to share across zones")
    zones = np.flatnonzero(leftover).astype(np.int32)
    is_buy = leftover[zones] < 0
    orders = OrderArrays(
        zone=zones,
        is_buy=is_buy,
        energy_wh=np.abs(leftover[zones]),
        price_ticks=np.where(is_buy, p_in[zones], p_out[zones]) - offset,
        ids=[tree.ids[z] for z in as_ints(zones)],
    )
    try:
        result = clear_arrays(
            replace(tree, cap_up_wh=room_up, cap_down_wh=room_down), outside, orders
        )
    except BookError as exc:
        raise SharingError("participants", f"cannot share: {exc}") from exc
    if result.utility_buy_wh.any() or result.utility_sell_wh.any():
        raise ClearingInvariantError("the utility traded in the sharing step")
    traded = zeros.copy()
    traded[zones] = result.fills_wh
    return result.flow_to_parent_wh, traded


def _room(tree: ZoneTree, market: MarketResult) -> tuple[I64, I64]:
    """Each link's capacity left after the market's flow, per direction (netting it)."""
    flow = market.flow_to_parent_wh
    up = np.where(tree.cap_up_wh == UNLIMITED, UNLIMITED, tree.cap_up_wh - flow)
    down = np.where(tree.cap_down_wh == UNLIMITED, UNLIMITED, tree.cap_down_wh + flow)
    over = np.flatnonzero((up < 0) | (down < 0))
    if len(over):
        z = int(over[0])
        raise SharingError(
            f"zones[{z}].flow_to_parent_wh",
            f"market flow {int(flow[z])} Wh exceeds the link's capacity",
        )
    return up.astype(np.int64), down.astype(np.int64)


@dataclass(frozen=True, eq=False)
class _Groups:
    """Participants grouped by zone, with the tie order of the remainders."""

    members: list[NDArray[np.intp]]
    ids: Sequence[str] | None

    @classmethod
    def build(cls, zone: NDArray[np.int32], size: int, ids: Sequence[str] | None) -> _Groups:
        order = np.argsort(zone, kind="stable")
        bounds = np.searchsorted(zone[order], np.arange(size + 1))
        return cls([order[bounds[z] : bounds[z + 1]] for z in range(size)], ids)

    def allocate(self, totals: I64, weights: I64, caps: I64) -> I64:
        out = np.zeros(len(caps), np.int64)
        for total, members in zip(as_ints(totals), self.members, strict=True):
            if total:
                out[members] = capped_prorata(
                    total, weights[members], caps[members], self._tie_order(members)
                )
        return out

    def _tie_order(self, members: NDArray[np.intp]) -> TieOrder:
        ids = self.ids

        def order(items: list[int]) -> list[int]:
            if ids is None:
                return sorted(items, key=lambda i: int(members[i]))
            return sorted(items, key=lambda i: ids[int(members[i])])

        return order


def capped_prorata(total: int, weights: I64, caps: I64, tie_order: TieOrder = by_position) -> I64:
    """Split ``total`` in proportion to ``weights``, nobody above its cap (water-filling).

    There is one level L such that every item of positive weight gets
    ``min(cap, L * weight)`` before rounding: what a capped item cannot take
    goes to the others in the same proportion. Items of weight 0 share only
    what is left once every weighted item is full, in proportion to their
    caps. In whole units: the exact share's floor, plus one for the largest
    remainders (:func:`~grid_server.domain.market.allocation.prorata`), never
    above a cap. Needs ``0 <= total <= sum(caps)``.
    """
    cap_sum = int(caps.sum())
    if not 0 <= total <= cap_sum:
        raise ValueError(f"cannot place {total} within caps summing to {cap_sum}")
    out = np.zeros(len(caps), np.int64)
    weighted = (weights > 0) & (caps > 0)
    first = min(total, int(caps[weighted].sum()))
    if first:
        out[weighted] = _water_fill(
            first, weights[weighted], caps[weighted], _within(weighted, tie_order)
        )
    if total > first:
        rest = ~weighted & (caps > 0)
        out[rest] = prorata(total - first, caps[rest], _within(rest, tie_order))
    return out


def _water_fill(total: int, weights: I64, caps: I64, tie_order: TieOrder) -> I64:
    """:func:`capped_prorata` for positive weights and caps, ``0 < total <= sum(caps)``.

    An item is full at level L when ``cap <= L * weight``. A float sort by
    ``cap / weight`` finds the full items fast, checked exactly item by item;
    the exact loop after it adds any that float rounding left out (its level
    only rises, so it never takes one back).
    """
    if total == int(caps.sum()):
        return caps.copy()
    exact = max(int(caps.max()) * int(weights.sum()), total * int(weights.max())) < _INT64_SAFE
    order = np.argsort(caps / weights, kind="stable")
    cap_before = np.concatenate([[0], np.cumsum(caps[order])[:-1]])
    weight_from = int(weights.sum()) - np.concatenate([[0], np.cumsum(weights[order])[:-1]])
    if exact:
        full_at = caps[order] * weight_from <= (total - cap_before) * weights[order]
    else:
        full_at = np.array(
            [
                int(c) * int(w_from) <= (total - int(before)) * int(w)
                for c, w_from, before, w in zip(
                    caps[order], weight_from, cap_before, weights[order], strict=True
                )
            ],
            dtype=np.bool_,
        )
    first_open = int(np.argmin(full_at)) if not full_at.all() else len(order)
    full = np.zeros(len(caps), np.bool_)
    full[order[:first_open]] = True
    while True:
        left = total - int(caps[full].sum())
        open_weight = int(weights[~full].sum())
        if exact:
            overflowing = ~full & (caps * open_weight < left * weights)
        else:
            overflowing = ~full & np.array(
                [int(c) * open_weight < left * int(w) for c, w in zip(caps, weights, strict=True)],
                dtype=np.bool_,
            )
        if not overflowing.any():
            break
        full |= overflowing
    out = np.where(full, caps, 0)
    # prorata splits within its weights; scaling them keeps the proportions exactly.
    scale = max(1, -(-left // open_weight))
    out[~full] = prorata(left, weights[~full] * scale, _within(~full, tie_order))
    return cast(I64, out)


def _within(mask: NDArray[np.bool_], tie_order: TieOrder) -> TieOrder:
    """``tie_order`` for the items selected by ``mask``, in their own positions."""
    members = as_ints(np.flatnonzero(mask))

    def order(items: list[int]) -> list[int]:
        position = {m: i for i, m in enumerate(members)}
        return [position[m] for m in tie_order([members[i] for i in items])]

    return order
