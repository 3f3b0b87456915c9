"""What each accepted payload type does, inside the writer's transaction (one module per type).

Every handler validates the whole payload against the stored state first and
only then changes anything (or buffers the change for the batch's bulk
insert), so a refused envelope leaves no trace and a batch is all-or-nothing.
Errors name the first offending field.

:func:`prefetch` loads what a batch's handlers will look at in a few
queries (and on PostgreSQL locks the rows they may change), :func:`apply`
runs the handler of one envelope, :func:`flush` writes what they buffered
and :func:`write_placed` what names the batch's log entries, once the writer
holds the chain head and knows them — all in the writer's transaction.
"""

from __future__ import annotations

from datetime import datetime

from grid_server.domain.registry import code_hash
from grid_server.storage import ingest_queries as q
from grid_server.storage import payment_queries as pq
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
    # The invitations the batch's joins use, locked in a fixed order (see audit_log),
    # so the claims below never wait.
    codes = {
        code_hash(body.invitation)
        for body in (s.envelope.payload.body for s in batch)
        if isinstance(body, Join)
    }
    if codes and ctx.postgres:
        await q.lock_invitations(conn, codes)
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
    """Write what the batch's handlers buffered and names no log entry (before the head)."""
    # Payments first: their ledger and payment log entries precede the joins'.
    await payments.flush(ctx)
    if ctx.changed_books:
        await q.delete_order_books(ctx.conn, ctx.changed_books)


async def write_placed(ctx: TxContext) -> None:
    """Write what names the batch's log entries (after :meth:`TxContext.place`)."""
    if ctx.reading_writes:
        await q.write_readings(ctx.conn, ctx.reading_writes)
        ctx.reading_writes = []
    if ctx.changed_books:
        await q.insert_order_books(ctx.conn, ctx.changed_books, ctx.order_books, ctx.now)
        ctx.changed_books = {}
    if ctx.payment_rows:
        await pq.insert_payments(ctx.conn, ctx.payment_rows)
        ctx.payment_rows = []


__all__ = [
    "apply",
    "flush",
    "prefetch",
    "write_placed",
]
