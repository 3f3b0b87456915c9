"""Hand-worked books with their results computed on paper (see each docstring).

Prices in ticks (10^-6 per kWh): F = 80_000 (0.08), R = 300_000 (0.30).
Welfare in 10^-9 currency = ticks x Wh.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from grid_server.domain.market import Book, Order, OrderArrays, Utility, Zone, ZoneTree, clear

from .validity import assert_optimal

F, R = 80_000, 300_000
UTILITY = Utility(R, F)


@dataclass
class Case:
    zones: list[Zone]
    orders: list[Order]
    prices: dict[str, int]
    fills: dict[str, int]
    welfare: int
    flows: dict[str, int] = field(default_factory=dict)
    utility_buy: dict[str, int] = field(default_factory=dict)
    utility_sell: dict[str, int] = field(default_factory=dict)
    utility: Utility = UTILITY


def buy(oid: str, zone: str, wh: int, price: int) -> Order:
    return Order(oid, zone, "buy", wh, price)


def sell(oid: str, zone: str, wh: int, price: int) -> Order:
    return Order(oid, zone, "sell", wh, price)


CASES = {
    # The example: s1 (root) supplies b1 (feeder) over the link.
    # N_root = -700 on (0.10, 0.24), [-700, 800] at 0.24: only 0.24 balances.
    # feeder: b1 partly filled, so its price is b1's limit; root = that - fee.
    # welfare = 0.25*800 - 0.10*800 - 0.01*800 = 0.112.
    "issue example": Case(
        zones=[Zone("root"), Zone("feeder-1", "root", 10_000, 40_000, 40_000)],
        orders=[buy("b1", "feeder-1", 1500, 250_000), sell("s1", "root", 800, 100_000)],
        prices={"root": 240_000, "feeder-1": 250_000},
        fills={"b1": 800, "s1": 800},
        flows={"feeder-1": -800},
        welfare=112_000_000,
    ),
    # Merit order: N = -500 on (0.15, 0.20), 500 on (0.20, 0.25) so p = 0.20;
    # the marginal seller b sells 500. welfare = .25*1500 - .10*1000 - .20*500.
    "one zone, marginal seller": Case(
        zones=[Zone("z")],
        orders=[
            sell("a", "z", 1000, 100_000),
            sell("b", "z", 1000, 200_000),
            buy("c", "z", 1500, 250_000),
            buy("d", "z", 1000, 150_000),
        ],
        prices={"z": 200_000},
        fills={"a": 1000, "b": 500, "c": 1500, "d": 0},
        welfare=250_000 * 1500 - 100_000 * 1000 - 200_000 * 500,
    ),
    # Valid prices [0.10, 0.25]: the midpoint 0.175 (floor of 175000.5 below).
    "interval of prices: midpoint": Case(
        zones=[Zone("z")],
        orders=[sell("s", "z", 1000, 100_001), buy("b", "z", 1000, 250_000)],
        prices={"z": 175_000},
        fills={"s": 1000, "b": 1000},
        welfare=(250_000 - 100_001) * 1000,
    ),
    # Empty book: every price in [F, R] is valid, so (F + R) / 2.
    "empty book": Case(zones=[Zone("z")], orders=[], prices={"z": 190_000}, fills={}, welfare=0),
    # Only a seller below feed-in: the utility buys everything at F.
    "utility buys at feed-in": Case(
        zones=[Zone("z")],
        orders=[sell("s", "z", 1000, 50_000)],
        prices={"z": F},
        fills={"s": 1000},
        utility_buy={"z": 1000},
        welfare=(F - 50_000) * 1000,
    ),
    # Only a buyer above retail: the utility sells everything at R.
    "utility sells at retail": Case(
        zones=[Zone("z")],
        orders=[buy("b", "z", 2000, 400_000)],
        prices={"z": R},
        fills={"b": 2000},
        utility_sell={"z": 2000},
        welfare=(400_000 - R) * 2000,
    ),
    # Pro rata at the margin: 1000 Wh over 300:500:1000 at p = 0.20 is
    # 166.7/277.8/555.6; floors 166/277/555, remainders (x1800) 1200/1400/1000,
    # so the two leftover Wh go to s2 and s1.
    "pro rata, largest remainders": Case(
        zones=[Zone("z")],
        orders=[
            buy("b", "z", 1000, 250_000),
            sell("s1", "z", 300, 200_000),
            sell("s2", "z", 500, 200_000),
            sell("s3", "z", 1000, 200_000),
        ],
        prices={"z": 200_000},
        fills={"b": 1000, "s1": 167, "s2": 278, "s3": 555},
        welfare=50_000 * 1000,
    ),
    # Equal remainders: the leftover Wh goes to the smaller id ("a"), whatever
    # the input order.
    "ties by order id": Case(
        zones=[Zone("z")],
        orders=[
            sell("b", "z", 100, 200_000),
            sell("a", "z", 100, 200_000),
            buy("x", "z", 101, 250_000),
        ],
        prices={"z": 200_000},
        fills={"a": 51, "b": 50, "x": 101},
        welfare=50_000 * 101,
    ),
    # At p = F the seller at exactly F fills completely (own orders before the
    # utility); the utility buys the 600 Wh the buyer does not take.
    "own orders before the utility at feed-in": Case(
        zones=[Zone("z")],
        orders=[sell("s", "z", 1000, F), buy("b", "z", 400, 100_000)],
        prices={"z": F},
        fills={"s": 1000, "b": 400},
        utility_buy={"z": 600},
        welfare=100_000 * 400 - F * 1000 + F * 600,
    ),
    # Mirrored at retail: the buyer at exactly R is served in full.
    "own orders before the utility at retail": Case(
        zones=[Zone("z")],
        orders=[buy("b", "z", 1000, R), sell("s", "z", 400, 250_000)],
        prices={"z": R},
        fills={"b": 1000, "s": 400},
        utility_sell={"z": 600},
        welfare=R * 1000 - 250_000 * 400 - R * 600,
    ),
    # Two child links at their fee margin share the 1000 Wh the root buyer
    # needs in proportion to their room (600:900 -> 400:600). Root price 0.16
    # = sellers' 0.15 + fee; welfare = .25*1000 - .15*1000 - .01*1000.
    "links share pro rata to room": Case(
        zones=[Zone("r"), Zone("A", "r", 10_000), Zone("B", "r", 10_000)],
        orders=[
            buy("b", "r", 1000, 250_000),
            sell("sa", "A", 600, 150_000),
            sell("sb", "B", 900, 150_000),
        ],
        prices={"r": 160_000, "A": 150_000, "B": 150_000},
        fills={"b": 1000, "sa": 400, "sb": 600},
        flows={"A": 400, "B": 600},
        welfare=(250_000 - 150_000 - 10_000) * 1000,
    ),
    # Root at F with 2000 Wh surplus; child A's buyer at 0.09 = F + fee can
    # take 500 over the link. Local first: A gets 500, the utility buys 1500.
    # welfare = .09*500 - .05*2000 + .08*1500 - .01*500.
    "links before the utility": Case(
        zones=[Zone("r"), Zone("A", "r", 10_000)],
        orders=[sell("s", "r", 2000, 50_000), buy("b", "A", 500, 90_000)],
        prices={"r": F, "A": 90_000},
        fills={"s": 2000, "b": 500},
        flows={"A": -500},
        utility_buy={"r": 1500},
        welfare=90_000 * 500 - 50_000 * 2000 + F * 1500 - 10_000 * 500,
    ),
    # Congestion: the link carries only 300 Wh, so the child's cheap seller
    # sets its price (0.10) well below root - fee (0.27); the root buyer is
    # marginal at 0.28.
    "congested link": Case(
        zones=[Zone("r"), Zone("A", "r", 10_000, capacity_up_wh=300)],
        orders=[buy("b", "r", 1000, 280_000), sell("s", "A", 1000, 100_000)],
        prices={"r": 280_000, "A": 100_000},
        fills={"b": 300, "s": 300},
        flows={"A": 300},
        welfare=(280_000 - 100_000 - 10_000) * 300,
    ),
    # Zero capacity up: nothing trades. Root valid in [0.28, 0.30] -> 0.29;
    # child valid in [F, 0.10] (its window is open below) -> 0.09.
    "zero capacity isolates": Case(
        zones=[Zone("r"), Zone("A", "r", 10_000, capacity_up_wh=0)],
        orders=[buy("b", "r", 1000, 280_000), sell("s", "A", 1000, 100_000)],
        prices={"r": 290_000, "A": 90_000},
        fills={"b": 0, "s": 0},
        welfare=0,
    ),
    # Retail = feed-in: the utility takes the 150 Wh surplus at 0.20; the
    # seller at exactly 0.20 still fills completely.
    "retail equals feed-in": Case(
        zones=[Zone("z")],
        orders=[
            sell("s1", "z", 100, 100_000),
            buy("b", "z", 50, 300_000),
            sell("s2", "z", 100, 200_000),
        ],
        prices={"z": 200_000},
        fills={"s1": 100, "b": 50, "s2": 100},
        utility_buy={"z": 150},
        welfare=300_000 * 50 - 100_000 * 100 - 200_000 * 100 + 200_000 * 150,
        utility=Utility(200_000, 200_000),
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_hand_worked(name: str) -> None:
    case = CASES[name]
    book = Book(case.utility, tuple(case.zones), tuple(case.orders))
    result = clear(book)
    index = {z: i for i, z in enumerate(result.zone_ids)}
    assert {z: int(result.price_ticks[i]) for z, i in index.items()} == case.prices
    assert result.fill_of() == case.fills
    assert result.welfare_nano == case.welfare
    for expected, actual in (
        (case.flows, result.flow_to_parent_wh),
        (case.utility_buy, result.utility_buy_wh),
        (case.utility_sell, result.utility_sell_wh),
    ):
        assert {z: int(actual[i]) for z, i in index.items()} == {
            z: expected.get(z, 0) for z in index
        }
    tree = ZoneTree.build(book.zones)
    assert_optimal(tree, book.utility, OrderArrays.from_orders(book.orders, tree), result)
