"""Sharing after delivery: hand-worked intervals, the rule's properties, and its incentives.

The properties run on random cleared books (``intervals`` of
``test_settlement``, the same strategies) with random sharing rules. The
incentive tests re-clear a book with one participant trading its forecast
ahead or withholding part of it, check both clearings against HiGHS, and
compare that participant's money.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from grid_server.config import SharingConfig
from grid_server.domain.market import (
    UNLIMITED,
    Book,
    MarketResult,
    Order,
    OrderArrays,
    Utility,
    Zone,
    ZoneTree,
    clear,
    solve_reference,
)
from grid_server.domain.settlement import (
    Participants,
    Settlement,
    SettlementError,
    matched_positions,
    settle,
)
from grid_server.domain.sharing import (
    MAX_STATIC_WEIGHT,
    SharingError,
    SharingRule,
    capped_prorata,
    sharing_prices,
)

from .strategies import books
from .test_settlement import intervals
from .validity import assert_optimal

RETAIL, FEED_IN = 300_000, 80_000
UTILITY = Utility(RETAIL, FEED_IN)
PAYS = {"market_buy", "shortfall_retail", "shared_in"}
RECEIVES = {"market_sell", "surplus_feed_in", "shared_out"}
Interval = tuple[ZoneTree, Utility, MarketResult, Participants, np.ndarray]


def _people(
    zone: list[int], bought: list[int], sold: list[int], consumed: list[int], produced: list[int]
) -> Participants:
    return Participants(
        zone=np.array(zone, np.int32),
        bought_wh=np.array(bought, np.int64),
        sold_wh=np.array(sold, np.int64),
        consumed_wh=np.array(consumed, np.int64),
        produced_wh=np.array(produced, np.int64),
        ids=[f"p{i}" for i in range(len(zone))],
    )


def _kinds(result: Settlement, account: str = "grid") -> list[tuple[str, int, int, int]]:
    return [
        (line.kind, line.energy_wh, line.price_ticks, line.amount_micro)
        for line in result.lines()
        if line.account == account
    ]


def _money_nano(result: Settlement, i: int) -> int:
    """What participant ``i`` receives, exactly, before rounding."""
    total = 0
    for line in result.lines():
        if line.account == "participant" and line.participant == i:
            value = line.price_ticks * line.energy_wh
            total += -value if line.kind in PAYS else value
    return total


# --- hand-worked intervals -------------------------------------------------------------------

# Feeder "a" under the root "r", 0.01 per kWh to cross. Each zone trades at 0.20.
LINK_ZONES = (Zone("r"), Zone("a", "r", 10_000))
LINK_ORDERS = (
    Order("b1", "r", "buy", 1000, 250_000),
    Order("s1", "r", "sell", 1000, 150_000),
    Order("b2", "a", "buy", 500, 220_000),
    Order("s2", "a", "sell", 500, 180_000),
)


def _link_interval(zones: tuple[Zone, ...]) -> tuple[ZoneTree, MarketResult]:
    market = clear(Book(UTILITY, zones, LINK_ORDERS))
    assert market.price_ticks.tolist() == [200_000, 200_000]
    assert market.flow_to_parent_wh.tolist() == [0, 0]
    return ZoneTree.build(zones), market


def _link_people(a_produced: int) -> Participants:
    # b1 (root) used 1200 of the 1000 it bought; s2 (feeder) made more than the 500 it sold.
    return _people(
        zone=[0, 0, 1, 1],
        bought=[1000, 0, 500, 0],
        sold=[0, 1000, 0, 500],
        consumed=[1200, 0, 500, 0],
        produced=[0, 1000, 0, a_produced],
    )


def test_two_neighbours_in_one_zone() -> None:
    """Clearing price 0.20: a shortfall pays 0.20 + (0.30 - 0.20) / 2 = 0.25, a surplus earns
    0.20 - (0.20 - 0.08) / 2 = 0.14. A is 300 Wh short, B 200 Wh over: 200 Wh are shared,
    A buys the other 100 at retail, and the grid keeps 0.11 x 200 Wh."""
    book = Book(
        UTILITY,
        (Zone("z"),),
        (Order("b", "z", "buy", 500, 200_000), Order("s", "z", "sell", 500, 200_000)),
    )
    market = clear(book)
    assert market.price_ticks.tolist() == [200_000]
    people = _people([0, 0], [500, 0], [0, 500], [800, 0], [0, 700])
    result = settle(ZoneTree.build(book.zones), UTILITY, market, people, SharingRule())
    lines = result.participants
    assert lines.shared_in.tolist() == [-50_000, 0]
    assert lines.shortfall_retail.tolist() == [-30_000, 0]
    assert lines.shared_out.tolist() == [0, 28_000]
    assert lines.surplus_feed_in.tolist() == [0, 0]
    assert _kinds(result, "utility") == [("shortfall_retail", 100, RETAIL, 30_000)]
    assert _kinds(result) == [("sharing_spread", 200, 0, 22_000), ("rounding", 0, 0, 0)]
    # Against the utility alone: A pays 0.05 less per shared kWh... 10,000 less in all;
    # B earns 0.06 more per kWh: 12,000 more.
    alone = settle(ZoneTree.build(book.zones), UTILITY, market, people)
    assert (lines.total() - alone.participants.total()).tolist() == [10_000, 12_000]
    assert result.total_micro() == 0


def test_across_a_link_with_a_fee() -> None:
    """200 Wh go up from the feeder at 0.14 to the root at 0.25; the link keeps 0.01 per kWh
    and the grid the other 0.10; the feeder's last 100 Wh go to the utility."""
    tree, market = _link_interval(LINK_ZONES)
    result = settle(tree, UTILITY, market, _link_people(800), SharingRule())
    assert result.sharing is not None
    assert result.sharing.flow_to_parent_wh.tolist() == [0, 200]
    assert result.sharing.local_wh.tolist() == [0, 0]
    assert result.participants.shared_in.tolist() == [-50_000, 0, 0, 0]
    assert result.participants.shared_out.tolist() == [0, 0, 0, 28_000]
    assert result.participants.surplus_feed_in.tolist() == [0, 0, 0, 8_000]
    assert _kinds(result) == [
        ("sharing_link_fee", 200, 10_000, 2_000),
        ("sharing_spread", 200, 0, 20_000),
        ("rounding", 0, 0, 0),
    ]
    assert result.total_micro() == 0


