"""Self-trade prevention: a participant's own buy and sell orders never match each other.

A household may hold buy and sell orders for the same interval (a battery
that would charge when power is cheap and discharge when it is dear). Where
its own bid is at or above its own ask, a uniform-price auction would fill
both at the zone price: energy "traded" with itself, counted as volume and as
savings that never happened (a wash trade).

Exchanges prevent that by netting; so does this module, in two steps around
the unchanged clearing engine:

1. :func:`uncross` replaces the orders of each *crossing* participant by the
   same net response without the overlap. With ``D(p)`` its buy volume at
   limits ``>= p`` and ``S(p)`` its sell volume at limits ``<= p``, its net
   demand ``N(p) = D(p) - S(p)`` only falls as ``p`` rises; at each of its
   limit prices the fall of ``N`` is offered as a buy where ``N`` is above
   zero and as a sell where it is below. A bid of 0.25 and an ask of 0.20
   become a bid of 0.20 and an ask of 0.25: below 0.20 it buys, above 0.25 it
   sells, in between it stays out — exactly what the two orders meant, minus
   trading with itself. Every participant's (and so the market's) excess
   demand is unchanged at every price, so zone prices and flows are those
   the original book has; only the fake volume and its fake surplus go.
2. :func:`attribute` books each crossing participant's **net** fill onto its
   own orders of that side, best limit first: at a limit equal on both sides
   both netted orders may fill at that very price, and netting the fills
   removes that last overlap too. A participant never ends with fills on both
   sides, and no order fills beyond its quantity or against its limit.

Participants whose bids all lie below their asks cannot match themselves
(a fill on both sides needs ``bid >= price >= ask``) and pass unchanged.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from .book import Book, Order, OrderArrays, ZoneTree, as_ints
from .clearing import MarketResult, clear


@dataclass(frozen=True, slots=True)
class Uncrossed:
    """A book's orders with every crossing participant's orders netted.

    ``orders`` go to the clearing engine. ``source[i]`` is the position in the
    original orders of engine order ``i``, or ``-1`` for a netted order of
    ``owner[i]`` (one of ``crossing``).
    """

    orders: tuple[Order, ...]
    source: tuple[int, ...]
    owner: tuple[Hashable | None, ...]
    crossing: frozenset[Hashable]


def crossing_owners(orders: Sequence[Order], owners: Sequence[Hashable]) -> frozenset[Hashable]:
    """The owners whose best bid is at or above their best ask (they could match themselves)."""
    best_bid: dict[Hashable, int] = {}
    best_ask: dict[Hashable, int] = {}
    for order, owner in zip(orders, owners, strict=True):
        if order.energy_wh <= 0:
            continue
        if order.side == "buy":
            best_bid[owner] = max(best_bid.get(owner, order.price_ticks), order.price_ticks)
        else:
            best_ask[owner] = min(best_ask.get(owner, order.price_ticks), order.price_ticks)
    return frozenset(o for o, bid in best_bid.items() if o in best_ask and bid >= best_ask[o])


def net_orders(owner_orders: Sequence[Order], prefix: str) -> list[Order]:
    """One participant's orders as the non-overlapping orders with the same net demand."""
    zone = owner_orders[0].zone
    buys_at: dict[int, int] = defaultdict(int)
    sells_at: dict[int, int] = defaultdict(int)
    for order in owner_orders:
        (buys_at if order.side == "buy" else sells_at)[order.price_ticks] += order.energy_wh
    net = sum(buys_at.values())  # N just below the lowest limit: every bid, no ask
    netted: list[Order] = []
    for price in sorted(set(buys_at) | set(sells_at)):
        after = net - buys_at.get(price, 0) - sells_at.get(price, 0)
        bought = max(net, 0) - max(after, 0)
        sold = max(-after, 0) - max(-net, 0)
        if bought:
            netted.append(Order(f"{prefix}b{price}", zone, "buy", bought, price))
        if sold:
            netted.append(Order(f"{prefix}s{price}", zone, "sell", sold, price))
        net = after
    return netted


