"""Settlement arithmetic: hand-worked intervals and conservation on random ones."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grid_server.domain.market import Book, Order, OrderArrays, Utility, Zone, ZoneTree, clear
from grid_server.domain.settlement import (
    Participants,
    SettlementError,
    matched_positions,
    settle,
)

from .strategies import books

ISSUE_BOOK = Book(
    Utility(300_000, 80_000),
    (Zone("root"), Zone("feeder-1", "root", 10_000, 40_000, 40_000)),
    (Order("b1", "feeder-1", "buy", 1500, 250_000), Order("s1", "root", "sell", 800, 100_000)),
)


def _participants(consumed: list[int], produced: list[int]) -> Participants:
    # Participant 0 owns b1 (feeder-1, zone 1), participant 1 owns s1 (root, zone 0).
    return Participants(
        zone=np.array([1, 0], np.int32),
        bought_wh=np.array([800, 0]),
        sold_wh=np.array([0, 800]),
        consumed_wh=np.array(consumed),
        produced_wh=np.array(produced),
    )


def test_issue_example_as_delivered() -> None:
    """b1 pays 0.25 x 0.8 kWh, s1 gets 0.24 x 0.8, the grid keeps the 0.01 fee."""
    tree = ZoneTree.build(ISSUE_BOOK.zones)
    result = settle(tree, ISSUE_BOOK.utility, clear(ISSUE_BOOK), _participants([800, 0], [0, 800]))
    assert result.participants.market_buy.tolist() == [-200_000, 0]
    assert result.participants.market_sell.tolist() == [0, 192_000]
    assert result.participants.shortfall_retail.tolist() == [0, 0]
    assert result.participants.surplus_feed_in.tolist() == [0, 0]
    assert result.utility == ()
    assert [(g.kind, g.amount_micro) for g in result.grid] == [("link_fee", 8000), ("rounding", 0)]
    assert result.total_micro() == 0


def test_issue_example_with_deviations() -> None:
    """b1's household used 1000 Wh, 200 beyond what it bought; s1's produced
    only 700 of the 800 it sold. Both shortfalls are bought at retail (0.30)."""
    tree = ZoneTree.build(ISSUE_BOOK.zones)
    result = settle(tree, ISSUE_BOOK.utility, clear(ISSUE_BOOK), _participants([1000, 0], [0, 700]))
    assert result.shortfall_wh.tolist() == [200, 100]
    assert result.participants.shortfall_retail.tolist() == [-60_000, -30_000]
    assert [(u.kind, u.energy_wh, u.amount_micro) for u in result.utility] == [
        ("shortfall_retail", 300, 90_000)
    ]
    assert result.total_micro() == 0


def test_surplus_is_sold_at_feed_in() -> None:
    tree = ZoneTree.build(ISSUE_BOOK.zones)
    # The buyer consumed only 500 of 800 and the seller produced 1000.
    result = settle(tree, ISSUE_BOOK.utility, clear(ISSUE_BOOK), _participants([500, 0], [0, 1000]))
    assert result.surplus_wh.tolist() == [300, 200]
    assert result.participants.surplus_feed_in.tolist() == [24_000, 16_000]
    assert [(u.kind, u.amount_micro) for u in result.utility] == [("surplus_feed_in", -40_000)]
    assert result.total_micro() == 0


def test_rounding_goes_to_the_grid() -> None:
    """At 0.123457 per kWh, 7 Wh are 864.199 micro: the buyer pays 865, the
    seller gets 864, the grid keeps 1."""
    book = Book(
        Utility(300_000, 80_000),
        (Zone("z"),),
        (Order("b", "z", "buy", 7, 123_457), Order("s", "z", "sell", 10, 123_457)),
    )
    tree = ZoneTree.build(book.zones)
    market = clear(book)
    assert int(market.price_ticks[0]) == 123_457
    people = Participants(
        zone=np.zeros(2, np.int32),
        bought_wh=np.array([7, 0]),
        sold_wh=np.array([0, 7]),
        consumed_wh=np.array([7, 0]),
        produced_wh=np.array([0, 7]),
    )
    result = settle(tree, book.utility, market, people)
    assert result.participants.total().tolist() == [-865, 864]
    assert result.rounding_micro() == 1
    assert result.total_micro() == 0


def test_positions_that_do_not_balance_are_refused() -> None:
    tree = ZoneTree.build(ISSUE_BOOK.zones)
    people = _participants([800, 0], [0, 800])
    wrong = Participants(
        people.zone, np.array([700, 0]), people.sold_wh, people.consumed_wh, people.produced_wh
    )
    with pytest.raises(SettlementError, match="'feeder-1'"):
        settle(tree, ISSUE_BOOK.utility, clear(ISSUE_BOOK), wrong)


def test_congestion_income_is_booked() -> None:
    """A full link: child at 0.10, parent at 0.28, fee 0.01 -> 0.17 x 300 Wh congestion."""
    book = Book(
        Utility(300_000, 80_000),
        (Zone("r"), Zone("A", "r", 10_000, capacity_up_wh=300)),
        (Order("b", "r", "buy", 1000, 280_000), Order("s", "A", "sell", 1000, 100_000)),
    )
    tree = ZoneTree.build(book.zones)
    people = Participants(
        zone=np.array([0, 1], np.int32),
        bought_wh=np.array([300, 0]),
        sold_wh=np.array([0, 300]),
        consumed_wh=np.array([300, 0]),
        produced_wh=np.array([0, 300]),
    )
    result = settle(tree, book.utility, clear(book), people)
    assert [(g.kind, g.price_ticks, g.amount_micro) for g in result.grid] == [
        ("link_fee", 10_000, 3000),
        ("congestion", 170_000, 51_000),
        ("rounding", 0, 0),
    ]
    assert result.participants.total().tolist() == [-84_000, 30_000]


@st.composite
def intervals(draw: st.DrawFn) -> tuple[ZoneTree, Utility, object, Participants, np.ndarray]:
    """A random cleared book, orders grouped into participants of their zone, random meters."""
    book = draw(books())
    tree = ZoneTree.build(book.zones)
    orders = OrderArrays.from_orders(book.orders, tree)
    market = clear(book)
    per_zone = [draw(st.integers(1, 3)) for _ in range(tree.size)]
    first = np.concatenate([[0], np.cumsum(per_zone)[:-1]])
    owner = np.array(
        [first[z] + draw(st.integers(0, per_zone[z] - 1)) for z in orders.zone.tolist()],
        dtype=np.intp,
    )
    count = int(sum(per_zone))
    bought, sold = matched_positions(owner, orders.is_buy, market.fills_wh, count)
    position = sold - bought
    # Meters: exactly as matched, or anywhere around it.
    exact = draw(st.lists(st.booleans(), min_size=count, max_size=count))
    consumed, produced = [], []
    for i in range(count):
        if exact[i]:
            consumed.append(max(-int(position[i]), 0))
            produced.append(max(int(position[i]), 0))
        else:
            consumed.append(draw(st.integers(0, 5000)))
            produced.append(draw(st.integers(0, 5000)))
    zone = np.repeat(np.arange(tree.size, dtype=np.int32), per_zone)
    people = Participants(
        zone, bought, sold, np.array(consumed, np.int64), np.array(produced, np.int64)
    )
    return tree, book.utility, market, people, owner


@settings(max_examples=300, deadline=None)
@given(intervals())
def test_money_is_conserved_to_the_micro_unit(interval: tuple) -> None:
    tree, utility, market, people, _ = interval
    result = settle(tree, utility, market, people)
    lines = list(result.lines())
    assert sum(line.amount_micro for line in lines) == 0 == result.total_micro()
    # The remainder is only rounding: never negative, under one micro per line.
    others = [line for line in lines if line.kind != "rounding"]
    assert 0 <= result.rounding_micro() < max(len(others), 1)
    # Before rounding, the exact amounts already balance (the clearing's zones balance).
    exact = sum(
        line.price_ticks * line.energy_wh * _sign(line) for line in lines if line.kind != "rounding"
    )
    assert exact == 0


def _sign(line: object) -> int:
    kind, account = line.kind, line.account  # type: ignore[attr-defined]
    if account == "grid":
        return 1
    receives = (
        kind in ("market_sell", "surplus_feed_in")
        if account == "participant"
        else kind
        in (
            "market_sell",
            "shortfall_retail",
        )
    )
    return 1 if receives else -1


def _pays(nano: int) -> int:
    """What a payer pays for ``nano`` 10^-9 units, in micro-units: rounded up."""
    return math.ceil(Fraction(nano, 1000))


def _receives(nano: int) -> int:
    """What a receiver gets for ``nano`` 10^-9 units, in micro-units: rounded down."""
    return math.floor(Fraction(nano, 1000))


@settings(max_examples=300, deadline=None)
@given(intervals())
def test_each_line_follows_the_rules(interval: tuple) -> None:
    tree, utility, market, people, _ = interval
    result = settle(tree, utility, market, people)
    for i in range(len(people)):
        p = int(market.price_ticks[people.zone[i]])
        b, s = int(people.bought_wh[i]), int(people.sold_wh[i])
        m = int(people.produced_wh[i]) - int(people.consumed_wh[i])
        short, extra = max(s - b - m, 0), max(m - (s - b), 0)
        lines = result.participants
        assert int(lines.market_buy[i]) == -_pays(p * b)
        assert int(lines.market_sell[i]) == _receives(p * s)
        assert int(lines.shortfall_retail[i]) == -_pays(utility.retail_ticks * short)
        assert int(lines.surplus_feed_in[i]) == _receives(utility.feed_in_ticks * extra)


@settings(max_examples=300, deadline=None)
@given(intervals())
def test_no_worse_than_the_status_quo_when_delivered_as_matched(interval: tuple) -> None:
    """Without the market, net exports earn feed-in and net imports cost retail.
    A participant whose deviation does not run against its position (it
    delivered at least what it sold, or used at least what it bought) is never
    worse off: exactly in 10^-9, and in micro-units up to one unit per extra line."""
    tree, utility, market, people, _ = interval
    result = settle(tree, utility, market, people)
    totals = result.participants.total()
    for i in range(len(people)):
        p = int(market.price_ticks[people.zone[i]])
        b, s = int(people.bought_wh[i]), int(people.sold_wh[i])
        position = s - b
        m = int(people.produced_wh[i]) - int(people.consumed_wh[i])
        if not ((position >= 0 and m >= position) or (position <= 0 and m <= position)):
            continue
        deviation = m - position
        market_exact = p * position + (
            utility.feed_in_ticks * deviation if deviation > 0 else utility.retail_ticks * deviation
        )
        status_quo_exact = utility.feed_in_ticks * m if m > 0 else utility.retail_ticks * m
        assert market_exact >= status_quo_exact
        status_quo = _receives(status_quo_exact) if m > 0 else -_pays(-status_quo_exact)
        own_lines = sum(1 for energy in (b, s, max(-deviation, 0), max(deviation, 0)) if energy)
        assert int(totals[i]) >= status_quo - max(own_lines - 1, 0)
