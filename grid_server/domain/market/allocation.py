"""Integer pro-rata split with largest remainders and deterministic ties."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import numpy as np
from numpy.typing import NDArray

I64 = NDArray[np.int64]
TieOrder = Callable[[list[int]], list[int]]
"""Sorts positions of tied items into the order in which they win a unit."""

_SAFE = 1 << 62


def by_position(items: list[int]) -> list[int]:
    return sorted(items)


def prorata(total: int, weights: I64, tie_order: TieOrder = by_position) -> I64:
    """Split ``total`` (0 <= total <= sum(weights)) in proportion to ``weights``.

    Everyone gets the floor of its exact share; the units left over go one
    each to the largest remainders, and among equal remainders to the items
    ``tie_order`` puts first. The result is integral, never exceeds a weight
    and sums to ``total``.
    """
    weight_sum = int(weights.sum())
    if not 0 <= total <= weight_sum:
        raise ValueError(f"cannot split {total} over weights summing to {weight_sum}")
    if total == weight_sum:
        return weights.copy()
    if total == 0:
        return np.zeros_like(weights)
    if len(weights) and total * int(weights.max()) < _SAFE:
        scaled = weights * total
        shares = scaled // weight_sum
        remainders = scaled % weight_sum
    else:
        # The products overflow int64; shares and remainders never do.
        exact = [int(w) * total for w in weights]
        shares = np.array([e // weight_sum for e in exact], dtype=np.int64)
        remainders = np.array([e % weight_sum for e in exact], dtype=np.int64)
    missing = total - int(shares.sum())
    if missing:
        shares[_largest(remainders, missing, tie_order)] += 1
    return shares


def _largest(remainders: I64, count: int, tie_order: TieOrder) -> list[int]:
    """Positions of the ``count`` largest remainders, ties resolved by ``tie_order``."""
    threshold = np.partition(remainders, len(remainders) - count)[len(remainders) - count]
    above = cast(list[int], np.flatnonzero(remainders > threshold).tolist())
    tied = cast(list[int], np.flatnonzero(remainders == threshold).tolist())
    return above + tie_order(tied)[: count - len(above)]