def test_a_fee_above_the_spread_keeps_the_energy_home() -> None:
    """p_in(root) - p_out(feeder) = 0.11: a fee of 0.12 is not covered, so nothing crosses."""
    zones = (Zone("r"), Zone("a", "r", 120_000))
    tree, market = _link_interval(zones)
    result = settle(tree, UTILITY, market, _link_people(800), SharingRule())
    assert result.sharing is not None and result.sharing.shared_wh == 0
    assert result.shortfall_wh.tolist() == [200, 0, 0, 0]
    assert result.surplus_wh.tolist() == [0, 0, 0, 300]
    assert _kinds(result) == [("rounding", 0, 0, 0)]


def test_a_link_capacity_that_binds() -> None:
    """The feeder may export 120 Wh: 120 of the root's 200 Wh shortfall are shared."""
    zones = (Zone("r"), Zone("a", "r", 10_000, capacity_up_wh=120))
    tree, market = _link_interval(zones)
    result = settle(tree, UTILITY, market, _link_people(800), SharingRule())
    assert result.sharing is not None
    assert result.sharing.flow_to_parent_wh.tolist() == [0, 120]
    assert result.shortfall_wh.tolist() == [80, 0, 0, 0]
    assert result.surplus_wh.tolist() == [0, 0, 0, 180]


def test_shared_energy_nets_against_the_market_flow() -> None:
    """The market sends 300 Wh down a link that takes nothing up: after delivery up to 300 Wh
    of the feeder's surplus may still go up, since the net flow stays downward."""
    zones = (Zone("r"), Zone("a", "r", 0, capacity_up_wh=0, capacity_down_wh=1000))
    book = Book(
        UTILITY,
        zones,
        (Order("s", "r", "sell", 300, 100_000), Order("b", "a", "buy", 300, 280_000)),
    )
    market = clear(book)
    assert market.flow_to_parent_wh.tolist() == [0, -300]
    tree = ZoneTree.build(zones)
    # The root's seller delivered; the feeder's buyer used none of its 300 Wh and exported
    # 200 more (500 Wh surplus); the root has a neighbour 600 Wh short.
    people = _people([0, 1, 0], [0, 300, 0], [300, 0, 0], [0, 0, 600], [300, 200, 0])
    result = settle(tree, UTILITY, market, people, SharingRule())
    assert result.sharing is not None
    assert result.sharing.flow_to_parent_wh.tolist() == [0, 300]
    assert result.surplus_wh.tolist() == [0, 200, 0]  # beyond the room: to the utility
    assert result.shortfall_wh.tolist() == [0, 0, 300]


def test_static_shares() -> None:
    """One producer's 300 Wh surplus; X (weight 2) is 500 short, Y (weight 1) 50, Z (no
    share) 100. Level L: X gets 2L, Y min(50, L); Y fills at 50, X gets 250. The statutory
    static key would give X 200 and send Y's unused 50 to the grid; Z gets nothing either way."""
    book = Book(UTILITY, (Zone("z"),), ())
    market = clear(book)
    people = _people([0] * 4, [0] * 4, [0] * 4, [0, 500, 50, 100], [300, 0, 0, 0])
    rule = SharingRule(key="static", static_shares={"p1": 2, "p2": 1})
    result = settle(ZoneTree.build(book.zones), UTILITY, market, people, rule)
    assert result.sharing is not None
    assert result.sharing.shared_in_wh.tolist() == [0, 250, 50, 0]
    assert result.sharing.shared_out_wh.tolist() == [300, 0, 0, 0]
    assert result.shortfall_wh.tolist() == [0, 250, 0, 100]


def test_dynamic_key_follows_consumption() -> None:
    """X bought 900 Wh and used 1000, Y bought nothing and used 100: both are 100 Wh short.
    A neighbour's 110 Wh surplus goes by consumption 1000 : 100, so X would take 100 and Y 10;
    by deviation (100 : 100) each takes 55."""
    book = Book(
        UTILITY,
        (Zone("z"),),
        (Order("s", "z", "sell", 900, 100_000), Order("x", "z", "buy", 900, 300_000)),
    )
    market = clear(book)
    tree = ZoneTree.build(book.zones)
    # S delivered what it sold; X, Y and the producer P as above.
    people = _people([0] * 4, [0, 900, 0, 0], [900, 0, 0, 0], [0, 1000, 100, 0], [900, 0, 0, 110])
    by_use = settle(tree, UTILITY, market, people, SharingRule(key="dynamic"))
    by_deviation = settle(tree, UTILITY, market, people, SharingRule())
    assert by_use.sharing is not None and by_deviation.sharing is not None
    assert by_use.sharing.shared_in_wh.tolist() == [0, 100, 10, 0]
    assert by_deviation.sharing.shared_in_wh.tolist() == [0, 55, 55, 0]


