"""Pro-rata splitting and the sharing of a zone's need among its child links."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grid_server.domain.market.allocation import prorata
from grid_server.domain.market.clearing import share_links

weights_st = st.lists(st.integers(0, 10**6) | st.integers(0, 10**15), min_size=1, max_size=12)


@settings(max_examples=300, deadline=None)
@given(weights_st, st.data())
def test_prorata_is_integral_exact_and_within_one_of_the_share(
    weights: list[int], data: st.DataObject
) -> None:
    total = data.draw(st.integers(0, sum(weights)))
    shares = prorata(total, np.array(weights, dtype=np.int64))
    assert shares.dtype == np.int64
    assert int(shares.sum()) == total
    for share, weight in zip(shares.tolist(), weights, strict=True):
        assert 0 <= share <= weight
        exact = Fraction(total * weight, sum(weights)) if sum(weights) else Fraction(0)
        assert exact - 1 < share < exact + 1


def test_prorata_gives_leftovers_to_largest_remainders_then_first_in_tie_order() -> None:
    # 10 over 4:4:4 -> 3.33 each; one leftover unit; equal remainders -> tie order.
    assert prorata(10, np.array([4, 4, 4])).tolist() == [4, 3, 3]
    assert prorata(10, np.array([4, 4, 4]), lambda items: sorted(items, reverse=True)).tolist() == [
        3,
        3,
        4,
    ]
    # 5 over 1:2:4 -> 0.71, 1.43, 2.86: floors 0, 1, 2; remainders 5, 3, 6 (x7).
    assert prorata(5, np.array([1, 2, 4])).tolist() == [1, 1, 3]


def test_prorata_beyond_int64_products() -> None:
    big = 3 * 10**14
    shares = prorata(big - 1, np.array([big // 3, big // 3, big // 3]))
    assert int(shares.sum()) == big - 1
    assert sorted(shares.tolist()) == [big // 3 - 1, big // 3, big // 3]


def test_prorata_refuses_more_than_the_weights() -> None:
    with pytest.raises(ValueError, match="cannot split"):
        prorata(11, np.array([5, 5]))


def test_links_start_from_zero_and_share_by_room() -> None:
    # Need 300 more than the anchors (0, 0, 100): rooms 200, 400, 0.
    assert share_links(400, [(0, 200), (-50, 400), (100, 100)], unlimited_above=10_000) == [
        100,
        200,
        100,
    ]
    # Downward, rooms 50 and 150.
    assert share_links(-100, [(-50, 10), (-150, 0)], unlimited_above=10_000) == [-25, -75]


def test_unlimited_links_take_only_what_limited_ones_cannot() -> None:
    unlimited = 10_001  # beyond every order's energy: the child's utility
    ranges = [(0, unlimited), (0, 300), (0, unlimited)]
    assert share_links(200, ranges, unlimited_above=10_000) == [0, 200, 0]
    assert share_links(700, ranges, unlimited_above=10_000) == [200, 300, 200]
