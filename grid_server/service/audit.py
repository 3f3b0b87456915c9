"""The audit trail at run time: closing interval roots, receipts, the public roots list.

* :func:`close_due` is called by the interval cycle on every pass: once an
  interval has ended it appends the root of every entry logged since the
  previous root (see :mod:`grid_server.domain.audit_roots`), and, with the
  IOTA ledger configured, starts anchoring in the background
  (:mod:`.audit_anchor`); :func:`stop` ends that when the grid stops.
* :func:`receipt` answers ``GET /api/v1/receipts/…``: a participant may have
  receipts for its own envelopes and statements and for public entries
  (market results, roots, anchors); never for another participant's.
* :func:`roots` is the public list households keep copies of.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

import orjson
from sqlalchemy import select

from grid_server.storage import audit_store
from grid_server.storage.schema import envelopes, grid_state, log_entries
from p2p_energy_client.protocol import ErrorCode, ProtocolError
from p2p_energy_client.receipts import AuditRoot, Receipt

from . import audit_anchor

if TYPE_CHECKING:
    from .grid import GridService

_LOGGER = logging.getLogger(__name__)

# Entries whose receipts any participant may fetch.
PUBLIC_KINDS: Final = frozenset({"market_result", "root", "anchor"})
MAX_ROOTS: Final = 5000


async def close_due(grid: GridService) -> int:
    """Append the root of every interval that has ended; returns how many roots were added."""
    async with grid.db.read() as conn:
        cycle_from = await conn.scalar(
            select(grid_state.c.cycle_from).where(grid_state.c.grid == grid.grid_id)
        )
    if cycle_from is None:
        return 0
    closed = await audit_store.close_due(
        grid.db,
        grid.grid_id,
        grid.schedule,
        cycle_from=cycle_from,
        now=grid.clock.now(),
        grace=timedelta(0),
    )
    if closed is None:
        audit_anchor.anchoring(grid).kick()  # a batch may still wait (after a restart)
        return 0
    _LOGGER.info(
        "closed %s–%s: root %s over entries %d–%d",
        closed.interval_from.isoformat(),
        closed.interval_to.isoformat(),
        closed.root.hex()[:16],
        closed.first_seq,
        closed.last_seq,
    )
    audit_anchor.anchoring(grid).kick()
    return 1


async def stop(grid: GridService) -> None:
    """Stop background anchoring (the grid is shutting down)."""
    await audit_anchor.anchoring(grid).stop()


def _not_found(what: str) -> ProtocolError:
    return ProtocolError(ErrorCode.NOT_FOUND, f"no log entry {what}", None)


async def receipt(
    grid: GridService,
    address: str,
    *,
    log_seq: int | None = None,
    seq: int | None = None,
    signature: bytes | None = None,
) -> Receipt:
    """The receipt of one log entry, named by its log seq, own payload seq or own signature."""
    async with grid.db.read() as conn:
        if seq is not None:
            log_seq = await conn.scalar(
                select(log_entries.c.seq).where(
                    log_entries.c.kind == "envelope",
                    log_entries.c.ref == f"{address}/{seq}",
                    log_entries.c.grid == grid.grid_id,
                )
            )
            if log_seq is None:
                raise _not_found(f"for your envelope with seq {seq}")
        elif signature is not None:
            row = (
                await conn.execute(
                    select(envelopes.c.log_seq, envelopes.c.sender).where(
                        envelopes.c.signature == signature
                    )
                )
            ).one_or_none()
            if row is None or row.sender != address:
                raise _not_found("for an envelope of yours with that signature")
            log_seq = int(row.log_seq)
        if log_seq is None:
            raise ProtocolError(
                ErrorCode.INVALID_FIELD, "name the entry: log seq, seq or signature", "seq"
            )
        found = await audit_store.entry_header(conn, grid.grid_id, log_seq)
        if found is None:
            raise _not_found(str(log_seq))
        entry, body = found
        if not _may_see(entry.kind, entry.ref, body, address):
            raise ProtocolError(
                ErrorCode.FORBIDDEN, f"log entry {log_seq} is not yours to see", "seq"
            )
        return await audit_store.receipt(conn, grid.grid_id, entry)


def _may_see(kind: str, ref: str, body: bytes, address: str) -> bool:
    if kind in PUBLIC_KINDS:
        return True
    if kind == "envelope":
        return ref.startswith(f"{address}/")
    if kind == "statement":
        try:
            return bool(orjson.loads(body).get("participant") == address)
        except (orjson.JSONDecodeError, AttributeError):
            return False
    return False


async def roots(
    grid: GridService,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    from_seq: int | None = None,
    limit: int = MAX_ROOTS,
) -> list[AuditRoot]:
    async with grid.db.read() as conn:
        return await audit_store.roots_between(
            conn,
            grid.grid_id,
            since=since,
            until=until,
            from_seq=from_seq,
            limit=min(max(limit, 1), MAX_ROOTS),
        )


__all__ = ["PUBLIC_KINDS", "close_due", "receipt", "roots", "stop"]
