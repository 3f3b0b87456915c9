"""Exact clearing of one interval's order book over a tree of zones.

The fast path solves the welfare linear programme (ARCHITECTURE.md, Market)
exactly, in integers, without iterating:

1. **Bottom-up.** Every zone's net supply N(p) (what the zone would export
   at price p, its orders, its subtree and the utility included) is an
   integer step curve (:mod:`.curves`). A child c seen from its parent at
   price q exports E_c(q) = clip(N_c(q - fee), 0, cap_up) +
   clip(N_c(q + fee), -cap_down, 0), and N_zone = own orders + utility +
   sum of E_child. One global sort of the orders by (zone, price) feeds
   every zone's own curve.
2. **Top-down.** The root's price is chosen in ``{p : 0 in N_root(p)}``;
   each zone then splits its required export among its orders, its child
   links and the utility, and each child's price is chosen in
   ``{p : x_c in N_c(p)}`` intersected with the prices its link allows.

Every choice keeps the prices a valid dual of the programme, so the
resulting flows are optimal; tests compare the welfare with HiGHS.

Price rule: where a zone's valid prices form an interval [a, b] (given the
prices already fixed above it), the zone takes floor((a + b) / 2) ticks.
Zones are decided from the root down, so the root picks first.

Distribution rule, in each zone at its price p for its required export:
buys above p and sells below p fill completely, those beyond p not at all;
the rest is decided at exactly p, in this priority:

1. the zone's own orders at p, trading as much volume as the balance
   allows (sellers at p as fully as possible while buyers at p stay filled,
   then buyers are cut);
2. child links at their fee margin: each starts from carrying nothing (or
   the nearest end of its range) and the amount still needed is shared in
   proportion to the room each has in that direction; links whose room is
   unlimited (fee 0, no capacity, so the child's own utility is reachable)
   take only what the limited ones cannot;
3. the utility, for whatever is left: local matching comes first.

Within one group the split is pro rata to order sizes (link rooms) in whole
Wh, largest remainders first, ties to the smaller order id (zone id) in
lexicographic order. Hence the same book gives the same result in any input
order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from .allocation import TieOrder, by_position, prorata
from .book import Book, OrderArrays, Utility, ZoneTree, as_ints
from .curves import INF, Curve, constant, link_export, own_orders, zone_curve

I64 = NDArray[np.int64]
_INT64_SAFE = 1 << 62


class ClearingInvariantError(RuntimeError):
    """The engine reached a state its proof rules out (a bug, never bad input)."""


class ZoneOutcome(NamedTuple):
    """One zone's row of a :class:`MarketResult` (as ints)."""

    zone: str
    price_ticks: int
    utility_buy_wh: int
    utility_sell_wh: int
    flow_to_parent_wh: int


@dataclass(frozen=True, eq=False)
class MarketResult:
    """Outcome of clearing one interval. Arrays are indexed like the inputs.

    ``utility_buy_wh``: energy the utility buys from the zone (at feed-in);
    ``utility_sell_wh``: energy it sells into the zone (at retail);
    ``flow_to_parent_wh``: energy over the link to the parent, negative when
    it flows down (0 for the root). ``welfare_nano`` is exact, in 10^-9
    currency (price ticks times Wh).
    """

    zone_ids: tuple[str, ...]
    price_ticks: I64
    utility_buy_wh: I64
    utility_sell_wh: I64
    flow_to_parent_wh: I64
    fills_wh: I64
    welfare_nano: int
    order_ids: Sequence[str] | None = None

    def zones(self) -> list[ZoneOutcome]:
        """Each zone's price, utility trades and flow, in ``zone_ids`` order."""
        return [
            ZoneOutcome(*row)
            for row in zip(
                self.zone_ids,
                as_ints(self.price_ticks),
                as_ints(self.utility_buy_wh),
                as_ints(self.utility_sell_wh),
                as_ints(self.flow_to_parent_wh),
                strict=True,
            )
        ]

    def fill_of(self) -> dict[str, int]:
        if self.order_ids is None:
            raise ValueError("orders were cleared without ids")
        return dict(zip(self.order_ids, as_ints(self.fills_wh), strict=True))


def clear(book: Book) -> MarketResult:
    """Clear a book given as objects (see :func:`clear_arrays` for the engine)."""
    tree = ZoneTree.build(book.zones)
    return clear_arrays(tree, book.utility, OrderArrays.from_orders(book.orders, tree))


