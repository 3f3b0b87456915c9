"""What each accepted payload type does, inside the writer's transaction (one module per type).

Every handler validates the whole payload against the stored state first and
only then changes anything (or buffers the change for the batch's bulk
insert), so a refused envelope leaves no trace and a batch is all-or-nothing.
Errors name the first offending field.

:func:`prefetch` loads what a batch's handlers will look at in a few
queries, :func:`apply` runs the handler of one envelope, and :func:`flush`
writes what they buffered, in the writer's transaction.
"""

from __future__ import annotations

from datetime import datetime

from grid_server.storage import ingest_queries as q
from p2p_energy_client.protocol import (
    Assets,
    ErrorCode,
    Join,
    Orders,
    Payment,
    ProtocolError,
    Readings,
    Transfer,
)

from ..transaction import Handled, ParticipantRow, Submission, TxContext
from . import payments
from .assets import declare_assets
from .join import join
from .orders import place_orders
from .readings import report_readings
from .session import session


async def prefetch(ctx: TxContext, batch: list[Submission]) -> None:
    """Load in a few queries what the batch's handlers will look at."""
    pids: set[int] = set()
    reading_keys: set[tuple[int, datetime]] = set()
    order_keys: set[tuple[int, datetime]] = set()
    for sub in batch:
        participant = ctx.participants.get(sub.envelope.sender)
        if participant is None:
            continue
        pids.add(participant.id)
        body = sub.envelope.payload.body
        if isinstance(body, Readings):
            reading_keys.update((participant.id, r.interval) for r in body.readings)
        elif isinstance(body, Orders):
            order_keys.add((participant.id, body.interval))
    conn = ctx.conn
    if pids:
        ctx.assets = await q.assets_of(conn, pids)
    if reading_keys:
        ctx.readings = await q.recorded_readings(conn, reading_keys)
    # The books the batch's orders envelopes change: (participant, interval) → id → order.
    if order_keys:
        ctx.order_books = await q.order_books(conn, order_keys)
    touched = {i for _, i in reading_keys | order_keys}
    if touched:
        ctx.interval_states = await q.interval_states(conn, touched)
    # Payments and transfers: ledger accounts, statements (see .payments).
    await payments.prefetch(ctx, batch)


async def apply(ctx: TxContext, sub: Submission, participant: ParticipantRow | None) -> Handled:
    body = sub.envelope.payload.body
    if isinstance(body, Join):
        return await join(ctx, sub, body, participant)
    assert participant is not None
    if isinstance(body, Readings):
        return report_readings(ctx, body, participant)
    if isinstance(body, Orders):
        return await place_orders(ctx, body, participant)
    if isinstance(body, Assets):
        return await declare_assets(ctx, body, participant)
    if sub.envelope.payload.type == "session":
        return await session(ctx, participant)
    if isinstance(body, Payment):
        return Handled(await payments.apply_payment(ctx, sub, body, participant), participant.id)
    if isinstance(body, Transfer):
        return Handled(await payments.apply_transfer(ctx, sub, body, participant), participant.id)
    raise ProtocolError(
        ErrorCode.INVALID_FIELD,
        f"payload.type: {sub.envelope.payload.type!r} is not accepted by this grid yet",
        "payload.type",
    )


async def flush(ctx: TxContext) -> None:
    """Write what the batch's handlers buffered (before its envelopes and log entries)."""
    # Payments first: their ledger and payment log entries precede the joins'.
    await payments.flush(ctx)
    if ctx.reading_writes:
        await q.write_readings(ctx.conn, ctx.reading_writes)
        ctx.reading_writes = []
    if ctx.changed_books:
        await q.replace_order_books(ctx.conn, ctx.changed_books, ctx.order_books, ctx.now)
        ctx.changed_books = {}
    ctx.log_items.extend(ctx.join_log)
    ctx.join_log = []


__all__ = [
    "apply",
    "flush",
    "prefetch",
]