def test_a_grid_that_did_not_trade_shares_around_the_midpoint() -> None:
    """No orders: the engine prices every zone at the middle of [0.08, 0.30], 0.19; a
    shortfall pays 0.245 and a surplus earns 0.135 (the issue's 'midpoint' rule)."""
    zones = (Zone("r"), Zone("a", "r"))
    market = clear(Book(UTILITY, zones, ()))
    assert market.price_ticks.tolist() == [190_000, 190_000]
    p_in, p_out = sharing_prices(UTILITY, market.price_ticks, SharingRule())
    assert p_in.tolist() == [245_000, 245_000] and p_out.tolist() == [135_000, 135_000]
    people = _people([0, 1], [0, 0], [0, 0], [100, 0], [0, 100])
    result = settle(ZoneTree.build(zones), UTILITY, market, people, SharingRule())
    assert result.participants.shared_in.tolist() == [-24_500, 0]
    assert result.participants.shared_out.tolist() == [0, 13_500]


def test_a_zone_that_did_not_trade_under_one_that_did_takes_its_clearing_price() -> None:
    """The feeder has no orders, the root trades at 0.28. The feeder's price is still 0.28
    (what an order there would have traded at over the free link), so its shortfall pays
    0.29, not the midpoint's 0.245: otherwise not trading there would beat trading at 0.28."""
    zones = (Zone("r"), Zone("a", "r"))
    book = Book(
        UTILITY, zones, (Order("b", "r", "buy", 500, 280_000), Order("s", "r", "sell", 100, 90_000))
    )
    market = clear(book)
    assert market.price_ticks.tolist() == [280_000, 280_000]
    p_in, _ = sharing_prices(UTILITY, market.price_ticks, SharingRule())
    assert p_in.tolist() == [290_000, 290_000]


def test_rounding_toward_the_grid_splits_no_unit() -> None:
    """At retail 0.300001 and a shortfall share of 1 (p_in = retail), 10 Wh split 5/5 would
    cost ceil(1.500005) + ceil(1.500005) = 3002 micro; rounded together they cost 3001, what
    the utility alone would have charged."""
    utility = Utility(300_001, 80_000)
    book = Book(utility, (Zone("z"),), ())
    market = clear(book)
    people = _people([0, 0], [0, 0], [0, 0], [10, 0], [0, 5])
    rule = SharingRule(shortfall_share=Fraction(1))
    result = settle(ZoneTree.build(book.zones), utility, market, people, rule)
    lines = result.participants
    assert (int(lines.shared_in[0]), int(lines.shortfall_retail[0])) == (-1500, -1501)
    assert int(lines.total()[0]) == -3001 == -math.ceil(Fraction(300_001 * 10, 1000))
    assert result.total_micro() == 0 and result.rounding_micro() >= 0


# --- properties on random intervals ----------------------------------------------------------


@st.composite
def rules(draw: st.DrawFn, ids: list[str]) -> SharingRule:
    shares = st.sampled_from(
        [Fraction(0), Fraction(1, 3), Fraction(1, 2), Fraction(1)]
    ) | st.builds(Fraction, st.integers(0, 7), st.just(7))
    key = draw(st.sampled_from(["proportional", "dynamic", "static"]))
    static: dict[str, int] = {}
    if key == "static":
        static = {pid: w for pid in ids if (w := draw(st.integers(0, 3)))}
        if not static:
            static = {draw(st.sampled_from(ids)): 1}
    return SharingRule(key, draw(shares), draw(shares), static)  # type: ignore[arg-type]


@st.composite
def shared_intervals(draw: st.DrawFn) -> tuple[Interval, SharingRule]:
    tree, utility, market, people, owner = draw(intervals())
    ids = draw(
        st.lists(
            st.text(alphabet="uvw", min_size=1, max_size=4),
            min_size=len(people),
            max_size=len(people),
            unique=True,
        )
    )
    return (tree, utility, market, replace(people, ids=ids), owner), draw(rules(ids))


def _deviation(people: Participants) -> tuple[np.ndarray, np.ndarray]:
    position = people.sold_wh - people.bought_wh
    metered = people.produced_wh - people.consumed_wh
    return np.maximum(position - metered, 0), np.maximum(metered - position, 0)


@settings(max_examples=300, deadline=None)
@given(shared_intervals())
def test_energy_is_conserved_and_the_utility_covers_the_rest(case: tuple) -> None:
    (tree, utility, market, people, _), rule = case
    result = settle(tree, utility, market, people, rule)
    shared = result.sharing
    assert shared is not None
    short, extra = _deviation(people)
    assert ((0 <= shared.shared_in_wh) & (shared.shared_in_wh <= short)).all()
    assert ((0 <= shared.shared_out_wh) & (shared.shared_out_wh <= extra)).all()
    assert (result.shortfall_wh + shared.shared_in_wh == short).all()
    assert (result.surplus_wh + shared.shared_out_wh == extra).all()
    assert shared.shared_in_wh.sum() == shared.shared_out_wh.sum() == shared.shared_wh
    # Per zone: matched inside it, plus what crossed its links.
    zone_in = np.bincount(people.zone, shared.shared_in_wh, tree.size).astype(int)
    zone_out = np.bincount(people.zone, shared.shared_out_wh, tree.size).astype(int)
    assert (zone_in == shared.local_wh + shared.imported_wh).all()
    assert (zone_out == shared.local_wh + shared.exported_wh).all()
    inflow = -shared.flow_to_parent_wh.copy()
    links = np.flatnonzero(tree.parent >= 0)
    np.add.at(inflow, tree.parent[links], shared.flow_to_parent_wh[links])
    assert (shared.imported_wh - shared.exported_wh == inflow).all()
    if rule.key == "static":
        no_share = np.array([rule.static_shares.get(pid, 0) == 0 for pid in people.ids or []])
        assert (shared.shared_in_wh[no_share] == 0).all()