def clear_arrays(tree: ZoneTree, utility: Utility, orders: OrderArrays) -> MarketResult:
    """Clear one interval exactly: welfare-optimal fills, flows and zone prices."""
    utility.validate()
    orders.validate(tree)
    network = _Network.build(tree, utility, int(orders.energy_wh.sum()))
    groups = _Groups.build(tree.size, utility, orders)
    plan = _top_down(network, groups, _bottom_up(network, groups))
    fills = _fills(orders, groups, plan)
    return MarketResult(
        zone_ids=tree.ids,
        price_ticks=plan.price,
        utility_buy_wh=np.maximum(-plan.utility_net, 0),
        utility_sell_wh=np.maximum(plan.utility_net, 0),
        flow_to_parent_wh=plan.flow,
        fills_wh=fills,
        welfare_nano=_welfare(tree, utility, orders, fills, plan),
        order_ids=orders.ids,
    )


@dataclass(frozen=True, eq=False)
class _Network:
    """The zone tree with capacities the engine can add up safely.

    A link never needs to carry more than all orders' energy together
    (utility-to-utility transfers gain nothing), so larger capacities are cut
    to one Wh above that: the optimum is the same, no such link is ever
    full, and every curve value stays finite.
    """

    tree: ZoneTree
    utility: Utility
    cap_up: I64
    cap_down: I64
    total_energy: int

    @classmethod
    def build(cls, tree: ZoneTree, utility: Utility, total_energy: int) -> _Network:
        bound = total_energy + 1
        return cls(
            tree,
            utility,
            np.minimum(tree.cap_up_wh, bound),
            np.minimum(tree.cap_down_wh, bound),
            total_energy,
        )

    def export_curve(self, child: int, curve: Curve) -> Curve:
        return link_export(
            curve,
            fee=int(self.tree.fee_ticks[child]),
            cap_up=int(self.cap_up[child]),
            cap_down=int(self.cap_down[child]),
            lo=self.utility.feed_in_ticks,
            hi=self.utility.retail_ticks,
        )

    def window(self, child: int, parent_price: int, flow: int) -> tuple[int, int]:
        """Child prices for which ``flow`` on its link agrees with the parent's price.

        Energy moves up only if the parent pays at least the fee more, and
        the parent may pay more than that only if the link is full; mirrored
        downward.
        """
        fee = int(self.tree.fee_ticks[child])
        cap_up, cap_down = int(self.cap_up[child]), int(self.cap_down[child])
        if flow > 0:
            top = parent_price - fee
            return (top if flow < cap_up else -INF), top
        if flow < 0:
            bottom = parent_price + fee
            return bottom, (bottom if -flow < cap_down else INF)
        return (
            parent_price - fee if cap_up > 0 else -INF,
            parent_price + fee if cap_down > 0 else INF,
        )


@dataclass(frozen=True, eq=False)
class _Groups:
    """Orders sorted by (zone, price), summed per distinct (zone, price).

    Prices are clamped to [feed_in - 1, retail + 1] for grouping: beyond
    that range only the side of it matters, never the exact price.
    """

    perm: NDArray[np.intp]  # order positions in (zone, price) order
    start: NDArray[np.intp]  # first position in ``perm`` of each group; one extra at the end
    price: I64
    buy: I64
    sell: I64
    zone_first: NDArray[np.intp]  # first group of each zone
    zone_stop: NDArray[np.intp]

    @classmethod
    def build(cls, n_zones: int, utility: Utility, orders: OrderArrays) -> _Groups:
        base = utility.feed_in_ticks - 1
        clamped = np.clip(orders.price_ticks, base, utility.retail_ticks + 1) - base
        span = utility.retail_ticks - base + 2
        zone = orders.zone.astype(np.int64)
        if n_zones * span < _INT64_SAFE:
            perm = np.argsort(zone * span + clamped)
        else:
            perm = np.lexsort((clamped, zone))
        sorted_zone = zone[perm]
        sorted_price = clamped[perm]
        change = (sorted_zone[1:] != sorted_zone[:-1]) | (sorted_price[1:] != sorted_price[:-1])
        start = (
            np.concatenate(([0], np.flatnonzero(change) + 1)) if len(perm) else np.empty(0, np.intp)
        )
        energy = orders.energy_wh[perm]
        if len(perm):
            buy = np.add.reduceat(np.where(orders.is_buy[perm], energy, 0), start)
            sell = np.add.reduceat(energy, start) - buy
        else:
            buy = sell = np.empty(0, np.int64)
        group_zone = sorted_zone[start]
        zones = np.arange(n_zones)
        return cls(
            perm=perm,
            start=np.append(start, len(perm)),
            price=sorted_price[start] + base,
            buy=buy,
            sell=sell,
            zone_first=np.searchsorted(group_zone, zones, side="left"),
            zone_stop=np.searchsorted(group_zone, zones, side="right"),
        )

    def zone_slice(self, zone: int) -> slice:
        return slice(int(self.zone_first[zone]), int(self.zone_stop[zone]))

    def group_at(self, zone: int, price: int) -> int | None:
        first, stop = int(self.zone_first[zone]), int(self.zone_stop[zone])
        g = first + int(np.searchsorted(self.price[first:stop], price))
        if g < stop and int(self.price[g]) == price:
            return g
        return None


