"""Reproducible random order books for benchmarks and tests.

Shaped like a neighbourhood interval: retail 0.30 and feed-in 0.08 per kWh,
households buying 0.1-10 kWh... scaled to a 15-minute interval (tens of Wh
to a few kWh), limit prices at full tick resolution spread around the
middle of the band with tails beyond both utility prices, zones in a random
tree (each new zone under a uniformly chosen earlier one), link fees up to
0.02 per kWh (a fifth of them free) and capacities that often bind.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import overload

import numpy as np
from numpy.typing import NDArray

from .book import UNLIMITED, OrderArrays, Utility, ZoneTree

RETAIL_TICKS = 300_000
FEED_IN_TICKS = 80_000


class OrderIds(Sequence[str]):
    """Ids ``o0000000``, ``o0000001``, ... made on demand: the engine reads only a few."""

    def __init__(self, count: int) -> None:
        self._count = count

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...
    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._count))]
        if not -self._count <= index < self._count:
            raise IndexError(index)
        return f"o{index % self._count:07d}"


def random_tree(rng: np.random.Generator, n_zones: int, zone_energy: NDArray[np.int64]) -> ZoneTree:
    """A random tree; capacities are drawn relative to each subtree's energy."""
    parent = np.full(n_zones, -1, dtype=np.int32)
    for z in range(1, n_zones):
        parent[z] = rng.integers(0, z)
    subtree = zone_energy.copy()
    for z in range(n_zones - 1, 0, -1):  # children have larger indices than parents
        subtree[parent[z]] += subtree[z]
    fee = rng.integers(0, 20_001, n_zones)
    fee[rng.random(n_zones) < 0.2] = 0
    cap_up, cap_down = (_capacities(rng, subtree) for _ in range(2))
    fee[0] = 0
    cap_up[0] = cap_down[0] = UNLIMITED
    children: list[list[int]] = [[] for _ in range(n_zones)]
    for z in range(1, n_zones):
        children[parent[z]].append(z)
    ids = tuple(f"z{z:04d}" for z in range(n_zones))
    return ZoneTree(
        ids=ids,
        parent=parent,
        fee_ticks=fee.astype(np.int64),
        cap_up_wh=cap_up,
        cap_down_wh=cap_down,
        topdown=_breadth_first(children),
        children=tuple(tuple(sorted(k, key=ids.__getitem__)) for k in children),
    )


def _capacities(rng: np.random.Generator, subtree_energy: NDArray[np.int64]) -> NDArray[np.int64]:
    caps = (subtree_energy * rng.uniform(0.02, 0.4, len(subtree_energy))).astype(np.int64)
    caps[rng.random(len(caps)) < 0.15] = UNLIMITED
    return caps


def _breadth_first(children: list[list[int]]) -> NDArray[np.int32]:
    order = [0]
    for z in order:
        order.extend(children[z])
    return np.array(order, dtype=np.int32)


def random_book(n_orders: int, n_zones: int, seed: int) -> tuple[ZoneTree, Utility, OrderArrays]:
    rng = np.random.default_rng(seed)
    is_buy = rng.random(n_orders) < 0.5
    energy = np.maximum(rng.lognormal(np.log(600), 0.9, n_orders), 1).astype(np.int64)
    mean = np.where(is_buy, 210_000, 170_000)
    price = np.rint(rng.normal(mean, 60_000)).astype(np.int64)
    zone = rng.integers(0, n_zones, n_orders).astype(np.int32)
    zone_energy = np.bincount(zone, weights=energy, minlength=n_zones).astype(np.int64)
    tree = random_tree(rng, n_zones, zone_energy)
    orders = OrderArrays(
        zone=zone, is_buy=is_buy, energy_wh=energy, price_ticks=price, ids=OrderIds(n_orders)
    )
    return tree, Utility(RETAIL_TICKS, FEED_IN_TICKS), orders
