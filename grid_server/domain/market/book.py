"""The order book of one delivery interval: zones, the utility and orders.

Two levels:

* the object API (:class:`Zone`, :class:`Utility`, :class:`Order`,
  :class:`Book`) for callers that hold a few thousand orders;
* the array level (:class:`ZoneTree`, :class:`OrderArrays`) that the
  clearing engine works on, so a million orders never become Python objects.

Units: prices and fees are integer ticks (10^-6 currency per kWh, see
``p2p_energy_client.units``), energy and capacities integer Wh.
Every validation error is a :class:`BookError` naming the offending item and
field the way the JSON book does (``orders[3].price``), so the same message
serves the API and ``p2p-grid clear``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np
from numpy.typing import NDArray

from p2p_energy_client.units import MAX_PRICE_TICKS, format_price

Side = Literal["buy", "sell"]

# Bounds that keep every intermediate of the integer engine inside int64:
# curve values are sums of energies, and prices are shifted by fees.
MAX_TOTAL_ENERGY_WH = 10**15  # per book; far above any neighbourhood's interval


class BookError(ValueError):
    """An order book that cannot be cleared, with the item and field at fault."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


@dataclass(frozen=True, slots=True)
class Zone:
    """A zone of the grid; every zone but the root hangs under a parent.

    ``fee_ticks`` is paid per kWh crossing the link to the parent (either
    direction); a capacity of ``None`` means that direction is unlimited.
    """

    id: str
    parent: str | None = None
    fee_ticks: int = 0
    capacity_up_wh: int | None = None
    capacity_down_wh: int | None = None


@dataclass(frozen=True, slots=True)
class Utility:
    """The supplier behind the grid connection, present in every zone, unlimited."""

    retail_ticks: int
    feed_in_ticks: int

    def validate(self) -> None:
        for name, value in (
            ("retail_price", self.retail_ticks),
            ("feed_in_price", self.feed_in_ticks),
        ):
            if abs(value) > MAX_PRICE_TICKS:
                raise BookError(f"utility.{name}", "is out of range")
        if self.retail_ticks < self.feed_in_ticks:
            raise BookError(
                "utility.retail_price",
                f"{format_price(self.retail_ticks)} is below the feed-in price "
                f"{format_price(self.feed_in_ticks)}",
            )


@dataclass(frozen=True, slots=True)
class Order:
    id: str
    zone: str
    side: Side
    energy_wh: int
    price_ticks: int


@dataclass(frozen=True, slots=True)
class Book:
    utility: Utility
    zones: tuple[Zone, ...]
    orders: tuple[Order, ...]


def as_ints(values: NDArray[Any]) -> list[int]:
    """An integer array as Python ints (``tolist`` is exact but untyped)."""
    return cast(list[int], values.tolist())


UNLIMITED = np.iinfo(np.int64).max
"""Capacity value of an unlimited link direction in :class:`ZoneTree` arrays."""


@dataclass(frozen=True, eq=False)
class ZoneTree:
    """Zones as arrays, validated to form one tree.

    ``topdown`` lists zone indices root first, every parent before its
    children (breadth first, children in input order), so reversing it is a
    valid bottom-up order. ``children[z]`` is sorted by zone id, which is the
    order ties between links are broken in.
    """

    ids: tuple[str, ...]
    parent: NDArray[np.int32]  # -1 for the root
    fee_ticks: NDArray[np.int64]
    cap_up_wh: NDArray[np.int64]  # UNLIMITED when the direction has no limit
    cap_down_wh: NDArray[np.int64]
    topdown: NDArray[np.int32]
    children: tuple[tuple[int, ...], ...]

    @property
    def size(self) -> int:
        return len(self.ids)

    @property
    def root(self) -> int:
        return int(self.topdown[0])

    def index(self) -> dict[str, int]:
        return {zone_id: i for i, zone_id in enumerate(self.ids)}

    @classmethod
    def build(cls, zones: Sequence[Zone]) -> ZoneTree:
        # Each step needs the one before: parents are resolved by id, and the
        # walk that finds cycles starts from the one root.
        position = _positions_by_id(zones)
        parent, root = _parent_links(zones, position)
        topdown, kids = _walk_from_root(zones, parent, root)
        return cls(
            ids=tuple(zone.id for zone in zones),
            parent=parent,
            fee_ticks=np.array([zone.fee_ticks for zone in zones], dtype=np.int64),
            cap_up_wh=_capacities([zone.capacity_up_wh for zone in zones]),
            cap_down_wh=_capacities([zone.capacity_down_wh for zone in zones]),
            topdown=np.array(topdown, dtype=np.int32),
            children=tuple(tuple(sorted(k, key=lambda c: zones[c].id)) for k in kids),
        )


