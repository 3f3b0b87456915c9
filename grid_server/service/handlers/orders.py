"""``orders``: place, replace and cancel a participant's orders for one interval until gate closure.

The envelope changes the participant's book for the interval as a whole; the
book that results is checked (size, capacity, the overdue policy for buys)
and, when valid, replaces the stored one when the batch is written.
"""

from __future__ import annotations

from grid_server.domain.orders import check_book_size, check_order_capacity
from grid_server.storage import ingest_queries as q
from p2p_energy_client.models import OrderBook, OrderView
from p2p_energy_client.protocol import ErrorCode, Orders, ProtocolError, Side
from p2p_energy_client.units import format_utc

from ..transaction import Handled, ParticipantRow, TxContext


async def place_orders(ctx: TxContext, body: Orders, participant: ParticipantRow) -> Handled:
    schedule = ctx.rules.limits.schedule
    interval = body.interval
    schedule.check_order_time(interval, ctx.now, "payload.interval")
    state = ctx.interval_states.get(interval)
    if state not in (None, "open"):
        raise ProtocolError(
            ErrorCode.GATE_CLOSED,
            f"payload.interval: {format_utc(interval)} is already {state}",
            "payload.interval",
        )
    key = (participant.id, interval)
    existing = ctx.order_books.get(key)
    if existing is None:  # not prefetched (joined in this batch)
        existing = await q.order_book(ctx.conn, participant.id, interval)
    book, placed_index = _next_book(existing, body, participant.zone)
    check_book_size(book)
    check_order_capacity(
        book,
        placed_index,
        assets=ctx.assets.get(participant.id, ()),
        interval=interval,
        limits=ctx.rules.limits,
    )
    first_buy = next((i for i, o in enumerate(body.place) if o.side == Side.BUY), None)
    if first_buy is not None:
        await ctx.rules.payments.check_buy_allowed(
            ctx.conn, participant.id, ctx.now, f"payload.place[{first_buy}].side"
        )
    # Valid: the book replaces the stored one when the batch is written (every
    # order then carries the envelope that last changed the book).
    ctx.order_books[key] = book
    ctx.changed_books[key] = ctx.next_log_pos()
    ctx.count("orders_placed", len(body.place))
    result = OrderBook(
        interval, schedule.gate_closure(interval), tuple(sorted(book.values(), key=_order_key))
    )
    return Handled(result.to_wire(), participant.id)


def _next_book(
    existing: dict[str, OrderView], body: Orders, zone: str
) -> tuple[dict[str, OrderView], dict[str, int]]:
    """The book after the envelope, and the index in ``payload.place`` of each order placed."""
    book: dict[str, OrderView] = {} if body.replace_all else dict(existing)
    for order_id in body.cancel:
        # Cancelling an order that is not (or no longer) there is a no-op.
        book.pop(order_id, None)
    placed_index: dict[str, int] = {}
    for i, spec in enumerate(body.place):
        book[spec.id] = OrderView(spec.id, str(spec.side), spec.energy_wh, spec.price, zone)
        placed_index[spec.id] = i
    return book, placed_index


def _order_key(order: OrderView) -> tuple[str, str]:
    return (order.side, order.id)
