"""The rules for a participant's order book in one interval: its size and its capacity.

A participant may not offer more than its declared sources can deliver in
the interval, nor bid for more than its meters (or, without ratings, a
household) can take: everything the grid accepts can be cleared and settled.
Both totals are of the whole book as it will stand (kept, replaced and new
orders); an error names the first newly placed order of the offending side.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Final, Protocol

from p2p_energy_client.protocol import ErrorCode, ProtocolError, Side
from p2p_energy_client.units import format_utc

from .assets import AssetLimits, AssetRow, check_approved
from .schedule import Schedule

MAX_ORDERS_PER_BOOK: Final = 200


class BookOrder(Protocol):
    @property
    def side(self) -> str: ...

    @property
    def energy_wh(self) -> int: ...


def check_book_size(book: Mapping[str, BookOrder]) -> None:
    if len(book) > MAX_ORDERS_PER_BOOK:
        raise ProtocolError(
            ErrorCode.INVALID_FIELD,
            f"payload.place: at most {MAX_ORDERS_PER_BOOK} orders per participant and interval",
            "payload.place",
        )


def check_order_capacity(
    book: Mapping[str, BookOrder],
    placed_index: Mapping[str, int],
    *,
    assets: Sequence[AssetRow],
    interval: datetime,
    limits: AssetLimits,
) -> None:
    """Sells within the sources' capacity, buys within the meters' (see the module doc).

    ``placed_index``: order id → its index in ``payload.place``, for the orders
    this envelope places.
    """
    schedule = limits.schedule
    end = interval + schedule.length
    # Sources and meters as they will stand then: declared now and not retired.
    live = [r for r in assets if r.overlaps(interval, end) and r.valid_until is None]
    sells = sum(o.energy_wh for o in book.values() if o.side == Side.SELL)
    buys = sum(o.energy_wh for o in book.values() if o.side == Side.BUY)

    def first_placed(side: Side) -> str:
        """The first order of ``side`` this envelope places (named in errors only)."""
        ids = [oid for oid, o in book.items() if o.side == side and oid in placed_index]
        index = min((placed_index[oid] for oid in ids), default=0)
        return f"payload.place[{index}]"

    if sells:
        sources = [r for r in live if r.category == "source"]
        _check_waiting(sources, limits, lambda: first_placed(Side.SELL))
        # Within what the operator approved (which may be less than declared).
        powers = [limits.approval_of(r).power_w or 0 for r in sources]
        _check_sells(sells, powers, interval, schedule, lambda: first_placed(Side.SELL))
    if buys:
        meters = [r for r in live if r.category == "meter"]
        _check_waiting(meters, limits, lambda: first_placed(Side.BUY))
        _check_buys(buys, meters, limits, lambda: first_placed(Side.BUY))


def _check_waiting(
    assets: list[AssetRow], limits: AssetLimits, first_placed: Callable[[], str]
) -> None:
    """Orders of a side whose assets wait for the operator (or were refused) are refused.

    An order book is not per asset, so an order on a side with an unapproved
    asset could be backed by it: the household gets the reason instead.
    """
    for row in assets:
        check_approved(limits.approval_of(row), f"{first_placed()}.side")


def _check_sells(
    sells: int,
    source_powers_w: list[int],
    interval: datetime,
    schedule: Schedule,
    first_placed: Callable[[], str],
) -> None:
    if not source_powers_w:
        first = first_placed()
        raise ProtocolError(
            ErrorCode.NO_SOURCES,
            f"{first}: selling needs a declared source valid at {format_utc(interval)}",
            f"{first}.side",
        )
    limit = schedule.max_energy_wh(sum(source_powers_w))
    if sells > limit:
        field = f"{first_placed()}.energy_wh"
        raise ProtocolError(
            ErrorCode.OVER_CAPACITY,
            f"{field}: sell orders total {sells} Wh; the sources (as approved) can deliver "
            f"{limit} Wh in {schedule.interval_minutes} minutes",
            field,
        )


def _check_buys(
    buys: int,
    meters: list[AssetRow],
    limits: AssetLimits,
    first_placed: Callable[[], str],
) -> None:
    schedule = limits.schedule
    powers = [r.rated_power_w for r in meters]
    if meters and all(p is not None for p in powers):
        limit = schedule.max_energy_wh(sum(p or 0 for p in powers))
        what = "the declared meters can take"
    else:
        limit = schedule.max_energy_wh(limits.household_max_power_w)
        what = "a household may buy"
    if buys > limit:
        field = f"{first_placed()}.energy_wh"
        raise ProtocolError(
            ErrorCode.OVER_CAPACITY,
            f"{field}: buy orders total {buys} Wh; {what} {limit} Wh in "
            f"{schedule.interval_minutes} minutes",
            field,
        )