def _positions_by_id(zones: Sequence[Zone]) -> dict[str, int]:
    """Each zone's index by its id, once there is a zone and every id is present and unique."""
    if not zones:
        raise BookError("zones", "a grid needs at least one zone")
    position: dict[str, int] = {}
    for i, zone in enumerate(zones):
        if not isinstance(zone.id, str) or not zone.id:
            raise BookError(f"zones[{i}].id", "must be a non-empty string")
        if zone.id in position:
            raise BookError(
                f"zones[{i}].id",
                f"duplicate zone id {zone.id!r} (also zones[{position[zone.id]}])",
            )
        position[zone.id] = i
    return position


def _parent_links(zones: Sequence[Zone], position: dict[str, int]) -> tuple[NDArray[np.int32], int]:
    """Each zone's parent index (-1 for the root) and the root, once exactly one zone is root.

    Every link is checked here too (fee and capacities, none on the root).
    Parents being known does not yet make a tree: :func:`_walk_from_root`
    finds the cycles.
    """
    parent = np.full(len(zones), -1, dtype=np.int32)
    root = -1
    for i, zone in enumerate(zones):
        _check_link(i, zone)
        if zone.parent is None:
            if root >= 0:
                raise BookError(
                    f"zones[{i}].parent",
                    f"missing, but {zones[root].id!r} (zones[{root}]) is already the root; "
                    "a grid has exactly one root zone",
                )
            root = i
        elif zone.parent not in position:
            raise BookError(f"zones[{i}].parent", f"unknown zone {zone.parent!r}")
        else:
            parent[i] = position[zone.parent]
    if root < 0:
        raise BookError("zones", "no root zone: every zone has a parent, so they form a cycle")
    return parent, root


def _walk_from_root(
    zones: Sequence[Zone], parent: NDArray[np.int32], root: int
) -> tuple[list[int], list[list[int]]]:
    """Zones breadth first from the root, and each zone's children (in input order).

    A zone the walk does not reach hangs on a cycle of parents: reported
    with the cycle spelled out, at the first such zone.
    """
    kids: list[list[int]] = [[] for _ in zones]
    for i in range(len(zones)):
        if parent[i] >= 0:
            kids[parent[i]].append(i)
    topdown = [root]
    for z in topdown:  # grows while iterating: breadth-first walk
        topdown.extend(kids[z])
    if len(topdown) < len(zones):
        reached = set(topdown)
        stray = next(i for i in range(len(zones)) if i not in reached)
        raise BookError(f"zones[{stray}].parent", f"{_cycle_text(zones, parent, stray)} is a cycle")
    return topdown, kids


def _check_link(i: int, zone: Zone) -> None:
    if zone.parent is None:
        for field, present in (
            ("fee", zone.fee_ticks != 0),
            ("capacity_up_wh", zone.capacity_up_wh is not None),
            ("capacity_down_wh", zone.capacity_down_wh is not None),
        ):
            if present:
                raise BookError(
                    f"zones[{i}].{field}", "the root zone has no parent link to carry it"
                )
        return
    if zone.fee_ticks < 0:
        raise BookError(f"zones[{i}].fee", f"must not be negative ({format_price(zone.fee_ticks)})")
    if zone.fee_ticks > MAX_PRICE_TICKS:
        raise BookError(f"zones[{i}].fee", "is out of range")
    for field, cap in (
        ("capacity_up_wh", zone.capacity_up_wh),
        ("capacity_down_wh", zone.capacity_down_wh),
    ):
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 0):
            raise BookError(f"zones[{i}].{field}", f"must be a non-negative integer, not {cap!r}")


