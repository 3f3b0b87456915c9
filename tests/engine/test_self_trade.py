"""A participant's own buy and sell orders never match each other (self-trade prevention)."""

from __future__ import annotations

from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grid_server.domain.market import (
    Book,
    BookError,
    Order,
    OrderArrays,
    Utility,
    Zone,
    ZoneTree,
    clear,
    clear_without_self_trades,
)
from grid_server.domain.market.book import as_ints
from grid_server.domain.market.self_trade import net_orders, uncross

from .strategies import books
from .validity import assert_optimal


def _clear_without_self_trades(book: Book, owners: list[str]) -> tuple[list[int], dict[str, int]]:
    """The engine entry point the server clears with: fills per original order, zone prices."""
    result = clear_without_self_trades(book, owners)
    assert list(result.order_ids or ()) == [o.id for o in book.orders]
    prices = dict(zip(result.zone_ids, as_ints(result.price_ticks), strict=True))
    return as_ints(result.fills_wh), prices


def test_the_issue_example_trades_nothing_with_itself() -> None:
    """A household bid 0.25 and asked 0.20 for the same interval; a neighbour sold too."""
    zones = (Zone("z"),)
    book = Book(
        Utility(300_000, 80_000),
        zones,
        (
            Order("own-buy", "z", "buy", 1000, 250_000),
            Order("own-sell", "z", "sell", 1000, 200_000),
            Order("neighbour-sell", "z", "sell", 400, 150_000),
        ),
    )
    owners = ["alice", "alice", "bob"]
    with_self = clear(book)
    # Alone, the engine fills Alice's bid with 600 Wh of her own ask: a wash trade.
    assert as_ints(with_self.fills_wh) == [1000, 600, 400]
    fills, prices = _clear_without_self_trades(book, owners)
    own_buy, own_sell, neighbour = fills
    assert not (own_buy and own_sell)
    assert own_buy == neighbour == 400  # Alice buys what Bob sells, nothing from herself
    assert prices["z"] == as_ints(with_self.price_ticks)[0]  # the same market price


def test_netting_keeps_the_net_demand_and_drops_the_overlap() -> None:
    own = [
        Order("b1", "z", "buy", 500, 30),
        Order("b2", "z", "buy", 200, 10),
        Order("s1", "z", "sell", 400, 20),
        Order("s2", "z", "sell", 100, 30),
    ]
    netted = net_orders(own, "n:")
    # N(p): 700 below 10, 500 up to 20, 100 up to 30, -500 above: each fall is offered
    # as a buy while N is above zero and as a sell below (at 30 it falls through zero).
    assert [(o.side, o.energy_wh, o.price_ticks) for o in netted] == [
        ("buy", 200, 10),
        ("buy", 400, 20),
        ("buy", 100, 30),
        ("sell", 500, 30),
    ]
    for price in range(0, 41):
        assert _net_demand(own, price) == _net_demand(netted, price), price


def _net_demand(orders: list[Order], p: int) -> tuple[int, int]:
    """The range of net demand at price ``p``: orders exactly at ``p`` fill anywhere."""
    buys = [(o.energy_wh, o.price_ticks) for o in orders if o.side == "buy"]
    sells = [(o.energy_wh, o.price_ticks) for o in orders if o.side == "sell"]
    least = sum(q for q, lim in buys if lim > p) - sum(q for q, lim in sells if lim <= p)
    most = sum(q for q, lim in buys if lim >= p) - sum(q for q, lim in sells if lim < p)
    return least, most


owner_names = st.sampled_from(["a", "b", "c", "d"])


@settings(max_examples=300, deadline=None)
@given(books(max_orders=25), st.data())
def test_no_participant_is_filled_on_both_sides(book: Book, data: st.DataObject) -> None:
    owners = [data.draw(owner_names) for _ in book.orders]
    # A participant's orders are all in its zone.
    zone_of = {o: data.draw(st.sampled_from([z.id for z in book.zones])) for o in set(owners)}
    book = Book(
        book.utility,
        book.zones,
        tuple(
            Order(o.id, zone_of[w], o.side, o.energy_wh, o.price_ticks)
            for o, w in zip(book.orders, owners, strict=True)
        ),
    )
    fills, prices = _clear_without_self_trades(book, owners)
    original = clear(book)
    # The market is the one the original book gives: same prices in every zone.
    assert prices == dict(zip(original.zone_ids, as_ints(original.price_ticks), strict=True))
    bought: dict[str, int] = defaultdict(int)
    sold: dict[str, int] = defaultdict(int)
    for order, owner, fill in zip(book.orders, owners, fills, strict=True):
        assert 0 <= fill <= order.energy_wh
        if fill:
            p = prices[order.zone]
            assert order.price_ticks >= p if order.side == "buy" else order.price_ticks <= p
        (bought if order.side == "buy" else sold)[owner] += fill
    for owner in set(owners):
        assert not (bought[owner] and sold[owner]), owner
    # Every participant's net position equals what the netted book cleared for it,
    # so zones still balance exactly as the engine balanced them.
    uncrossed = uncross(book.orders, owners)
    cleared = clear(Book(book.utility, book.zones, uncrossed.orders))
    engine_net: dict[str, int] = defaultdict(int)
    for order, owner, fill in zip(
        uncrossed.orders, uncrossed.owner, as_ints(cleared.fills_wh), strict=True
    ):
        engine_net[str(owner)] += fill if order.side == "buy" else -fill
    for owner in set(owners):
        assert bought[owner] - sold[owner] == engine_net[owner]
    # And the netted book is cleared optimally (the welfare without wash trades).
    tree = ZoneTree.build(book.zones)
    assert_optimal(tree, book.utility, OrderArrays.from_orders(uncrossed.orders, tree), cleared)


@settings(max_examples=100, deadline=None)
@given(books(max_orders=20), st.data())
def test_netting_is_deterministic(book: Book, data: st.DataObject) -> None:
    owners = [data.draw(owner_names) for _ in book.orders]
    first = uncross(book.orders, owners)
    again = uncross(book.orders, owners)
    assert first == again


def test_netting_never_hides_an_invalid_order() -> None:
    """A crossing pair netted to nothing would leave no trace of an order the engine refuses."""
    book = Book(
        Utility(300_000, 80_000),
        (Zone("z"),),
        (Order("h", "z", "hold", 100, 10), Order("b", "gone", "buy", 100, 10)),  # type: ignore[arg-type]
    )
    with pytest.raises(BookError, match=r"orders\[0\]\.side"):
        clear_without_self_trades(book, ["a", "a"])
