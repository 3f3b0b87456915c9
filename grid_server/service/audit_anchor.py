"""Anchoring interval roots on IOTA through IOTA Notarization (with the IOTA ledger).

One pass (:meth:`Anchoring.run_once`, started by :meth:`Anchoring.kick` when
the audit trail closes roots, in the background so clearing never waits for
the node):

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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from grid_server.config import AuditConfig, LedgerConfig
from grid_server.domain.audit_roots import (
    ANCHOR_KIND,
    Batch,
    anchor_metadata,
    anchor_record,
    make_batch,
)
from grid_server.domain.clock import Clock
from grid_server.storage import anchor_queries as aq
from grid_server.storage import audit_log, audit_store
from grid_server.storage.db import Database, advisory_key
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

from .payments import PaymentService

if TYPE_CHECKING:
    from p2p_energy_client.ledger.iota.transactions import SignedTransaction

_LOGGER = logging.getLogger(__name__)
MAX_BATCH = 1000


@dataclass(frozen=True, slots=True)
class AnchorOutcome:
    batch: Batch
    anchored: Anchored
    log_seq: int


def notarization_package(audit: AuditConfig, ledger: LedgerConfig) -> str | None:
    """The notarization package of the grid's network (or the configured one)."""
    if audit.notarization_package is not None:
        return audit.notarization_package
    network = ledger.iota.network
    if network is None:
        return None
    return PACKAGES.get(IotaNetwork(network))


@dataclass(kw_only=True, eq=False)
class Anchoring:
    """The grid's anchoring runner (one per running grid; see the module documentation)."""

    grid_id: str
    db: Database
    clock: Clock
    audit: AuditConfig
    ledger: LedgerConfig
    payments: PaymentService
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False)

    @property
    def package(self) -> str | None:
        return notarization_package(self.audit, self.ledger)

    @property
    def enabled(self) -> bool:
        return (
            self.audit.anchor
            and LedgerKind(self.ledger.kind) is LedgerKind.IOTA
            and self.package is not None
        )

    def notarizer(self) -> Notarizer:
        node = self.ledger.iota
        assert self.package is not None
        return Notarizer(
            self.payments.iota().rpc,
            self.payments.grid_keys,
            self.package,
            submit_deadline=node.submit_deadline,
            checkpoint_timeout=node.checkpoint_timeout,
            poll_interval=node.poll_interval,
        )

    def kick(self) -> None:
        """Start a pass in the background unless one is running."""
        if not self.enabled or (self._task is not None and not self._task.done()):
            return
        self._task = asyncio.create_task(self._background(), name="p2p-anchor")

    async def _background(self) -> None:
        try:
            await self.run_once()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the next pass tries again
            _LOGGER.warning("anchoring failed: %s", exc, exc_info=True)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def run_once(self) -> AnchorOutcome | None:
        """Anchor what is due (see the module doc); None when nothing was."""
        if not self.enabled:
            return None
        async with self._lock:
            db = self.db
            if not db.is_postgres:
                return await self._pass()
            # One worker anchors at a time: a session-long advisory lock on its own connection.
            async with db.write() as guard:
                key = advisory_key(self.grid_id, "audit-anchor")
                if not await db.advisory_xact_lock(guard, key, wait=False):
                    return None
                return await self._pass()

    async def _pass(self) -> AnchorOutcome | None:
        async with self.db.read() as conn:
            latest = await audit_store.latest_anchor(conn, self.grid_id)
            anchored_until = -1 if latest is None else int(latest.last_root_seq)
            pending = await aq.pending_attempt(conn, self.grid_id, anchored_until)
            waiting = await audit_store.unanchored_roots(conn, self.grid_id, MAX_BATCH)
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
        if len(waiting) < self.audit.anchor_every:
            return None
        batch = make_batch(waiting)
        object_id = None if latest is None else str(latest.object_id)
        signed = await notarizer.prepare(
            batch.payload,
            anchor_metadata(self.grid_id, batch),
            object_id=object_id,
            description=f"p2p_energy audit roots of grid {self.grid_id}",
        )
        async with self.db.write() as conn:
            await aq.insert_attempt(
                conn,
                grid=self.grid_id,
                first_root_seq=batch.first_root_seq,
                last_root_seq=batch.last_root_seq,
                digest=signed.digest,
                signed=signed_to_json(signed),
                now=self.clock.now(),
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
        db = self.db
        network = self.ledger.iota.network
        now = self.clock.now()
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
            known = await aq.anchor_log_seq(conn, anchored.digest)
            if known is not None:
                return known  # recorded by an earlier pass
            entries = await audit_log.append(
                conn,
                db,
                self.grid_id,
                [(ANCHOR_KIND, str(batch.last_root_seq), canonical_json(record))],
                now,
            )
            await aq.insert_anchor(
                conn,
                grid=self.grid_id,
                batch=batch,
                network=network,
                package=package,
                anchored=anchored,
                log_seq=entries[0].seq,
                now=now,
            )
        return entries[0].seq


__all__ = ["AnchorOutcome", "Anchoring", "notarization_package"]
