"""The market engine: exact clearing of one interval's order book.

Public API (everything else in this package is internal):

* data: :class:`Zone`, :class:`Utility`, :class:`Order`, :class:`Book`,
  and the array forms :class:`ZoneTree`, :class:`OrderArrays`;
* :func:`clear` (objects) and :func:`clear_arrays` (arrays) return a
  :class:`MarketResult`;
* :func:`clear_without_self_trades`: :func:`clear` where no owner's buy
  fills against its own sell (the server clears with it);
* :func:`clear_isolating`: the same, setting aside (quarantining) orders
  the engine cannot clear, so one bad order never stops the grid;
* :func:`solve_reference`: the same programme in HiGHS;
* :class:`BookError`: invalid input, naming the item and field.
"""

from .book import (
    UNLIMITED,
    Book,
    BookError,
    Order,
    OrderArrays,
    Side,
    Utility,
    Zone,
    ZoneTree,
)
from .clearing import MarketResult, clear, clear_arrays
from .quarantine import Isolated, clear_isolating
from .reference import ReferenceSolution, solve_reference
from .self_trade import clear_without_self_trades

__all__ = [
    "UNLIMITED",
    "Book",
    "BookError",
    "Isolated",
    "MarketResult",
    "Order",
    "OrderArrays",
    "ReferenceSolution",
    "Side",
    "Utility",
    "Zone",
    "ZoneTree",
    "clear",
    "clear_arrays",
    "clear_isolating",
    "clear_without_self_trades",
    "solve_reference",
]