@settings(max_examples=300, deadline=None)
@given(shared_intervals())
def test_money_is_conserved_to_the_micro_unit(case: tuple) -> None:
    (tree, utility, market, people, _), rule = case
    result = settle(tree, utility, market, people, rule)
    shared = result.sharing
    assert shared is not None
    lines = list(result.lines())
    assert sum(line.amount_micro for line in lines) == 0 == result.total_micro()
    assert 0 <= result.rounding_micro() < max(len(lines) - 1, 1)
    # The spread is exactly what shortfalls paid for shared energy minus what surpluses
    # earned and the link fees, and never negative.
    p_in, p_out = shared.participant_prices()
    fees = sum(int(tree.fee_ticks[z]) * abs(int(f)) for z, f in enumerate(shared.flow_to_parent_wh))
    spread = int(p_in @ shared.shared_in_wh) - int(p_out @ shared.shared_out_wh) - fees
    assert spread >= 0
    spread_lines = [line.amount_micro for line in lines if line.kind == "sharing_spread"]
    assert spread_lines == ([spread // 1000] if shared.shared_wh else [])
    link_fee_lines = [line for line in lines if line.kind == "sharing_link_fee"]
    assert sum(line.price_ticks * line.energy_wh for line in link_fee_lines) == fees
    assert all(line.amount_micro >= 0 for line in lines if line.account == "grid")


@settings(max_examples=300, deadline=None)
@given(shared_intervals())
def test_nobody_is_worse_off_than_with_the_utility(case: tuple) -> None:
    """To the micro-unit, for every participant, whatever the rule."""
    (tree, utility, market, people, _), rule = case
    on = settle(tree, utility, market, people, rule)
    off = settle(tree, utility, market, people)
    assert (on.participants.total() >= off.participants.total()).all()
    p_in, p_out = sharing_prices(utility, market.price_ticks, rule)
    assert (utility.feed_in_ticks <= p_out).all() and (p_out <= market.price_ticks).all()
    assert (market.price_ticks <= p_in).all() and (p_in <= utility.retail_ticks).all()


@settings(max_examples=300, deadline=None)
@given(shared_intervals())
def test_a_deviation_is_worth_at_most_the_clearing_price(case: tuple) -> None:
    """Each participant's money is at most its metered net export at its zone's clearing
    price, exactly, with equality when it delivered what it traded: at the same clearing
    price, whoever trades its forecast ahead does at least as well as anyone who does not."""
    (tree, utility, market, people, _), rule = case
    result = settle(tree, utility, market, people, rule)
    short, extra = _deviation(people)
    for i in range(len(people)):
        c = int(market.price_ticks[people.zone[i]])
        metered = int(people.produced_wh[i]) - int(people.consumed_wh[i])
        money = _money_nano(result, i)
        assert money <= c * metered
        if short[i] == extra[i] == 0:
            assert money == c * metered


@settings(max_examples=300, deadline=None)
@given(shared_intervals())
def test_links_stay_within_capacity_and_crossing_pays_its_fees(case: tuple) -> None:
    (tree, utility, market, people, _), rule = case
    result = settle(tree, utility, market, people, rule)
    assert result.sharing is not None
    total = market.flow_to_parent_wh + result.sharing.flow_to_parent_wh
    up = np.where(tree.cap_up_wh == UNLIMITED, np.iinfo(np.int64).max, tree.cap_up_wh)
    down = np.where(tree.cap_down_wh == UNLIMITED, np.iinfo(np.int64).max, tree.cap_down_wh)
    assert ((-down <= total) & (total <= up)).all()
    crossing = result.sharing.flow_to_parent_wh != 0
    if crossing.any():
        event("shared energy crossed a link")
        if ((total == up) | (total == -down))[crossing].any():
            event("a link's room bound the shared energy")
    assert result.sharing.flow_to_parent_wh[tree.parent < 0].tolist() == [0]
    # p_in - p_out never exceeds retail - feed-in: a link that costs more never carries any.
    gap = utility.retail_ticks - utility.feed_in_ticks
    assert not (result.sharing.flow_to_parent_wh[tree.fee_ticks > gap]).any()


@settings(max_examples=300, deadline=None)
@given(shared_intervals())
def test_zones_match_inside_first_and_trade_only_their_leftover(case: tuple) -> None:
    (tree, utility, market, people, _), rule = case
    result = settle(tree, utility, market, people, rule)
    shared = result.sharing
    assert shared is not None
    short, extra = _deviation(people)
    if rule.key == "static":
        holders = np.array([rule.static_shares.get(pid, 0) > 0 for pid in people.ids or []])
        short = np.where(holders, short, 0)
    zone_short = np.bincount(people.zone, short, tree.size).astype(int)
    zone_extra = np.bincount(people.zone, extra, tree.size).astype(int)
    assert (shared.local_wh == np.minimum(zone_short, zone_extra)).all()
    assert (shared.imported_wh <= np.maximum(zone_short - zone_extra, 0)).all()
    assert (shared.exported_wh <= np.maximum(zone_extra - zone_short, 0)).all()


@settings(max_examples=200, deadline=None)
@given(shared_intervals())
def test_the_exchange_between_zones_is_the_optimum_of_the_leftovers(case: tuple) -> None:
    """HiGHS solves the leftovers' programme (buys at p_in, sells at p_out, fees, the room the
    market left, no utility) independently; the shared flows reach its optimum."""
    (tree, utility, market, people, _), rule = case
    result = settle(tree, utility, market, people, rule)
    shared = result.sharing
    assert shared is not None
    short, extra = _deviation(people)
    if rule.key == "static":
        holders = np.array([rule.static_shares.get(pid, 0) > 0 for pid in people.ids or []])
        short = np.where(holders, short, 0)
    leftover = (
        np.bincount(people.zone, extra, tree.size) - np.bincount(people.zone, short, tree.size)
    ).astype(np.int64)
    zones = np.flatnonzero(leftover).astype(np.int32)
    is_buy = leftover[zones] < 0
    orders = OrderArrays(
        zone=zones,
        is_buy=is_buy,
        energy_wh=np.abs(leftover[zones]),
        price_ticks=np.where(
            is_buy, shared.shortfall_price_ticks[zones], shared.surplus_price_ticks[zones]
        ),
    )
    flow = market.flow_to_parent_wh
    room = replace(
        tree,
        cap_up_wh=np.where(tree.cap_up_wh == UNLIMITED, UNLIMITED, tree.cap_up_wh - flow),
        cap_down_wh=np.where(tree.cap_down_wh == UNLIMITED, UNLIMITED, tree.cap_down_wh + flow),
    )
    apart = Utility(utility.retail_ticks + 1, utility.feed_in_ticks - 1)
    reference = solve_reference(room, apart, orders)
    welfare = (
        int(shared.shortfall_price_ticks @ shared.imported_wh)
        - int(shared.surplus_price_ticks @ shared.exported_wh)
        - int(tree.fee_ticks @ np.abs(shared.flow_to_parent_wh))
    )
    assert math.isclose(welfare, reference.welfare * 1e9, rel_tol=1e-9, abs_tol=1e-3)


@settings(max_examples=200, deadline=None)
@given(shared_intervals(), st.randoms(use_true_random=False))
def test_same_input_same_output_in_any_order(case: tuple, random: object) -> None:
    (tree, utility, market, people, _), rule = case
    first = settle(tree, utility, market, people, rule)
    again = settle(tree, utility, market, people, rule)
    perm = np.array(random.sample(range(len(people)), len(people)), dtype=np.intp)  # type: ignore[attr-defined]
    shuffled = Participants(
        zone=people.zone[perm],
        bought_wh=people.bought_wh[perm],
        sold_wh=people.sold_wh[perm],
        consumed_wh=people.consumed_wh[perm],
        produced_wh=people.produced_wh[perm],
        ids=[people.ids[i] for i in perm] if people.ids is not None else None,
    )
    moved = settle(tree, utility, market, shuffled, rule)
    for result in (again, moved):
        assert result.sharing is not None and first.sharing is not None
        order = perm if result is moved else np.arange(len(people))
        for name in ("shared_in_wh", "shared_out_wh"):
            assert (getattr(result.sharing, name) == getattr(first.sharing, name)[order]).all()
        assert (result.participants.total() == first.participants.total()[order]).all()
        assert _kinds(result) == _kinds(first)
        assert _kinds(result, "utility") == _kinds(first, "utility")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from([1, 2]), min_size=2, max_size=9),
    st.integers(1, 5),
    st.sampled_from(["proportional", "dynamic"]),
    st.randoms(use_true_random=False),
)
def test_remainders_go_to_the_smaller_id_in_any_order(
    short: list[int], surplus: int, key: str, random: object
) -> None:
    """Equal shortfalls and a small surplus: the leftover Wh go to the smaller ids, wherever
    those participants stand in the input."""
    n = len(short)
    surplus = min(surplus, sum(short))
    ids = [f"id{k:02d}" for k in range(n)]
    order = random.sample(range(n), n)  # type: ignore[attr-defined]
    zones = (Zone("z"),)
    market = clear(Book(UTILITY, zones, ()))
    people = Participants(
        zone=np.zeros(n + 1, np.int32),
        bought_wh=np.zeros(n + 1, np.int64),
        sold_wh=np.zeros(n + 1, np.int64),
        consumed_wh=np.array([short[k] for k in order] + [0], np.int64),
        produced_wh=np.array([0] * n + [surplus], np.int64),
        ids=[ids[k] for k in order] + ["producer"],
    )
    rule = SharingRule(key=key)  # type: ignore[arg-type]
    result = settle(ZoneTree.build(zones), UTILITY, market, people, rule)
    assert result.sharing is not None
    got = dict(zip(people.ids or [], result.sharing.shared_in_wh.tolist(), strict=True))
    exact = [Fraction(surplus * s, sum(short)) for s in short]
    rounded_up = [ids[k] for k in range(n) if got[ids[k]] > exact[k]]
    rounded_down = [ids[k] for k in range(n) if got[ids[k]] < exact[k]]
    for winner in rounded_up:
        for loser in rounded_down:
            k_win, k_lose = ids.index(winner), ids.index(loser)
            remainder_win = exact[k_win] - math.floor(exact[k_win])
            remainder_lose = exact[k_lose] - math.floor(exact[k_lose])
            assert remainder_win > remainder_lose or (
                remainder_win == remainder_lose and winner < loser
            )


