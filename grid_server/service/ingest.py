"""Accepting signed envelopes: one group-commit writer per process.

The HTTP handler parses the body and verifies the signature (CPU work that
needs no database), then hands the envelope to :class:`Writer` and awaits
its outcome. The writer takes every envelope waiting (up to a batch limit),
applies them one after another inside **one** database transaction, and
resolves each request only after that transaction committed. Many envelopes
share one commit (one fsync), which is what makes thousands of signed
reports per second possible on SQLite, and nothing is acknowledged before it
is durable.

Per envelope, in this order:

1. a duplicate of an accepted envelope (the same signer and sequence number
   with the same signed payload, whatever valid signature bytes it carries:
   another signer may pick another nonce) is answered with the stored
   original result (a client retrying after a timeout gets what it would
   have got);
2. ``payload.grid`` must be this grid (WRONG_GRID), ``payload.ts`` within the
   allowed skew of the grid clock (STALE_TIMESTAMP), ``payload.seq`` above the
   last accepted for the key (REPLAY);
3. membership and status (NOT_MEMBER, SUSPENDED) except for ``join``;
4. the payload's own rules (:mod:`.handlers`), which validate everything
   before they change anything, so a refused envelope leaves no trace.

The types the writer and the handlers share are :mod:`.transaction`.

An accepted envelope is stored with its raw request bytes, its parsed header,
the hash of its canonical payload and the JSON answered, and appended to the
audit log, all in the same transaction as its effects.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

import orjson

from grid_server.domain.audit_chain import link
from grid_server.domain.clock import Clock
from grid_server.storage import audit_log
from grid_server.storage import ingest_queries as q
from grid_server.storage.db import Database, interval_lock_key, join_lock_key
from p2p_energy_client.protocol import (
    Envelope,
    ErrorCode,
    Orders,
    ProtocolError,
    Readings,
    check_freshness,
)

from . import handlers
from .faults import Faults
from .metrics import Metrics
from .transaction import (
    IngestRules,
    Outcome,
    ParticipantRow,
    Submission,
    TxContext,
    error_outcome,
)

_LOGGER = logging.getLogger(__name__)


@dataclass(kw_only=True, eq=False)
class Writer:
    """The per-process group-commit writer."""

    db: Database
    clock: Clock
    rules: IngestRules
    metrics: Metrics
    faults: Faults
    max_batch: int = 512
    _queue: deque[Submission] = field(default_factory=deque, init=False)
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False)
    _closing: bool = field(default=False, init=False)
    batches: int = field(default=0, init=False)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="p2p-writer")

    async def submit(self, raw: bytes, envelope: Envelope, client: str = "") -> Outcome:
        if self._closing:
            raise ProtocolError(ErrorCode.UNAVAILABLE, "the grid is shutting down")
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._queue.append(Submission(raw, envelope, future, client))
        self._wakeup.set()
        return await asyncio.shield(future)

    async def drain(self) -> None:
        """Refuse new envelopes, commit every one already accepted, stop."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
            try:
                await self._process(batch)
            except Exception:  # a writer that dies would hang every client
                _LOGGER.exception("writer batch failed")
                for sub in batch:
                    if not sub.future.done():
                        sub.future.set_result(
                            error_outcome(
                                ProtocolError(ErrorCode.UNAVAILABLE, "internal error; retry")
                            )
                        )

    async def _process(self, batch: list[Submission]) -> None:
        started = time.perf_counter()
        try:
            outcomes, ctx = await self._apply_batch(batch)
        except Exception:
            if len(batch) == 1:
                raise
            # One envelope broke the transaction (a constraint the handlers did
            # not foresee): apply them one by one so the others still get in.
            _LOGGER.warning("batch of %d failed; retrying one by one", len(batch), exc_info=True)
            for sub in batch:
                await self._process([sub])
            return
        for callback in ctx.after_commit:
            callback()
        for sub, outcome in zip(batch, outcomes, strict=True):
            if not sub.future.done():
                sub.future.set_result(outcome)
        self.batches += 1
        self.metrics.observe_batch(len(batch), time.perf_counter() - started, ctx.counts)

    async def _apply_batch(self, batch: list[Submission]) -> tuple[list[Outcome], TxContext]:
        db = self.db
        grid_id = self.rules.grid_id
        async with db.write_batch() as conn:
            # Locks in the order every writer takes them (storage.audit_log): the
            # intervals' advisory locks, shared (a worker clearing or settling one
            # holds it alone), then the keys that join (two workers never insert
            # the same participant), then the senders' rows — so a sender's
            # envelopes are checked against its last accepted seq by one batch
            # at a time — and, in the handlers' prefetch, the invitations, the
            # ledger and the statements. The chain head comes last (_flush).
            if db.is_postgres:
                keys = [interval_lock_key(grid_id, t) for t in sorted(_intervals_touched(batch))]
                await q.lock_shared(conn, keys)
                joining = sorted({s.envelope.sender for s in batch if s.type == "join"})
                for address in joining:
                    await db.advisory_xact_lock(conn, join_lock_key(grid_id, address), wait=True)
            senders = {sub.envelope.sender for sub in batch}
            found = await q.participants_by_address(conn, senders, lock=db.is_postgres)
            # The clock after the waits: what the batch stores happened now.
            ctx = TxContext(conn, self.rules, self.clock.now(), db.is_postgres)
            # Read after the senders' rows are locked: a batch that waited for
            # another sees the envelopes it accepted.
            stored = await q.stored_results(conn, [sub.envelope.identity for sub in batch])
            for row in found:
                ctx.participants[row.address] = ParticipantRow(
                    row.id,
                    row.address,
                    row.name,
                    row.zone,
                    row.role,
                    row.status,
                    row.last_seq,
                    row.joined_at,
                )
            await handlers.prefetch(ctx, batch)
            outcomes = [await self._apply_one(ctx, sub, stored) for sub in batch]
            await self._flush(ctx)
            if self.faults.armed:  # test-only: halt before the commit (see faults.py)
                readings = any(isinstance(s.envelope.payload.body, Readings) for s in batch)
                await self.faults.reach("ingest.commit", "readings" if readings else "")
        return outcomes, ctx

    async def _apply_one(
        self,
        ctx: TxContext,
        sub: Submission,
        stored: dict[tuple[str, int], tuple[bytes, bytes, str]],
    ) -> Outcome:
        env = sub.envelope
        identity = env.identity
        previous = ctx.accepted_results.get(identity) or stored.get(identity)
        # The same signer and seq with another payload is no duplicate: a replay.
        if previous is not None and previous[0] == env.payload_hash:
            return _answer_again(ctx, previous[1:])
        try:
            participant = self._check_sender(ctx, env)
            handled = await handlers.apply(ctx, sub, participant)
        except ProtocolError as exc:
            ctx.count(f"rejected:{exc.code}")
            return error_outcome(exc)
        answer = orjson.dumps(handled.answer)
        kept = answer if handled.stored is None else orjson.dumps(handled.stored)
        self._accept(ctx, sub, handled.participant_id, kept)
        return Outcome(200, answer)

    def _check_sender(self, ctx: TxContext, env: Envelope) -> ParticipantRow | None:
        """This grid, a fresh timestamp, a new seq; a member in good standing (but to join)."""
        header = env.payload.header
        check_freshness(env, self.rules.grid_id, ctx.now)
        participant = ctx.participants.get(header.sender)
        last_seq = participant.last_seq if participant is not None else 0
        if header.seq <= last_seq:
            raise ProtocolError(
                ErrorCode.REPLAY,
                f"payload.seq {header.seq} is not above {last_seq}, the last accepted for this key",
                "payload.seq",
                {"last_seq": last_seq},
            )
        if env.payload.type != "join":
            if participant is None:
                raise ProtocolError(
                    ErrorCode.NOT_MEMBER, "this key is not a member of the grid", "public_key"
                )
            if participant.status != "active":
                raise ProtocolError(
                    ErrorCode.SUSPENDED,
                    f"the participant is {participant.status}",
                    "payload.sender",
                )
        return participant

    def _accept(self, ctx: TxContext, sub: Submission, participant_id: int, result: bytes) -> None:
        env = sub.envelope
        header = env.payload.header
        log_pos = ctx.next_log_pos()
        ctx.log_items.append(("envelope", f"{header.sender}/{header.seq}", sub.raw))
        ctx.envelope_rows.append(
            {
                "log_seq": log_pos,  # the chain's seq once placed (TxContext.place)
                "signature": env.signature,
                "participant_id": participant_id,
                "sender": header.sender,
                "type": env.payload.type,
                "seq": header.seq,
                "ts": header.ts,
                "payload_hash": env.payload_hash,
                "raw": sub.raw,
                "received_at": ctx.now,
                "result": result,
            }
        )
        ctx.seq_updates[participant_id] = header.seq
        participant = ctx.participants.get(header.sender)
        if participant is not None:
            participant.last_seq = header.seq
        ctx.accepted_results[env.identity] = (env.payload_hash, result, env.payload.type)
        ctx.count(f"accepted:{env.payload.type}")

    async def _flush(self, ctx: TxContext) -> None:
        """Write the batch: what names no log entry, then — holding the chain head,
        the last lock — the envelopes, what names them, and the entries."""
        await handlers.flush(ctx)
        if not ctx.envelope_rows:
            return
        conn = ctx.conn
        grid_id = self.rules.grid_id
        await q.update_last_seqs(conn, ctx.seq_updates)
        head_seq, head_hash = await audit_log.lock_head(conn, self.db, grid_id)
        ctx.place(head_seq)
        entries = link(head_seq, head_hash, ctx.log_items)
        await q.insert_envelopes(conn, ctx.envelope_rows)
        await handlers.write_placed(ctx)
        await audit_log.write_entries(conn, grid_id, entries, ctx.now)


def _answer_again(ctx: TxContext, previous: tuple[bytes, str]) -> Outcome:
    """A duplicate of an accepted envelope: the stored answer (a session is refused)."""
    answer, payload_type = previous
    if payload_type == "session":
        # A session answer holds a bearer token that is never stored;
        # a retry simply opens a new session with a new envelope.
        exc = ProtocolError(
            ErrorCode.REPLAY, "this session envelope was already used", "payload.seq"
        )
        return error_outcome(exc)
    ctx.count("duplicate_envelopes")
    return Outcome(200, answer, duplicate=True)


def _intervals_touched(batch: list[Submission]) -> set[datetime]:
    keys: set[datetime] = set()
    for sub in batch:
        body = sub.envelope.payload.body
        if isinstance(body, Orders):
            keys.add(body.interval)
        elif isinstance(body, Readings):
            keys.update(r.interval for r in body.readings)
    return keys
