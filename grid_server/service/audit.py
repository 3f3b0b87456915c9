"""The audit trail at run time: closing interval roots, receipts, the public roots list.

* :meth:`AuditTrail.close_due` is called by the interval cycle on every
  pass: once an interval has ended it appends the root of every entry
  logged since the previous root (see :mod:`grid_server.domain.audit_roots`),
  and, with the IOTA ledger configured, starts anchoring in the background
  (:mod:`.audit_anchor`).
* :meth:`AuditTrail.receipt` answers ``GET /api/v1/receipts/…``: a
  participant may have receipts for its own envelopes and statements and for
  public entries (market results, roots, anchors); never for another
  participant's.
* :meth:`AuditTrail.roots` is the public list households keep copies of.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from grid_server.domain.clock import Clock
from grid_server.domain.schedule import Schedule
from grid_server.storage import audit_store, receipt_queries
from grid_server.storage.cycle_queries import cycle_from
from grid_server.storage.db import Database
from p2p_energy_client.protocol import ErrorCode, ProtocolError
from p2p_energy_client.receipts import AuditRoot, Receipt

from .audit_anchor import Anchoring

_LOGGER = logging.getLogger(__name__)

# Entries whose receipts any participant may fetch.
PUBLIC_KINDS: Final = frozenset({"market_result", "root", "anchor"})
MAX_ROOTS: Final = 5000


@dataclass(frozen=True, kw_only=True, eq=False)
class AuditTrail:
    grid_id: str
    db: Database
    clock: Clock
    schedule: Schedule
    anchoring: Anchoring

    async def close_due(self) -> int:
        """Append the root of every interval that has ended; returns how many roots were added."""
        async with self.db.read() as conn:
            first = await cycle_from(conn, self.grid_id)
        if first is None:
            return 0
        closed = await audit_store.close_due(
            self.db,
            self.grid_id,
            self.schedule,
            cycle_from=first,
            now=self.clock.now(),
            grace=timedelta(0),
        )
        if closed is None:
            self.anchoring.kick()  # a batch may still wait (after a restart)
            return 0
        _LOGGER.info(
            "closed %s–%s: root %s over entries %d–%d",
            closed.interval_from.isoformat(),
            closed.interval_to.isoformat(),
            closed.root.hex()[:16],
            closed.first_seq,
            closed.last_seq,
        )
        self.anchoring.kick()
        return 1

    async def receipt(
        self,
        address: str,
        *,
        log_seq: int | None = None,
        seq: int | None = None,
        signature: bytes | None = None,
    ) -> Receipt:
        """The receipt of one log entry, named by its log seq, own payload seq or own signature."""
        async with self.db.read() as conn:
            log_seq = await self._log_seq(conn, address, log_seq, seq, signature)
            found = await audit_store.entry_header(conn, self.grid_id, log_seq)
            if found is None:
                raise _not_found(str(log_seq))
            entry, body = found
            if not _may_see(entry.kind, entry.ref, body, address):
                raise ProtocolError(
                    ErrorCode.FORBIDDEN, f"log entry {log_seq} is not yours to see", "seq"
                )
            return await audit_store.receipt(conn, self.grid_id, entry)

    async def _log_seq(
        self,
        conn: AsyncConnection,
        address: str,
        log_seq: int | None,
        seq: int | None,
        signature: bytes | None,
    ) -> int:
        """The log seq of the entry named (an own envelope by its seq or signature)."""
        if seq is not None:
            log_seq = await receipt_queries.envelope_log_seq(conn, self.grid_id, address, seq)
            if log_seq is None:
                raise _not_found(f"for your envelope with seq {seq}")
        elif signature is not None:
            found = await receipt_queries.envelope_by_signature(conn, signature)
            if found is None or found[1] != address:
                raise _not_found("for an envelope of yours with that signature")
            log_seq = found[0]
        if log_seq is None:
            raise ProtocolError(
                ErrorCode.INVALID_FIELD, "name the entry: log seq, seq or signature", "seq"
            )
        return log_seq

    async def roots(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        from_seq: int | None = None,
        limit: int = MAX_ROOTS,
    ) -> list[AuditRoot]:
        async with self.db.read() as conn:
            return await audit_store.roots_between(
                conn,
                self.grid_id,
                since=since,
                until=until,
                from_seq=from_seq,
                limit=min(max(limit, 1), MAX_ROOTS),
            )


def _not_found(what: str) -> ProtocolError:
    return ProtocolError(ErrorCode.NOT_FOUND, f"no log entry {what}", None)


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


__all__ = ["MAX_ROOTS", "PUBLIC_KINDS", "AuditTrail"]