def _capacities(values: list[int | None]) -> NDArray[np.int64]:
    return np.array([UNLIMITED if v is None else min(v, UNLIMITED) for v in values], dtype=np.int64)


def _cycle_text(zones: Sequence[Zone], parent: NDArray[np.int32], start: int) -> str:
    seen: list[int] = []
    z = start
    while z not in seen:
        seen.append(z)
        z = int(parent[z])
    cycle = [*seen[seen.index(z) :], z]
    return " -> ".join(repr(zones[c].id) for c in cycle)


@dataclass(frozen=True, eq=False)
class OrderArrays:
    """Orders as parallel arrays, the engine's input.

    ``ids`` is only read to break ties between orders at the same price (in
    lexicographic id order); without ids ties break by position, which makes
    the result depend on the input order.
    """

    zone: NDArray[np.int32]
    is_buy: NDArray[np.bool_]
    energy_wh: NDArray[np.int64]
    price_ticks: NDArray[np.int64]
    ids: Sequence[str] | None = None

    def __len__(self) -> int:
        return len(self.energy_wh)

    @classmethod
    def from_orders(cls, orders: Sequence[Order], tree: ZoneTree) -> OrderArrays:
        index = tree.index()
        seen: dict[str, int] = {}
        for i, order in enumerate(orders):
            if not isinstance(order.id, str) or not order.id:
                raise BookError(f"orders[{i}].id", "must be a non-empty string")
            if order.id in seen:
                raise BookError(
                    f"orders[{i}].id",
                    f"duplicate order id {order.id!r} (also orders[{seen[order.id]}])",
                )
            seen[order.id] = i
            if order.zone not in index:
                raise BookError(f"orders[{i}].zone", f"unknown zone {order.zone!r}")
            if order.side not in ("buy", "sell"):
                raise BookError(f"orders[{i}].side", f"must be 'buy' or 'sell', not {order.side!r}")
            if isinstance(order.energy_wh, bool) or not isinstance(order.energy_wh, int):
                raise BookError(f"orders[{i}].energy_wh", "must be an integer number of Wh")
            if order.energy_wh < 0:
                raise BookError(
                    f"orders[{i}].energy_wh", f"must not be negative ({order.energy_wh})"
                )
            if abs(order.price_ticks) > MAX_PRICE_TICKS:
                raise BookError(f"orders[{i}].price", "is out of range")
        n = len(orders)
        return cls(
            zone=np.fromiter((index[o.zone] for o in orders), dtype=np.int32, count=n),
            is_buy=np.fromiter((o.side == "buy" for o in orders), dtype=np.bool_, count=n),
            energy_wh=np.fromiter((o.energy_wh for o in orders), dtype=np.int64, count=n),
            price_ticks=np.fromiter((o.price_ticks for o in orders), dtype=np.int64, count=n),
            ids=tuple(o.id for o in orders),
        )

    def validate(self, tree: ZoneTree) -> None:
        """Vectorised checks for arrays that did not come through :meth:`from_orders`."""
        n = len(self.energy_wh)
        if not (len(self.zone) == len(self.is_buy) == len(self.price_ticks) == n):
            raise BookError("orders", "arrays differ in length")
        if self.ids is not None and len(self.ids) != n:
            raise BookError("orders", "ids differ in length from the arrays")
        if n == 0:
            return
        checks = (
            ("zone", (self.zone < 0) | (self.zone >= tree.size), "unknown zone index"),
            ("energy_wh", self.energy_wh < 0, "must not be negative"),
            ("price", np.abs(self.price_ticks) > MAX_PRICE_TICKS, "is out of range"),
        )
        for field, bad, message in checks:
            if bad.any():
                raise BookError(f"orders[{int(np.argmax(bad))}].{field}", message)
        total = int(self.energy_wh.sum(dtype=np.float64))
        if total > MAX_TOTAL_ENERGY_WH:
            raise BookError("orders", f"total energy above {MAX_TOTAL_ENERGY_WH} Wh")
