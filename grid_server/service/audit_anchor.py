"""Anchoring interval roots on IOTA through IOTA Notarization (with the IOTA ledger).

One pass (:meth:`Anchoring.run_once`, started by the interval cycle after it
closes roots, in the background so clearing never waits for the node):

1. A stored attempt whose batch is not anchored yet is finished first: its
   signed bytes are submitted again (the same bytes can land at most once;
   this is the recovery after a crash or a node outage).
2. Otherwise, once ``[grid.audit] anchor_every`` roots wait, all waiting roots
   form one batch (:mod:`grid_server.domain.audit_roots`); a transaction that
   creates the grid's dynamic notarization (the first time) or updates its
   state is built, signed with the grid's key, **stored**, then submitted.
3. When it is on chain (success, checkpointed), one database transaction
   appends the ``anchor`` log entry and inserts the ``audit_anchors`` row
   (digest, object, versions), so the anchor is itself in the log.

Bytes that can never land (the object moved on: another worker anchored
first) are left behind; the next pass builds new ones. With the local ledger
nothing is anchored: roots are published through the API only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select

from grid_server.domain.audit_chain import link
from grid_server.domain.audit_roots import (
    ANCHOR_KIND,
    Batch,
    anchor_metadata,
    anchor_record,
    make_batch,
)
from grid_server.storage import audit_log, audit_store
from grid_server.storage.db import advisory_key
from grid_server.storage.schema import audit_anchor_attempts, audit_anchors
from p2p_energy_client.ledger.iota.bcs import decode_transaction_data
from p2p_energy_client.ledger.iota.ledger import IotaNetwork
from p2p_energy_client.ledger.iota.notarization import (
    PACKAGES,
    Anchored,
    NotarizationError,
    Notarizer,
    read_programme,
    signed_from_json,
    signed_to_json,
)
from p2p_energy_client.protocol import LedgerKind, canonical_json

if TYPE_CHECKING:
    from p2p_energy_client.ledger.iota.transactions import SignedTransaction

    from .grid import GridService

_LOGGER = logging.getLogger(__name__)
MAX_BATCH = 1000


@dataclass(frozen=True, slots=True)
class AnchorOutcome:
    batch: Batch
    anchored: Anchored
    log_seq: int


def notarization_package(grid: GridService) -> str | None:
    """The notarization package of the grid's network (or the configured one)."""
    audit = grid.config.audit
    if audit.notarization_package is not None:
        return audit.notarization_package
    network = grid.config.ledger.iota.network
    if network is None:
        return None
    return PACKAGES.get(IotaNetwork(network))


def anchoring_enabled(grid: GridService) -> bool:
    return (
        grid.config.audit.anchor
        and LedgerKind(grid.config.ledger.kind) is LedgerKind.IOTA
        and notarization_package(grid) is not None
    )