@settings(max_examples=200, deadline=None)
@given(intervals())
def test_without_deviations_sharing_changes_nothing(interval: tuple) -> None:
    tree, utility, market, people, _ = interval
    position = people.sold_wh - people.bought_wh
    exact = replace(
        people, consumed_wh=np.maximum(-position, 0), produced_wh=np.maximum(position, 0)
    )
    on = settle(tree, utility, market, exact, SharingRule())
    off = settle(tree, utility, market, exact)
    assert list(on.lines()) == list(off.lines())


# --- allocation keys -------------------------------------------------------------------------


def _water_level(total: int, weights: list[int], caps: list[int]) -> list[Fraction]:
    """Exact shares by the definition: one level L with sum(min(cap, L * w)) = total over the
    weighted items, the rest to the unweighted ones in proportion to their caps."""
    weighted = [i for i, (w, c) in enumerate(zip(weights, caps, strict=True)) if w > 0 and c > 0]
    first = min(total, sum(caps[i] for i in weighted))
    exact = [Fraction(0)] * len(caps)
    if first:
        levels = sorted({Fraction(caps[i], weights[i]) for i in weighted})
        low = Fraction(0)
        for level in levels:
            if sum(min(caps[i], level * weights[i]) for i in weighted) >= first:
                break
            low = level
        full = [i for i in weighted if Fraction(caps[i], weights[i]) <= low]
        free = [i for i in weighted if i not in full]
        level = Fraction(first - sum(caps[i] for i in full), sum(weights[i] for i in free))
        for i in weighted:
            exact[i] = min(Fraction(caps[i]), level * weights[i])
    rest = [i for i, (w, c) in enumerate(zip(weights, caps, strict=True)) if w <= 0 and c > 0]
    if total > first:
        for i in rest:
            exact[i] = Fraction((total - first) * caps[i], sum(caps[j] for j in rest))
    return exact


