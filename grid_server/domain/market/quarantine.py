"""Clearing that one bad order cannot stop: what still fails is set aside, the rest clears.

Ingest enforces the engine's own bounds, so every order the API accepts can
be cleared (tests/engine/test_bounds.py). Orders can still reach a book that
the engine refuses: stored by an older version with looser rules, written by
hand into the database, or meeting an engine bug. One such order must not
stall the whole grid (nothing cleared, settled or billed while the cycle
retries). :func:`clear_isolating` clears the book; if that fails it clears
each order alone with the same utility and zones, sets aside (quarantines)
those that fail alone and clears the rest. If the rest still fails, the
failure lies in how orders combine (a total beyond the engine's range): the
order that the longest clearing prefix of the book cannot take is set aside,
until the rest clears. If the utility and zones alone cannot be cleared,
they are wrong (configuration, not an order): nothing is set aside and the
error is raised for the operator.
"""

from __future__ import annotations

import contextlib
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from .book import Book
from .clearing import MarketResult, clear
from .self_trade import clear_without_self_trades


@dataclass(frozen=True, slots=True)
class Isolated:
    """The result for the kept orders and why each set-aside order was set aside.

    ``kept[i]`` is the position in the original book of ``result``'s order ``i``;
    ``quarantined`` maps an original position to the engine's reason.
    """

    result: MarketResult
    kept: tuple[int, ...]
    quarantined: dict[int, str]


def clear_isolating(book: Book, owners: Sequence[Hashable]) -> Isolated:
    """Clear ``book`` without self-trades, setting aside orders that cannot be cleared."""
    everyone = tuple(range(len(book.orders)))
    # Any failure counts: no order, whatever it does to the engine, may stop the grid.
    with contextlib.suppress(Exception):
        return Isolated(clear_without_self_trades(book, owners), everyone, {})
    clear(_subset(book, ()))  # raises when the utility or the zones are at fault
    quarantined = {i: reason for i in everyone if (reason := _fails_alone(book, i)) is not None}
    kept = [i for i in everyone if i not in quarantined]
    while True:
        try:
            result = clear_without_self_trades(_subset(book, kept), [owners[i] for i in kept])
            return Isolated(result, tuple(kept), quarantined)
        except Exception as exc:
            # Each order clears alone, together they do not (a total beyond the engine's
            # range): set aside the first order the longest clearing prefix cannot take.
            culprit = kept.pop(_longest_clearing_prefix(book, owners, kept))
            quarantined[culprit] = f"the book could not be cleared with it: {exc}"


def _longest_clearing_prefix(
    book: Book, owners: Sequence[Hashable], positions: Sequence[int]
) -> int:
    """The length of the longest prefix of ``positions`` that clears (bisection; the
    whole does not, the empty one does)."""
    low, high = 0, len(positions) - 1
    while low < high:
        middle = (low + high + 1) // 2
        part = positions[:middle]
        try:
            clear_without_self_trades(_subset(book, part), [owners[i] for i in part])
            low = middle
        except Exception:
            high = middle - 1
    return low


def _fails_alone(book: Book, i: int) -> str | None:
    """Why order ``i`` cannot be cleared on its own (None when it can)."""
    try:
        clear(_subset(book, (i,)))
    except Exception as exc:
        return str(exc) or type(exc).__name__
    return None


def _subset(book: Book, positions: Sequence[int]) -> Book:
    return Book(book.utility, book.zones, tuple(book.orders[i] for i in positions))


__all__ = ["Isolated", "clear_isolating"]