class Anchoring:
    def __init__(self, grid: GridService) -> None:
        self.grid = grid
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.last_error: str | None = None

    def notarizer(self) -> Notarizer:
        payments = self.grid.payments
        node = self.grid.config.ledger.iota
        package = notarization_package(self.grid)
        assert package is not None
        return Notarizer(
            payments.iota().rpc,
            payments.grid_keys,
            package,
            submit_deadline=node.submit_deadline,
            checkpoint_timeout=node.checkpoint_timeout,
            poll_interval=node.poll_interval,
        )

    def kick(self) -> None:
        """Start a pass in the background unless one is running."""
        if not anchoring_enabled(self.grid) or (self._task is not None and not self._task.done()):
            return
        self._task = asyncio.create_task(self._background(), name="p2p-anchor")

    async def _background(self) -> None:
        try:
            await self.run_once()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the next pass tries again
            self.last_error = str(exc)
            _LOGGER.warning("anchoring failed: %s", exc, exc_info=True)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def run_once(self) -> AnchorOutcome | None:
        """Anchor what is due (see the module doc); None when nothing was."""
        if not anchoring_enabled(self.grid):
            return None
        async with self._lock:
            db = self.grid.db
            if not db.is_postgres:
                return await self._pass()
            # One worker anchors at a time: a session-long advisory lock on its own connection.
            async with db.write() as guard:
                key = advisory_key(self.grid.grid_id, "audit-anchor")
                if not await db.advisory_xact_lock(guard, key, wait=False):
                    return None
                return await self._pass()

    async def _pass(self) -> AnchorOutcome | None:
        grid = self.grid
        db = grid.db
        async with db.read() as conn:
            latest = await audit_store.latest_anchor(conn, grid.grid_id)
            anchored_until = -1 if latest is None else int(latest.last_root_seq)
            pending = (
                await conn.execute(
                    select(audit_anchor_attempts)
                    .where(
                        audit_anchor_attempts.c.grid == grid.grid_id,
                        audit_anchor_attempts.c.last_root_seq > anchored_until,
                    )
                    .order_by(audit_anchor_attempts.c.id.desc())
                    .limit(1)
                )
            ).one_or_none()
            waiting = await audit_store.unanchored_roots(conn, grid.grid_id, MAX_BATCH)
        notarizer = self.notarizer()
        if pending is not None:
            batch = make_batch(
                [r for r in waiting if pending.first_root_seq <= r.seq <= pending.last_root_seq]
            )
            signed = signed_from_json(pending.signed)
            try:
                return await self._finish(batch, signed, notarizer)
            except NotarizationError as exc:
                if exc.code not in ("rejected", "tx_failed"):
                    raise
                _LOGGER.warning(
                    "stored anchor %s can never land (%s); rebuilding", pending.digest, exc
                )
        if len(waiting) < grid.config.audit.anchor_every:
            return None
        batch = make_batch(waiting)
        object_id = None if latest is None else str(latest.object_id)
        signed = await notarizer.prepare(
            batch.payload,
            anchor_metadata(grid.grid_id, batch),
            object_id=object_id,
            description=f"p2p_energy audit roots of grid {grid.grid_id}",
        )
        async with db.write() as conn:
            await conn.execute(
                insert(audit_anchor_attempts).values(
                    grid=grid.grid_id,
                    first_root_seq=batch.first_root_seq,
                    last_root_seq=batch.last_root_seq,
                    digest=signed.digest,
                    signed=signed_to_json(signed),
                    created_at=grid.clock.now(),
                )
            )
        return await self._finish(batch, signed, notarizer)

    async def _finish(
        self, batch: Batch, signed: SignedTransaction, notarizer: Notarizer
    ) -> AnchorOutcome:
        call = read_programme(decode_transaction_data(signed.tx_bytes, move_calls=True))
        if call.data != batch.payload:
            raise NotarizationError("mismatch", "the stored transaction anchors other bytes")
        anchored = await notarizer.submit(signed)
        log_seq = await self._record(batch, anchored, notarizer.package)
        self.last_error = None
        _LOGGER.info(
            "anchored roots %d–%d in %s (%s, state %d)",
            batch.first_root_seq,
            batch.last_root_seq,
            anchored.digest,
            anchored.object_id,
            anchored.state_version,
        )
        return AnchorOutcome(batch, anchored, log_seq)

    async def _record(self, batch: Batch, anchored: Anchored, package: str) -> int:
        grid = self.grid
        db = grid.db
        network = grid.config.ledger.iota.network
        now = grid.clock.now()
        record = anchor_record(
            batch,
            ledger="iota",
            network=network,
            package=package,
            object_id=anchored.object_id,
            digest=anchored.digest,
            object_version=anchored.object_version,
            state_version=anchored.state_version,
        )
        async with db.write() as conn:
            known = await conn.scalar(
                select(audit_anchors.c.log_seq).where(audit_anchors.c.digest == anchored.digest)
            )
            if known is not None:
                return int(known)  # recorded by an earlier pass
            seq, head = await audit_log.lock_head(conn, db, grid.grid_id)
            entries = link(
                seq, head, [(ANCHOR_KIND, str(batch.last_root_seq), canonical_json(record))]
            )
            await audit_log.write_entries(conn, grid.grid_id, entries, now)
            await conn.execute(
                insert(audit_anchors).values(
                    grid=grid.grid_id,
                    last_root_seq=batch.last_root_seq,
                    first_root_seq=batch.first_root_seq,
                    batch_root=batch.batch_root,
                    payload=batch.payload,
                    ledger="iota",
                    network=network,
                    package=package,
                    object_id=anchored.object_id,
                    object_version=anchored.object_version,
                    state_version=anchored.state_version,
                    digest=anchored.digest,
                    log_seq=entries[0].seq,
                    created_at=now,
                )
            )
        return entries[0].seq


_RUNNERS: weakref.WeakKeyDictionary[Any, Anchoring] = weakref.WeakKeyDictionary()


def anchoring(grid: GridService) -> Anchoring:
    """The grid's anchoring runner (one per running grid)."""
    runner = _RUNNERS.get(grid)
    if runner is None:
        runner = _RUNNERS[grid] = Anchoring(grid)
    return runner


__all__ = [
    "AnchorOutcome",
    "Anchoring",
    "anchoring",
    "anchoring_enabled",
    "notarization_package",
]
