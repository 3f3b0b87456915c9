"""The fast path against the definition of optimality and against HiGHS."""

from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grid_server.domain.market import Book, MarketResult, OrderArrays, ZoneTree, clear

from .strategies import books
from .validity import assert_optimal

_SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(books())
def test_fast_path_is_optimal(book: Book) -> None:
    tree = ZoneTree.build(book.zones)
    orders = OrderArrays.from_orders(book.orders, tree)
    assert_optimal(tree, book.utility, orders, clear(book))


@settings(max_examples=150, deadline=None)
@given(books(), st.data())
def test_same_book_in_any_order_gives_the_same_result(book: Book, data: st.DataObject) -> None:
    zones = data.draw(st.permutations(book.zones))
    orders = data.draw(st.permutations(book.orders))
    shuffled = dataclasses.replace(book, zones=tuple(zones), orders=tuple(orders))
    first, second = clear(book), clear(shuffled)
    assert first.fill_of() == second.fill_of()
    assert first.welfare_nano == second.welfare_nano
    assert _by_zone(first) == _by_zone(second)


def _by_zone(result: MarketResult) -> dict[str, tuple[int, int, int, int]]:
    return {
        z: (int(p), int(b), int(s), int(f))
        for z, p, b, s, f in zip(
            result.zone_ids,
            result.price_ticks,
            result.utility_buy_wh,
            result.utility_sell_wh,
            result.flow_to_parent_wh,
            strict=True,
        )
    }