@st.composite
def splits(draw: st.DrawFn) -> tuple[int, list[int], list[int]]:
    n = draw(st.integers(1, 12))
    caps = draw(
        st.lists(st.sampled_from([0, 1, 3, 10]) | st.integers(0, 2000), min_size=n, max_size=n)
    )
    weights = draw(
        st.lists(st.sampled_from([0, 1, 2, 7]) | st.integers(0, 10**6), min_size=n, max_size=n)
    )
    return draw(st.integers(0, sum(caps))), weights, caps


@settings(max_examples=500, deadline=None)
@given(splits())
def test_capped_prorata_is_the_water_level_in_whole_units(split: tuple) -> None:
    total, weights, caps = split
    out = capped_prorata(total, np.array(weights, np.int64), np.array(caps, np.int64)).tolist()
    exact = _water_level(total, weights, caps)
    assert sum(out) == total
    assert all(0 <= o <= c for o, c in zip(out, caps, strict=True))
    assert all(math.floor(e) <= o <= math.ceil(e) for o, e in zip(out, exact, strict=True))
    # Largest remainders: whoever was rounded up had a remainder at least as large as
    # anyone's who was rounded down; among equals, the earlier position.
    up = [(e - math.floor(e), i) for i, (o, e) in enumerate(zip(out, exact, strict=True)) if o > e]
    down = [
        (e - math.floor(e), i) for i, (o, e) in enumerate(zip(out, exact, strict=True)) if o < e
    ]
    for r_up, i_up in up:
        for r_down, i_down in down:
            assert r_up > r_down or (r_up == r_down and i_up < i_down)


def test_capped_prorata_refuses_more_than_the_caps_hold() -> None:
    with pytest.raises(ValueError, match="cannot place 11 within caps summing to 10"):
        capped_prorata(11, np.array([1, 1]), np.array([5, 5]))


def test_capped_prorata_stays_exact_beyond_int64_products() -> None:
    caps = np.array([2**52, 3, 2**51], np.int64)
    weights = np.array([2**40, 1, 2**45], np.int64)
    total = 2**52 + 1
    out = capped_prorata(total, weights, caps).tolist()
    exact = _water_level(total, weights.tolist(), caps.tolist())
    assert sum(out) == total
    assert all(math.floor(e) <= o <= math.ceil(e) for o, e in zip(out, exact, strict=True))


@settings(max_examples=300, deadline=None)
@given(shared_intervals())
def test_each_key_allocates_by_its_own_weights(case: tuple) -> None:
    """Per zone and side, the allocation is the water level of the key's weights, capped at
    each deviation: the deviation itself (proportional), the meters (dynamic), the operator's
    weights on the receiving side (static: at least the statutory fixed share)."""
    (tree, utility, market, people, _), rule = case
    result = settle(tree, utility, market, people, rule)
    shared = result.sharing
    assert shared is not None
    short, extra = _deviation(people)
    if rule.key == "proportional":
        w_in, w_out = short, extra
    elif rule.key == "dynamic":
        w_in, w_out = people.consumed_wh, people.produced_wh
    else:
        w_in = np.array([rule.static_shares.get(pid, 0) for pid in people.ids or []], np.int64)
        w_out = extra
        short = np.where(w_in > 0, short, 0)
    for z in range(tree.size):
        members = np.flatnonzero(people.zone == z)
        for got, weights, caps in (
            (shared.shared_in_wh, w_in, short),
            (shared.shared_out_wh, w_out, extra),
        ):
            total = int(got[members].sum())
            exact = _water_level(total, weights[members].tolist(), caps[members].tolist())
            for o, e in zip(got[members].tolist(), exact, strict=True):
                assert math.floor(e) <= o <= math.ceil(e)
        if rule.key == "static":
            pool = int(shared.shared_in_wh[members].sum())
            weight_sum = int(w_in[members].sum())
            for i in members:
                fixed = pool * int(w_in[i]) // weight_sum if weight_sum else 0
                assert shared.shared_in_wh[i] >= min(int(short[i]), fixed)