@dataclass(frozen=True, eq=False)
class _Curves:
    own: list[Curve]  # each zone's own orders
    zone: list[Curve]  # each zone's subtree with the utility
    export: list[Curve]  # what each non-root zone exports at its parent's price


def _bottom_up(network: _Network, groups: _Groups) -> _Curves:
    tree, utility = network.tree, network.utility
    curves = _Curves(
        [constant(0)] * tree.size, [constant(0)] * tree.size, [constant(0)] * tree.size
    )
    for z in as_ints(tree.topdown[::-1]):
        window = groups.zone_slice(z)
        buy = groups.buy[window]
        own = own_orders(groups.price[window], buy + groups.sell[window], int(buy.sum()))
        exports = [curves.export[c] for c in tree.children[z]]
        zone = zone_curve(own, exports, utility.feed_in_ticks, utility.retail_ticks)
        curves.own[z], curves.zone[z] = own, zone
        if tree.parent[z] >= 0:
            curves.export[z] = network.export_curve(z, zone)
    return curves


@dataclass(frozen=True, eq=False)
class _Plan:
    price: I64
    flow: I64
    utility_net: I64  # utility's sales minus purchases in the zone
    sold_at_price: I64  # own sells at exactly the zone price: how much fills
    bought_at_price: I64


def _top_down(network: _Network, groups: _Groups, curves: _Curves) -> _Plan:
    tree, utility = network.tree, network.utility
    n = tree.size
    price = np.zeros(n, np.int64)
    flow = np.zeros(n, np.int64)
    utility_net = np.zeros(n, np.int64)
    sold = np.zeros(n, np.int64)
    bought = np.zeros(n, np.int64)
    price[tree.root] = _midpoint(*curves.zone[tree.root].level_set(0))
    for z in as_ints(tree.topdown):
        p = int(price[z])
        group = groups.group_at(z, p)
        kids = tree.children[z]
        zone = _ZoneBalance(
            price=p,
            target=int(flow[z]),
            own_left=curves.own[z].set_at(p)[0],
            sell_at_price=0 if group is None else int(groups.sell[group]),
            buy_at_price=0 if group is None else int(groups.buy[group]),
            feed_in=utility.feed_in_ticks,
            retail=utility.retail_ticks,
        )
        link_sets = [curves.export[c].set_at(p) for c in kids]
        own_net, utility_net[z], child_flows = zone.split(link_sets, network.total_energy)
        sold[z], bought[z] = zone.own_fills(own_net)
        for c, x in zip(kids, child_flows, strict=True):
            flow[c] = x
            lo, hi = curves.zone[c].level_set(x)
            w_lo, w_hi = network.window(c, p, x)
            price[c] = _midpoint(max(lo, w_lo), min(hi, w_hi))
    return _Plan(price, flow, utility_net, sold, bought)


def _midpoint(lo: int, hi: int) -> int:
    if lo > hi:
        raise ClearingInvariantError(f"empty price interval [{lo}, {hi}]")
    return (lo + hi) // 2


@dataclass(frozen=True, slots=True)
class _ZoneBalance:
    """One zone at its price: who supplies its required export (``target``).

    ``own_left`` is the net supply of the zone's orders just below the price:
    sells below it minus buys at or above it.
    """

    price: int
    target: int
    own_left: int
    sell_at_price: int
    buy_at_price: int
    feed_in: int
    retail: int

    @property
    def determined(self) -> int:
        """Own net export without the orders at exactly the price."""
        return self.own_left + self.buy_at_price

    def split(self, link_sets: list[tuple[int, int]], total: int) -> tuple[int, int, list[int]]:
        """Own orders first, then child links, then the utility (module docstring)."""
        lo_links = sum(lo for lo, _ in link_sets)
        hi_links = sum(hi for _, hi in link_sets)
        at_feed_in = self.price == self.feed_in
        at_retail = self.price == self.retail
        n0 = self.determined
        # Others (links and utility) can absorb target - own within these bounds;
        # an unlimited utility side lifts the bound entirely.
        own_lo = n0 - self.buy_at_price
        if not at_retail:
            own_lo = max(own_lo, self.target - hi_links)
        own_hi = n0 + self.sell_at_price
        if not at_feed_in:
            own_hi = min(own_hi, self.target - lo_links)
        own = _clamp(n0 + self.sell_at_price - self.buy_at_price, own_lo, own_hi)
        rest = self.target - own
        u_lo = rest - hi_links if at_feed_in else max(0, rest - hi_links)
        u_hi = rest - lo_links if at_retail else min(0, rest - lo_links)
        utility_net = _clamp(0, u_lo, u_hi)
        flows = share_links(rest - utility_net, link_sets, unlimited_above=total)
        return own, utility_net, flows

    def own_fills(self, own_net: int) -> tuple[int, int]:
        """Sold and bought at exactly the price for the given own net export."""
        flexible = own_net - self.determined
        sold = min(self.sell_at_price, flexible + self.buy_at_price)
        return sold, sold - flexible


