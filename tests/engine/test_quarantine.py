"""Clearing sets aside the orders it cannot clear and clears the rest as if they were absent."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grid_server.domain.market import (
    Book,
    BookError,
    Order,
    Utility,
    Zone,
    clear_isolating,
    clear_without_self_trades,
)
from grid_server.domain.market.book import MAX_TOTAL_ENERGY_WH, as_ints
from p2p_energy_client.units import MAX_PRICE_TICKS

from .strategies import books

# What an order the engine refuses looks like (stored by an older version, edited by hand).
BAD = [
    ("price", {"price_ticks": MAX_PRICE_TICKS + 1}),
    ("price", {"price_ticks": -MAX_PRICE_TICKS - 1}),
    ("zone", {"zone": "gone"}),
    ("energy_wh", {"energy_wh": -1}),
    ("side", {"side": "hold"}),
]


def _bad(i: int, which: dict[str, object], zone: str) -> Order:
    fields: dict[str, object] = {
        "id": f"bad{i}",
        "zone": zone,
        "side": "buy",
        "energy_wh": 100,
        "price_ticks": 10,
    }
    fields.update(which)
    return Order(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(("field", "which"), BAD)
def test_a_bad_order_is_set_aside_with_the_engines_reason(
    field: str, which: dict[str, object]
) -> None:
    zones = (Zone("z"),)
    good = (Order("s", "z", "sell", 800, 100_000), Order("b", "z", "buy", 500, 250_000))
    book = Book(Utility(300_000, 80_000), zones, (good[0], _bad(0, which, "z"), good[1]))
    with pytest.raises(BookError):
        clear_without_self_trades(book, ["a", "m", "b"])
    isolated = clear_isolating(book, ["a", "m", "b"])
    assert isolated.kept == (0, 2)
    assert list(isolated.quarantined) == [1]
    assert f".{field}" in isolated.quarantined[1]
    assert as_ints(isolated.result.fills_wh) == [500, 500]


@settings(max_examples=150, deadline=None)
@given(books(max_orders=15), st.data())
def test_the_rest_clears_as_if_the_bad_orders_were_absent(book: Book, data: st.DataObject) -> None:
    owners = [data.draw(st.sampled_from("abc")) for _ in book.orders]
    orders = list(book.orders)
    bad_at = sorted(data.draw(st.sets(st.integers(0, len(orders)), max_size=3)), reverse=True)
    for n, position in enumerate(bad_at):
        which = data.draw(st.sampled_from([w for _f, w in BAD]))
        orders.insert(position, _bad(n, which, book.zones[0].id))
        owners.insert(position, "m")
    mixed = Book(book.utility, book.zones, tuple(orders))
    isolated = clear_isolating(mixed, owners)
    bad = {i for i, o in enumerate(orders) if o.id.startswith("bad")}
    assert set(isolated.quarantined) == bad
    assert isolated.kept == tuple(i for i in range(len(orders)) if i not in bad)
    alone = clear_without_self_trades(book, [owners[i] for i in isolated.kept])
    assert as_ints(isolated.result.fills_wh) == as_ints(alone.fills_wh)
    assert as_ints(isolated.result.price_ticks) == as_ints(alone.price_ticks)


def test_orders_that_clear_alone_but_not_together_are_set_aside_one_by_one() -> None:
    """Three orders, each within the engine's range, together beyond its total energy."""
    huge = MAX_TOTAL_ENERGY_WH * 2 // 5
    book = Book(
        Utility(30, 8),
        (Zone("z"),),
        (
            Order("h1", "z", "sell", huge, 10),
            Order("small", "z", "buy", 500, 25),
            Order("h2", "z", "sell", huge, 10),
            Order("h3", "z", "buy", huge, 20),
        ),
    )
    isolated = clear_isolating(book, ["a", "b", "c", "d"])
    # The longest prefix that clears is h1, small, h2: h3 is the one set aside.
    assert isolated.kept == (0, 1, 2)
    assert list(isolated.quarantined) == [3]
    assert "total energy" in isolated.quarantined[3]
    assert as_ints(isolated.result.fills_wh)[1] == 500


def test_a_broken_utility_sets_nothing_aside() -> None:
    """Not an order's fault: clearing raises for the operator, no order is quarantined."""
    book = Book(Utility(8, 30), (Zone("z"),), (Order("b", "z", "buy", 500, 25),))
    with pytest.raises(BookError, match=r"utility\.retail_price"):
        clear_isolating(book, ["a"])
