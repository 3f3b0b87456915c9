"""Clearing that one bad order cannot stop: what still fails is set aside, the rest clears.

Ingest enforces the engine's own bounds, so every order the API accepts can
be cleared (tests/engine/test_bounds.py). Orders can still reach a book that
the engine refuses: stored by an older version with looser rules, written by
hand into the database, or meeting an engine bug. One such order must not
stall the whole grid (nothing cleared, settled or billed while the cycle
retries). :func:`clear_isolating` clears the book; if that fails it clears
each order alone with the same utility and zones, sets aside (quarantines)
those that fail alone and clears the rest. If the rest still fails, the
failure lies in how orders combine, not in one of them: every order is set
aside and the interval clears with the utility only. If even that fails the
utility or the zones are wrong (configuration, not an order), and the error
is raised for the operator.
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
    quarantined = {i: reason for i in everyone if (reason := _fails_alone(book, i)) is not None}
    kept = tuple(i for i in everyone if i not in quarantined)
    try:
        result = clear_without_self_trades(_subset(book, kept), [owners[i] for i in kept])
        return Isolated(result, kept, quarantined)
    except Exception as exc:
        reason = f"the book could not be cleared with it: {exc}"
    quarantined.update(dict.fromkeys(kept, reason))
    return Isolated(clear(_subset(book, ())), (), quarantined)


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