def _clamp(x: int, lo: int, hi: int) -> int:
    if lo > hi:
        raise ClearingInvariantError(f"infeasible zone balance: [{lo}, {hi}]")
    return max(lo, min(x, hi))


def share_links(
    amount: int,
    ranges: list[tuple[int, int]],
    unlimited_above: int,
    tie_order: TieOrder = by_position,
) -> list[int]:
    """Split ``amount`` over links with export ranges ``ranges`` (rule 2 of the module docstring).

    A range end beyond ``unlimited_above`` in magnitude is the child's own
    utility reached through an unlimited link.
    """
    anchors = [_clamp(0, lo, hi) for lo, hi in ranges]
    need = amount - sum(anchors)
    if need == 0:
        return anchors
    up = need > 0
    rooms = np.array(
        [hi - a if up else a - lo for (lo, hi), a in zip(ranges, anchors, strict=True)],
        dtype=np.int64,
    )
    unlimited = np.array(
        [(hi if up else -lo) > unlimited_above for lo, hi in ranges], dtype=np.bool_
    )
    limited_room = int(rooms[~unlimited].sum())
    moved = np.zeros(len(ranges), np.int64)
    first = min(abs(need), limited_room)
    moved[~unlimited] = prorata(first, rooms[~unlimited], _subset_order(~unlimited, tie_order))
    if abs(need) > first:
        moved[unlimited] = prorata(
            abs(need) - first, rooms[unlimited], _subset_order(unlimited, tie_order)
        )
    sign = 1 if up else -1
    return [a + sign * int(m) for a, m in zip(anchors, moved, strict=True)]


def _subset_order(mask: NDArray[np.bool_], tie_order: TieOrder) -> TieOrder:
    members = as_ints(np.flatnonzero(mask))

    def order(items: list[int]) -> list[int]:
        ranked = tie_order([members[i] for i in items])
        position = {m: i for i, m in enumerate(members)}
        return [position[m] for m in ranked]

    return order


def _fills(orders: OrderArrays, groups: _Groups, plan: _Plan) -> I64:
    zone_price = plan.price[orders.zone]
    inside = np.where(
        orders.is_buy, orders.price_ticks > zone_price, orders.price_ticks < zone_price
    )
    fills: I64 = orders.energy_wh * inside
    for z in range(len(plan.price)):
        group = groups.group_at(z, int(plan.price[z]))
        if group is None:
            continue
        members = groups.perm[groups.start[group] : groups.start[group + 1]]
        for side_is_buy, amount in (
            (False, plan.sold_at_price[z]),
            (True, plan.bought_at_price[z]),
        ):
            side = members[orders.is_buy[members] == side_is_buy]
            if len(side):
                fills[side] = prorata(
                    int(amount), orders.energy_wh[side], _id_order(side, orders.ids)
                )
    return fills


def _id_order(members: NDArray[np.intp], ids: Sequence[str] | None) -> TieOrder:
    def order(items: list[int]) -> list[int]:
        if ids is None:
            return sorted(items, key=lambda i: int(members[i]))
        return sorted(items, key=lambda i: ids[int(members[i])])

    return order


def _welfare(tree: ZoneTree, utility: Utility, orders: OrderArrays, fills: I64, plan: _Plan) -> int:
    signed = np.where(orders.is_buy, orders.price_ticks, -orders.price_ticks)
    value = _dot(signed, fills)
    value += utility.feed_in_ticks * int(np.maximum(-plan.utility_net, 0).sum())
    value -= utility.retail_ticks * int(np.maximum(plan.utility_net, 0).sum())
    value -= _dot(tree.fee_ticks, np.abs(plan.flow))
    return value


def _dot(a: I64, b: I64) -> int:
    """Exact integer dot product (int64 when it cannot overflow)."""
    if not len(a):
        return 0
    if int(np.abs(a).max()) * int(np.abs(b).sum()) < _INT64_SAFE:
        return int(np.dot(a, b))
    return sum(x * y for x, y in zip(as_ints(a), as_ints(b), strict=True))
