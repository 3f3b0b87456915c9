"""The fast path against the definition of optimality and against HiGHS."""

from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grid_server.domain.market import Book, MarketResult, OrderArrays, Utility, ZoneTree, clear

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


def _scaled(book: Book, energy: int, price: int) -> Book:
    def cap(value: int | None) -> int | None:
        return None if value is None else value * energy

    return Book(
        Utility(book.utility.retail_ticks * price, book.utility.feed_in_ticks * price),
        tuple(
            dataclasses.replace(
                z,
                fee_ticks=z.fee_ticks * price,
                capacity_up_wh=cap(z.capacity_up_wh),
                capacity_down_wh=cap(z.capacity_down_wh),
            )
            for z in book.zones
        ),
        tuple(
            dataclasses.replace(
                o, energy_wh=o.energy_wh * energy, price_ticks=o.price_ticks * price
            )
            for o in book.orders
        ),
    )


@settings(max_examples=60, deadline=None)
@given(
    books(max_zones=5, max_orders=15), st.sampled_from([10**6, 10**9]), st.sampled_from([1, 10**4])
)
def test_large_energies_and_prices_stay_exact(book: Book, energy: int, price: int) -> None:
    """Products beyond int64 take the exact Python-integer paths; scaling the
    book scales the welfare exactly."""
    big = _scaled(book, energy, price)
    tree = ZoneTree.build(big.zones)
    result = clear(big)
    assert_optimal(tree, big.utility, OrderArrays.from_orders(big.orders, tree), result)
    assert result.welfare_nano == clear(book).welfare_nano * energy * price
