"""Net-supply correspondences as integer step curves.

A zone's net supply N(p) (energy it would export at price p) is a
nondecreasing step function whose value jumps at order prices; at a jump the
correspondence is the whole vertical segment between the two sides. A
:class:`Curve` stores it exactly: sorted breakpoints ``points`` and the
values on the open intervals between them, ``values[i]`` on
``(points[i-1], points[i])``, so ``len(values) == len(points) + 1`` and the
set at ``points[i]`` is ``[values[i], values[i + 1]]``.

The utility's unlimited orders make a zone's curve -infinity left of the
feed-in price and +infinity right of retail; :data:`INF` stands for that.
Finite values are sums of order energies and capacities, bounded far below
:data:`INF` by ``MAX_TOTAL_ENERGY_WH``, so sums never overflow int64.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

INF = 1 << 62

I64 = NDArray[np.int64]


@dataclass(frozen=True, eq=False, slots=True)
class Curve:
    points: I64
    values: I64

    def set_at(self, price: int) -> tuple[int, int]:
        """The correspondence at ``price``: the segment from its left to its right value."""
        left = int(np.searchsorted(self.points, price, side="left"))
        right = int(np.searchsorted(self.points, price, side="right"))
        return int(self.values[left]), int(self.values[right])

    def level_set(self, x: int) -> tuple[int, int]:
        """The closed price interval ``{p : x in N(p)}``.

        Needs a curve that runs from below ``x`` to above it (a zone's curve
        with the utility, for any finite ``x``).
        """
        first = int(np.searchsorted(self.values[1:], x, side="left"))
        last = int(np.searchsorted(self.values[:-1], x, side="right")) - 1
        return int(self.points[first]), int(self.points[last])


def constant(value: int) -> Curve:
    return Curve(np.empty(0, np.int64), np.array([value], dtype=np.int64))


def own_orders(prices: I64, energy_at_price: I64, total_buy: int) -> Curve:
    """Net supply of a zone's own orders.

    ``energy_at_price`` sums buys and sells at each price: moving right past
    a price, its sellers start selling and its buyers stop buying, and both
    raise the net supply by their energy. Left of every price all buyers buy.
    """
    values = np.empty(len(prices) + 1, dtype=np.int64)
    values[0] = 0
    np.cumsum(energy_at_price, out=values[1:])
    values -= total_buy
    return Curve(prices, values)


def prune(curve: Curve) -> Curve:
    """Drop breakpoints where the curve does not jump."""
    keep = curve.values[:-1] != curve.values[1:]
    if keep.all():
        return curve
    return Curve(curve.points[keep], np.concatenate([curve.values[:1], curve.values[1:][keep]]))


def crop(curve: Curve, lo: int, hi: int) -> Curve:
    """Keep the breakpoints in ``[lo, hi]``; values just outside stay as the end values."""
    start = int(np.searchsorted(curve.points, lo, side="left"))
    stop = int(np.searchsorted(curve.points, hi, side="right"))
    return Curve(curve.points[start:stop], curve.values[start : stop + 1])


def add(curves: Sequence[Curve]) -> Curve:
    """Pointwise sum (the Minkowski sum of the segments at every price) of finite curves.

    Adds the jumps rather than evaluating every curve at every breakpoint:
    one sort of all breakpoints, whose runs are already sorted.
    """
    points = np.concatenate([c.points for c in curves])
    jumps = np.concatenate([np.diff(c.values) for c in curves])
    order = np.argsort(points, kind="stable")
    points, jumps = points[order], jumps[order]
    if len(points):
        first = np.flatnonzero(np.concatenate(([True], points[1:] != points[:-1])))
        points, jumps = points[first], np.add.reduceat(jumps, first)
    values = np.empty(len(points) + 1, dtype=np.int64)
    values[0] = sum(int(c.values[0]) for c in curves)
    np.cumsum(jumps, out=values[1:])
    values[1:] += values[0]
    return prune(Curve(points, values))


def link_export(child: Curve, *, fee: int, cap_up: int, cap_down: int, lo: int, hi: int) -> Curve:
    """What a child zone exports to its parent, as a function of the parent's price.

    At parent price q the child sells upward what it would export at
    q - fee, up to ``cap_up``, and buys downward what it would import at
    q + fee, up to ``cap_down``:
    E(q) = clip(N(q - fee), 0, cap_up) + clip(N(q + fee), -cap_down, 0).
    Both parts are monotone, so the sum is exact including the segments.
    Cropped to the parent's price domain ``[lo, hi]``.
    """
    up = prune(Curve(child.points + fee, np.clip(child.values, 0, cap_up)))
    down = prune(Curve(child.points - fee, np.clip(child.values, -cap_down, 0)))
    return crop(add([up, down]), lo, hi)


def zone_curve(own: Curve, exports: Sequence[Curve], feed_in: int, retail: int) -> Curve:
    """A zone's net supply: its orders, its children's exports and the utility.

    Breakpoints are restricted to ``[feed_in, retail]`` (every zone price lies
    there); the utility makes the value -INF left of feed-in and +INF right
    of retail, and both prices are always breakpoints.
    """
    finite = crop(add([own, *exports]), feed_in, retail)
    points, values = finite.points, finite.values
    if not len(points) or points[0] != feed_in:
        points = np.concatenate(([feed_in], points))
        values = np.concatenate((values[:1], values))
    if points[-1] != retail:
        points = np.concatenate((points, [retail]))
        values = np.concatenate((values, values[-1:]))
    values = values.copy()
    values[0], values[-1] = -INF, INF
    return prune(Curve(points, values))
