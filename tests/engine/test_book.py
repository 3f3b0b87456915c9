"""Validation of books given as objects or arrays."""

from __future__ import annotations

import numpy as np
import pytest

from grid_server.domain.market import (
    Book,
    BookError,
    Order,
    OrderArrays,
    Utility,
    Zone,
    ZoneTree,
    clear,
    clear_arrays,
)
from grid_server.domain.market.book import MAX_TOTAL_ENERGY_WH

TREE = ZoneTree.build([Zone("root"), Zone("a", "root"), Zone("b", "a", 100, 5, None)])
UTILITY = Utility(300_000, 80_000)


def test_tree_order_and_children() -> None:
    tree = ZoneTree.build([Zone("c", "a"), Zone("root"), Zone("b", "root"), Zone("a", "root")])
    assert tree.ids[tree.root] == "root"
    assert [tree.ids[z] for z in tree.topdown] == ["root", "b", "a", "c"]
    # Children sorted by id: link ties break in that order.
    assert [tree.ids[c] for c in tree.children[tree.root]] == ["a", "b"]


def _arrays(**change: object) -> OrderArrays:
    fields: dict[str, object] = {
        "zone": np.array([0, 2], np.int32),
        "is_buy": np.array([True, False]),
        "energy_wh": np.array([10, 20], np.int64),
        "price_ticks": np.array([200_000, 100_000], np.int64),
    }
    fields.update(change)
    return OrderArrays(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"zone": np.array([0, 3], np.int32)}, "orders[1].zone: unknown zone index"),
        ({"energy_wh": np.array([10, -1], np.int64)}, "orders[1].energy_wh: must not be negative"),
        ({"price_ticks": np.array([10**13, 0], np.int64)}, "orders[0].price: is out of range"),
        ({"energy_wh": np.array([MAX_TOTAL_ENERGY_WH, 1], np.int64)}, "orders: total energy above"),
        ({"is_buy": np.array([True])}, "orders: arrays differ in length"),
        ({"ids": ("x",)}, "orders: ids differ in length"),
    ],
)
def test_array_books_are_validated(change: dict[str, object], message: str) -> None:
    with pytest.raises(BookError, match=message.replace("[", r"\[").replace("]", r"\]")):
        clear_arrays(TREE, UTILITY, _arrays(**change))


def test_arrays_without_ids_break_ties_by_position() -> None:
    orders = OrderArrays(
        zone=np.zeros(3, np.int32),
        is_buy=np.array([False, False, True]),
        energy_wh=np.array([100, 100, 101], np.int64),
        price_ticks=np.array([200_000, 200_000, 250_000], np.int64),
    )
    result = clear_arrays(ZoneTree.build([Zone("z")]), UTILITY, orders)
    assert result.fills_wh.tolist() == [51, 50, 101]
    with pytest.raises(ValueError, match="without ids"):
        result.fill_of()


def test_root_capacity_is_refused() -> None:
    with pytest.raises(
        BookError, match=r"zones\[0\].capacity_up_wh: the root zone has no parent link"
    ):
        ZoneTree.build([Zone("root", capacity_up_wh=5)])


def test_object_orders_are_validated() -> None:
    book = Book(UTILITY, (Zone("z"),), (Order("o", "z", "buy", 10, 10**13),))
    with pytest.raises(BookError, match=r"orders\[0\].price: is out of range"):
        clear(book)