def uncross(orders: Sequence[Order], owners: Sequence[Hashable]) -> Uncrossed:
    """The orders to clear: crossing participants' orders netted (see the module doc)."""
    crossing = crossing_owners(orders, owners)
    if not crossing:
        return Uncrossed(tuple(orders), tuple(range(len(orders))), tuple(owners), crossing)
    kept: list[Order] = []
    source: list[int] = []
    owner_of: list[Hashable | None] = []
    grouped: dict[Hashable, list[Order]] = defaultdict(list)
    for i, (order, owner) in enumerate(zip(orders, owners, strict=True)):
        if owner in crossing:
            grouped[owner].append(order)
        else:
            kept.append(order)
            source.append(i)
            owner_of.append(owner)
    for n, (owner, own) in enumerate(grouped.items()):
        for order in net_orders(own, f"~net{n}:"):
            kept.append(order)
            source.append(-1)
            owner_of.append(owner)
    return Uncrossed(tuple(kept), tuple(source), tuple(owner_of), crossing)


def attribute(
    orders: Sequence[Order],
    owners: Sequence[Hashable],
    uncrossed: Uncrossed,
    engine_fills: Sequence[int],
    zone_price: dict[str, int],
) -> list[int]:
    """Fills of the original ``orders`` from the engine's fills of ``uncrossed.orders``."""
    fills = [0] * len(orders)
    net: dict[Hashable, int] = defaultdict(int)
    for i, fill in enumerate(engine_fills):
        origin = uncrossed.source[i]
        if origin >= 0:
            fills[origin] = int(fill)
        else:
            order = uncrossed.orders[i]
            net[uncrossed.owner[i]] += int(fill) if order.side == "buy" else -int(fill)
    positions: dict[Hashable, list[int]] = defaultdict(list)
    for i, owner in enumerate(owners):
        if owner in uncrossed.crossing:
            positions[owner].append(i)
    for owner, own in positions.items():
        _book_net_fill(orders, own, net.get(owner, 0), zone_price[orders[own[0]].zone], fills)
    return fills


def _book_net_fill(
    orders: Sequence[Order], own: list[int], net_wh: int, price: int, fills: list[int]
) -> None:
    """Spread one participant's net fill over its orders of that side, best limit first."""
    if net_wh == 0:
        return
    side = "buy" if net_wh > 0 else "sell"
    eligible = [
        i
        for i in own
        if orders[i].side == side
        and (orders[i].price_ticks >= price if side == "buy" else orders[i].price_ticks <= price)
    ]
    # Best limit first (highest bid, lowest ask); the order id breaks ties.
    sign = -1 if side == "buy" else 1
    eligible.sort(key=lambda i: (sign * orders[i].price_ticks, orders[i].id))
    left = abs(net_wh)
    for i in eligible:
        take = min(left, orders[i].energy_wh)
        fills[i] = take
        left -= take
        if not left:
            return
    raise AssertionError(f"a net fill of {net_wh} Wh exceeds what the orders offer at {price}")


def clear_without_self_trades(book: Book, owners: Sequence[Hashable]) -> MarketResult:
    """Clear ``book`` so that no owner's buy fills against its own sell.

    ``owners[i]`` owns ``book.orders[i]``. Prices, utility trades and flows are
    those of the netted book (the same as the original's, see the module doc);
    ``fills_wh`` are per original order; ``welfare_nano`` is the netted book's,
    the surplus without the wash trades.
    """
    uncrossed = uncross(book.orders, owners)
    if not uncrossed.crossing:
        return clear(book)
    # The netted orders must be valid originals: netting could hide a bad one (the
    # others reach the engine as they are, and it checks them).
    netted = tuple(o for o, w in zip(book.orders, owners, strict=True) if w in uncrossed.crossing)
    OrderArrays.from_orders(netted, ZoneTree.build(book.zones))
    result = clear(Book(book.utility, book.zones, uncrossed.orders))
    prices = dict(zip(result.zone_ids, as_ints(result.price_ticks), strict=True))
    fills = attribute(book.orders, owners, uncrossed, as_ints(result.fills_wh), prices)
    return replace(
        result,
        fills_wh=np.asarray(fills, dtype=np.int64),
        order_ids=tuple(o.id for o in book.orders),
    )


__all__ = [
    "Uncrossed",
    "attribute",
    "clear_without_self_trades",
    "crossing_owners",
    "net_orders",
    "uncross",
]