# --- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "where", "message"),
    [
        (SharingRule(key="fair"), "sharing.key", "must be one of proportional, dynamic, static"),  # type: ignore[arg-type]
        (SharingRule(shortfall_share=Fraction(3, 2)), "sharing.shortfall_share", "within [0, 1]"),
        (SharingRule(surplus_share=Fraction(-1, 2)), "sharing.surplus_share", "within [0, 1]"),
        (SharingRule(surplus_share=0.5), "sharing.surplus_share", "exact fraction"),  # type: ignore[arg-type]
        (
            SharingRule(key="static", static_shares={"p0": -1}),
            "sharing.static_shares['p0']",
            "within [0, 1000000000]",
        ),
        (
            SharingRule(key="static", static_shares={"p0": MAX_STATIC_WEIGHT + 1}),
            "sharing.static_shares['p0']",
            "within",
        ),
        (
            SharingRule(key="static", static_shares={"p0": True}),  # type: ignore[dict-item]
            "sharing.static_shares['p0']",
            "integer weight",
        ),
        (SharingRule(key="static", static_shares={"p0": 0}), "sharing.static_shares", "positive"),
        (SharingRule(key="static"), "sharing.static_shares", "at least one positive weight"),
        (SharingRule(static_shares={"p0": 1}), "sharing.static_shares", "only to the static key"),
    ],
)
def test_invalid_rules_are_refused_naming_the_field(
    rule: SharingRule, where: str, message: str
) -> None:
    with pytest.raises(SharingError, match=re.escape(message)) as refused:
        rule.validate()
    assert refused.value.where == where
    tree, market = _link_interval(LINK_ZONES)
    with pytest.raises(SettlementError, match=re.escape(f"{where}: ")):
        settle(tree, UTILITY, market, _link_people(800), rule)


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        (None, "participants.ids: the static key needs participant ids"),
        (["p0", "p0", "p1", "p2"], "participants.ids: must name each participant once"),
        (["p0"], "participants.ids: must name each participant once"),
    ],
)
def test_participant_ids_must_fit(ids: list[str] | None, message: str) -> None:
    tree, market = _link_interval(LINK_ZONES)
    people = replace(_link_people(800), ids=ids)
    rule = SharingRule(key="static", static_shares={"p0": 1})
    with pytest.raises(SettlementError, match=re.escape(message)):
        settle(tree, UTILITY, market, people, rule)


def test_a_price_outside_the_utility_band_is_refused() -> None:
    tree, market = _link_interval(LINK_ZONES)
    wrong = replace(market, price_ticks=np.array([200_000, 310_000]))
    with pytest.raises(SettlementError, match=r"zones\[1\].price: clearing price 310000"):
        settle(tree, UTILITY, wrong, _link_people(800), SharingRule())


# --- incentives on the welfare programme ------------------------------------------------------


@st.composite
def withholdings(draw: st.DrawFn) -> tuple:
    """A random book and one more participant, P, who trades its forecast ahead (A) or
    withholds part of it (B); everyone else's orders and meters stay the same."""
    book = draw(books(max_zones=4, max_orders=12))
    tree = ZoneTree.build(book.zones)
    buyer = draw(st.booleans())
    zone_id = draw(st.sampled_from(tree.ids))
    forecast = draw(st.integers(1, 3000))
    withheld = draw(st.integers(1, forecast))
    # The others: each order to one of up to three participants of its zone, random meters.
    per_zone = [draw(st.integers(1, 3)) for _ in range(tree.size)]
    first = np.concatenate([[0], np.cumsum(per_zone)[:-1]])
    index = tree.index()
    owner = [
        int(first[index[o.zone]]) + draw(st.integers(0, per_zone[index[o.zone]] - 1))
        for o in book.orders
    ]
    count = sum(per_zone)
    consumed = [draw(st.integers(0, 3000)) for _ in range(count)]
    produced = [draw(st.integers(0, 3000)) for _ in range(count)]
    shares = st.sampled_from([Fraction(0), Fraction(1, 4), Fraction(1, 2), Fraction(1)])
    rule = SharingRule(
        draw(st.sampled_from(["proportional", "dynamic"])), draw(shares), draw(shares)
    )
    return book, tree, buyer, zone_id, forecast, withheld, owner, per_zone, consumed, produced, rule


def _trade(case: tuple, traded: int) -> tuple[ZoneTree, MarketResult, Participants, int]:
    """Clear the book with P trading ``traded`` Wh (checked against HiGHS); P is the last."""
    book, tree, buyer, zone_id, forecast, _, owner, per_zone, consumed, produced, _ = case
    utility = book.utility
    limit = utility.retail_ticks + 1 if buyer else utility.feed_in_ticks - 1  # takes any price
    p_order = Order("P", zone_id, "buy" if buyer else "sell", traded, limit)
    full = Book(utility, book.zones, (*book.orders, p_order))
    orders = OrderArrays.from_orders(full.orders, tree)
    market = clear(full)
    assert_optimal(tree, utility, orders, market)
    p = len(consumed)
    owners = np.array([*owner, p], dtype=np.intp)
    bought, sold = matched_positions(owners, orders.is_buy, market.fills_wh, p + 1)
    zone = [*np.repeat(np.arange(tree.size), per_zone).tolist(), tree.index()[zone_id]]
    people = Participants(
        zone=np.array(zone, np.int32),
        bought_wh=bought,
        sold_wh=sold,
        consumed_wh=np.array([*consumed, forecast if buyer else 0], np.int64),
        produced_wh=np.array([*produced, 0 if buyer else forecast], np.int64),
        ids=[f"o{i}" for i in range(p)] + ["P"],
    )
    return tree, market, people, p


@settings(max_examples=300, deadline=None)
@given(withholdings())
def test_withholding_pays_only_through_the_clearing_price(case: tuple) -> None:
    """P's forecast is right. Trading it ahead earns exactly c_A x metered; withholding part of
    it earns at most c_B x metered, whatever sharing does with the rest. So withholding gains
    nothing when it does not move P's zone price (a price-taker), to the micro-unit; where it
    does (market power in a thin book), the gain is at most the price move times P's volume,
    with or without sharing, and sharing adds exactly what it saves on the withheld part."""
    book, _, buyer, zone_id, forecast, withheld = case[:6]
    rule: SharingRule = case[-1]
    utility = book.utility
    metered = -forecast if buyer else forecast
    money = {}
    for scenario, traded in (("A", forecast), ("B", forecast - withheld)):
        tree, market, people, p = _trade(case, traded)
        c = int(market.price_ticks[tree.index()[zone_id]])
        on = settle(tree, utility, market, people, rule)
        off = settle(tree, utility, market, people)
        money[scenario] = (c, _money_nano(on, p), int(on.participants.total()[p]))
        money[scenario + "off"] = (c, _money_nano(off, p), int(off.participants.total()[p]))
        shared = on.sharing
        assert shared is not None
        if scenario == "A":
            assert (people.bought_wh[p] if buyer else people.sold_wh[p]) == forecast
            assert money["A"][1] == c * metered == money["Aoff"][1]
            assert money["A"][2] == money["Aoff"][2]
        else:
            assert money["B"][1] <= c * metered
            p_in, p_out = shared.participant_prices()
            added = (
                (utility.retail_ticks - int(p_in[p])) * int(shared.shared_in_wh[p])
                if buyer
                else (int(p_out[p]) - utility.feed_in_ticks) * int(shared.shared_out_wh[p])
            )
            assert money["B"][1] - money["Boff"][1] == added >= 0
            if added:
                event("neighbours covered part of what P withheld")
    (c_a, nano_a, micro_a), (c_b, nano_b, micro_b) = money["A"], money["B"]
    assert nano_b - nano_a <= (c_b - c_a) * metered
    if c_b == c_a:
        event("withholding left the price where it was")
        assert nano_b <= nano_a and micro_b <= micro_a
    else:
        event("withholding moved the price")


