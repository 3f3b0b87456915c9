"""The welfare linear programme solved by HiGHS: the reference for the fast path.

Floats live only here. What it is for:

* tests and ``p2p-grid bench clearing --check`` compare the fast path's
  exact welfare with this optimum;
* it is the fallback for zone networks the fast path does not cover. The
  fast path covers every tree, and :class:`~.book.ZoneTree` admits only
  trees, so today nothing falls back; this formulation takes the parent
  array as plain links and does not need it to be a tree (a forest, or a
  meshed grid with a link list, solves the same way).

Variables: each order's fill in [0, energy], the utility's purchase and sale
in every zone (>= 0, unbounded), each link's upward and downward flow in
[0, capacity]. Objective (maximised): buy price x fill - sell price x fill +
feed-in x utility purchase - retail x utility sale - fee x (up + down).
One equality per zone: supply = demand.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.optimize
import scipy.sparse
from numpy.typing import NDArray

from .book import UNLIMITED, OrderArrays, Utility, ZoneTree

_NANO_PER_UNIT = 1e9
_SIMPLEX_UP_TO = 20_000  # variables


class ReferenceError(RuntimeError):
    """HiGHS did not report an optimum."""


@dataclass(frozen=True, eq=False)
class ReferenceSolution:
    welfare: float  # currency units (multiply by 1e9 to compare with welfare_nano)
    fills_wh: NDArray[np.float64]
    utility_net_wh: NDArray[np.float64]  # sold into the zone minus bought from it
    flow_to_parent_wh: NDArray[np.float64]
    zone_price_ticks: NDArray[np.float64]  # HiGHS's duals of the zone balances
    seconds: float


def solve_reference(tree: ZoneTree, utility: Utility, orders: OrderArrays) -> ReferenceSolution:
    n_orders, n_zones = len(orders), tree.size
    links = np.flatnonzero(tree.parent >= 0)
    n_links = len(links)
    # Column blocks: orders | utility buys | utility sells | links up | links down.
    o_util_buy = n_orders
    o_util_sell = o_util_buy + n_zones
    o_up = o_util_sell + n_zones
    o_down = o_up + n_links
    n_vars = o_down + n_links

    price = orders.price_ticks.astype(np.float64)
    gain = np.concatenate(
        [
            np.where(orders.is_buy, price, -price),
            np.full(n_zones, float(utility.feed_in_ticks)),
            np.full(n_zones, -float(utility.retail_ticks)),
            -tree.fee_ticks[links].astype(np.float64),
            -tree.fee_ticks[links].astype(np.float64),
        ]
    )
    # HiGHS's tolerances are absolute: objective coefficients of order one
    # keep them meaningful whatever the price level.
    scale = float(np.abs(gain).max()) if len(gain) and np.abs(gain).max() > 0 else 1.0
    # Row z: supply (sells, utility sale, inflows) - demand (buys, utility purchase, outflows).
    zones = np.arange(n_zones)
    parents = tree.parent[links].astype(np.int64)
    rows = np.concatenate([orders.zone, zones, zones, links, parents, links, parents])
    cols = np.concatenate(
        [
            np.arange(n_orders),
            o_util_buy + zones,
            o_util_sell + zones,
            o_up + np.arange(n_links),
            o_up + np.arange(n_links),
            o_down + np.arange(n_links),
            o_down + np.arange(n_links),
        ]
    )
    ones = np.ones(n_links)
    coef = np.concatenate(
        [
            np.where(orders.is_buy, -1.0, 1.0),
            -np.ones(n_zones),
            np.ones(n_zones),
            -ones,
            ones,
            ones,
            -ones,
        ]
    )
    balance = scipy.sparse.csr_array((coef, (rows, cols)), shape=(n_zones, n_vars))
    upper = np.concatenate(
        [
            orders.energy_wh.astype(np.float64),
            np.full(2 * n_zones, np.inf),
            _capacity(tree.cap_up_wh[links]),
            _capacity(tree.cap_down_wh[links]),
        ]
    )
    started = time.perf_counter()
    result = scipy.optimize.linprog(
        -gain / scale,
        A_eq=balance,
        b_eq=np.zeros(n_zones),
        bounds=np.column_stack([np.zeros(n_vars), upper]),
        # Presolve and the dual simplex both scale badly on the one-row
        # programme of a single zone (10^5 orders: 150 s and 6 s); the
        # interior point method with crossover takes under a second.
        method="highs-ds" if n_vars < _SIMPLEX_UP_TO else "highs-ipm",
        options={"presolve": False},
    )
    seconds = time.perf_counter() - started
    if result.status != 0:
        raise ReferenceError(f"HiGHS: {result.message}")
    x = result.x
    flow = np.zeros(n_zones)
    flow[links] = x[o_up:o_down] - x[o_down:]
    return ReferenceSolution(
        welfare=-float(result.fun) * scale / _NANO_PER_UNIT,
        fills_wh=x[:n_orders],
        utility_net_wh=x[o_util_sell:o_up] - x[o_util_buy:o_util_sell],
        flow_to_parent_wh=flow,
        zone_price_ticks=np.asarray(result.eqlin.marginals) * scale,
        seconds=seconds,
    )


def _capacity(caps: NDArray[np.int64]) -> NDArray[np.float64]:
    return np.where(caps == UNLIMITED, np.inf, caps.astype(np.float64))
