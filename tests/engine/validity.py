"""Independent checks that a clearing result is optimal: a feasible primal
with prices that form a valid dual of the welfare programme.

Written against the programme's definition only (not the engine's
internals), in Python integers.
"""

from __future__ import annotations

import math

import numpy as np

from grid_server.domain.market import UNLIMITED, MarketResult, OrderArrays, Utility, ZoneTree
from grid_server.domain.market.reference import solve_reference


def assert_valid(
    tree: ZoneTree, utility: Utility, orders: OrderArrays, result: MarketResult
) -> None:
    n = tree.size
    price = [int(p) for p in result.price_ticks]
    fills = result.fills_wh
    assert fills.dtype == np.int64 and result.price_ticks.dtype == np.int64
    buy_side = [0] * n
    sell_side = [0] * n
    for i in range(len(orders)):
        z, qty, limit = int(orders.zone[i]), int(orders.energy_wh[i]), int(orders.price_ticks[i])
        fill = int(fills[i])
        assert 0 <= fill <= qty, f"order {i}: fill {fill} outside [0, {qty}]"
        p = price[z]
        better = limit > p if orders.is_buy[i] else limit < p
        worse = limit < p if orders.is_buy[i] else limit > p
        if better:
            assert fill == qty, f"order {i} is in the money at {p} but fills {fill}/{qty}"
        if worse:
            assert fill == 0, f"order {i} is out of the money at {p} but fills {fill}"
        if orders.is_buy[i]:
            buy_side[z] += fill
        else:
            sell_side[z] += fill
    for z in range(n):
        ub, us = int(result.utility_buy_wh[z]), int(result.utility_sell_wh[z])
        assert ub >= 0 and us >= 0
        assert utility.feed_in_ticks <= price[z] <= utility.retail_ticks, (
            f"zone {z} price {price[z]}"
        )
        assert us == 0 or price[z] == utility.retail_ticks, f"zone {z}: utility sells below retail"
        assert ub == 0 or price[z] == utility.feed_in_ticks, f"zone {z}: utility buys above feed-in"
    inflow = [0] * n  # net energy arriving over links
    for z in range(n):
        flow = int(result.flow_to_parent_wh[z])
        parent = int(tree.parent[z])
        if parent < 0:
            assert flow == 0
            continue
        inflow[z] -= flow
        inflow[parent] += flow
        fee, up, down = int(tree.fee_ticks[z]), int(tree.cap_up_wh[z]), int(tree.cap_down_wh[z])
        assert -down <= flow <= up, f"link {z}: flow {flow} beyond capacity"
        gap = price[parent] - price[z]
        if flow > 0:
            assert gap >= fee, f"link {z}: flows up though the price gap {gap} < fee {fee}"
        if flow < 0:
            assert -gap >= fee, f"link {z}: flows down though the price gap {-gap} < fee {fee}"
        if gap > fee:
            assert up != UNLIMITED and flow == up, f"link {z}: gap {gap} > fee but not full up"
        if -gap > fee:
            assert down != UNLIMITED and flow == -down, (
                f"link {z}: gap {-gap} > fee but not full down"
            )
    for z in range(n):
        supply = sell_side[z] + int(result.utility_sell_wh[z]) + inflow[z]
        demand = buy_side[z] + int(result.utility_buy_wh[z])
        assert supply == demand, f"zone {z} does not balance: {supply} != {demand}"
    assert result.welfare_nano == welfare_of(tree, utility, orders, result)


def welfare_of(tree: ZoneTree, utility: Utility, orders: OrderArrays, result: MarketResult) -> int:
    total = 0
    for i in range(len(orders)):
        value = int(orders.price_ticks[i]) * int(result.fills_wh[i])
        total += value if orders.is_buy[i] else -value
    total += utility.feed_in_ticks * int(result.utility_buy_wh.sum())
    total -= utility.retail_ticks * int(result.utility_sell_wh.sum())
    total -= sum(
        int(f) * abs(int(x)) for f, x in zip(tree.fee_ticks, result.flow_to_parent_wh, strict=True)
    )
    return total


def assert_optimal(
    tree: ZoneTree, utility: Utility, orders: OrderArrays, result: MarketResult
) -> None:
    """Valid dual and the same welfare as HiGHS (relative 1e-9)."""
    assert_valid(tree, utility, orders, result)
    reference = solve_reference(tree, utility, orders)
    assert math.isclose(result.welfare_nano, reference.welfare * 1e9, rel_tol=1e-9, abs_tol=1e-3), (
        result.welfare_nano,
        reference.welfare * 1e9,
    )