def test_a_price_taker_loses_by_withholding() -> None:
    """A large seller at 0.15 sets the price; P needs 100 Wh. Buying them ahead costs
    0.15 x 100 = 15,000 micro. Buying 60 and letting neighbours cover the other 40 (the large
    seller's unsold production) costs 60 x 0.15 + 40 x 0.225 = 18,000."""
    zones = (Zone("z"),)
    money = []
    for traded in (100, 60):
        orders = (
            Order("big", "z", "sell", 5000, 150_000),
            Order("P", "z", "buy", traded, RETAIL + 1),
        )
        market = clear(Book(UTILITY, zones, orders))
        assert market.price_ticks.tolist() == [150_000]
        people = _people([0, 0], [0, traded], [traded, 0], [0, 100], [1000, 0])
        result = settle(ZoneTree.build(zones), UTILITY, market, people, SharingRule())
        money.append(int(result.participants.total()[1]))
    assert money == [-15_000, -18_000]


def test_market_power_can_pay_and_sharing_adds_to_it() -> None:
    """What is not claimed. One seller offers 1000 Wh at 0.10; P needs 1000. Bought in full,
    supply and demand meet anywhere in [0.10, 0.30] and the engine takes 0.20: P pays 200,000.
    Withholding 1 Wh leaves the seller marginal at 0.10: P pays 99,900 + 1 Wh from elsewhere,
    a gain that needs no sharing (retail: 300 micro). With sharing the seller's unsold Wh covers
    P at 0.20 instead of 0.30: sharing adds 100 micro to a gain made by moving the price."""
    zones = (Zone("z"),)
    paid = {}
    for traded in (1000, 999):
        orders = (
            Order("s", "z", "sell", 1000, 100_000),
            Order("P", "z", "buy", traded, RETAIL + 1),
        )
        market = clear(Book(UTILITY, zones, orders))
        people = _people([0, 0], [0, traded], [traded, 0], [0, 1000], [1000, 0])
        for name, rule in (("off", None), ("on", SharingRule())):
            result = settle(ZoneTree.build(zones), UTILITY, market, people, rule)
            paid[traded, name] = -int(result.participants.total()[1])
        paid[traded, "price"] = int(market.price_ticks[0])
    assert paid[1000, "price"] == 200_000 and paid[999, "price"] == 100_000
    assert paid[1000, "off"] == paid[1000, "on"] == 200_000
    assert paid[999, "off"] == 99_900 + 300
    assert paid[999, "on"] == 99_900 + 200


# --- the operator's configuration ------------------------------------------------------------

ADDRESS = "0x" + "ab" * 32


def test_sharing_is_off_by_default_and_on_gives_the_domain_rule() -> None:
    assert SharingConfig().rule() is None
    config = SharingConfig.model_validate(
        {
            "enabled": True,
            "key": "static",
            "shortfall_share": 0.25,  # as TOML reads it
            "surplus_share": "0.1",
            "static_shares": {ADDRESS: 3},
        }
    )
    rule = config.rule()
    assert rule == SharingRule("static", Fraction(1, 4), Fraction(1, 10), {ADDRESS: 3})
    rule.validate()


@pytest.mark.parametrize(
    ("fields", "where", "message"),
    [
        ({"key": "fair"}, "key", "must be one of proportional, dynamic, static, not 'fair'"),
        ({"shortfall_share": "1.5"}, "shortfall_share", "must be within [0, 1], not 1.5"),
        ({"surplus_share": -0.5}, "surplus_share", "must be within [0, 1], not -0.5"),
        ({"surplus_share": "half"}, "surplus_share", "'half' is not a decimal number"),
        ({"surplus_share": "NaN"}, "surplus_share", "must be within [0, 1], not NaN"),
        (
            {"key": "static", "static_shares": {"alice": 1}},
            "static_shares",
            "'alice' is not a participant address",
        ),
        (
            {"key": "static", "static_shares": {ADDRESS: -1}},
            "static_shares",
            "weight must be within [0, 1000000000]",
        ),
        ({"key": "static"}, "", "sharing.static_shares: the static key needs a positive weight"),
        (
            {"static_shares": {ADDRESS: 1}},
            "",
            "sharing.static_shares: apply only to key = 'static', not 'proportional'",
        ),
        ({"keys": "static"}, "keys", "Extra inputs are not permitted"),
    ],
)
def test_invalid_configuration_is_refused_naming_the_field(
    fields: dict[str, object], where: str, message: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        SharingConfig.model_validate({"enabled": True, **fields})
    (error,) = refused.value.errors()
    assert ".".join(str(part) for part in error["loc"]) == where
    assert message in error["msg"]
