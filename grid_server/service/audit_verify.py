"""``p2p-grid audit verify``: replay the log and check everything it implies.

In one pass over the log, in sequence order, inside one read snapshot:

1. **Chain**: sequence numbers have no gaps, every entry links to the one
   before and its hash is recomputed from its fields and body.
2. **Roots**: every ``root`` entry's range starts right after the previous
   root's, its Merkle root is recomputed from the entries, and the
   ``audit_roots`` row (root, chunk roots, hashes) matches; the same for
   ``anchor`` entries and ``audit_anchors`` (batch root and notarized bytes
   recomputed).
3. **Signatures**: every envelope is opened again from its stored bytes
   (signature over the canonical payload, key and sender, payload rules,
   this grid), in worker processes on every core; its entry's ref must be
   the payload's ``sender/seq`` and a key's sequence numbers only rise.
4. **State** (when the whole log is verified): the tables are what the log
   implies (:mod:`.audit_replay`), each settled interval as soon as its
   settlement entry is replayed, the rest at the end; and ``chain_heads``
   names the last entry.

5. **Anchors on IOTA** (with ``node``): the grid's notarization object,
   owned by the grid's address, holds the latest anchored bytes (or held
   them at the recorded version); with ``anchors="all"`` every anchoring
   transaction is looked up too. Since the anchored bytes name the chain
   hash of the batch's last root, this ties the whole log up to that root
   to what IOTA holds.

The *first* inconsistency in log order is reported (a row that no entry
made comes after every attributed one). A broken chain or a bad signature
stops the pass: what follows cannot be trusted to say anything.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import multiprocessing
import os
import time
from collections import Counter, deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import orjson
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from grid_server.domain.audit_envelopes import check_envelopes
from grid_server.domain.audit_merkle import chunk_roots, pack, tree_root
from grid_server.domain.audit_roots import RootFields, make_batch, root_body
from grid_server.storage.db import Database
from grid_server.storage.schema import (
    assets,
    audit_anchors,
    audit_roots,
    chain_heads,
    envelopes,
    fills,
    intervals,
    ledger_accounts,
    ledger_entries,
    ledger_heads,
    line_items,
    log_entries,
    orders,
    participants,
    payments,
    payout_items,
    payouts,
    reading_history,
    readings,
    statement_terms,
    statements,
    utility_prices,
    zone_results,
    zones,
)
from p2p_energy_client.ledger.base import LedgerError
from p2p_energy_client.ledger.iota.notarization import (
    NotarizationError,
    read_anchored_payload,
    read_past_state,
    read_state,
)
from p2p_energy_client.ledger.iota.rpc import IotaRpcClient
from p2p_energy_client.protocol import canonical_json
from p2p_energy_client.receipts import GENESIS_HASH, body_hash, entry_hash
from p2p_energy_client.units import format_utc

from .audit_replay import (
    ENVELOPE_FIELDS,
    FILL_FIELDS,
    INTERVAL_FIELDS,
    LEDGER_HEAD_FIELDS,
    NO_ENTRY,
    ORDER_FIELDS,
    PARTICIPANT_FIELDS,
    READING_FIELDS,
    ZONE_RESULT_FIELDS,
    Inconsistency,
    Replay,
    ReplayError,
    compare_multiset,
    compare_rows,
    payload_hash,
)

_LOGGER = logging.getLogger(__name__)

BATCH: Final = 5_000  # log entries per query
SIGNATURE_CHUNK: Final = 1_000  # envelopes per worker task


class _RawMark(str):
    """How a stored envelope's raw bytes compare with its log entry's body (in SQL)."""


RAW_SAME: Final = _RawMark("equal to the log entry's body")
RAW_DIFFERENT: Final = _RawMark("different from the log entry's body")


def _log_query(grid: str, start: int, end: int) -> Any:
    """Log entries ``start``–``end`` with their ``envelopes`` row (raw compared by the database)."""
    e = envelopes.c
    return (
        select(
            log_entries.c.seq,
            log_entries.c.kind,
            log_entries.c.ref,
            log_entries.c.body,
            log_entries.c.hash,
            log_entries.c.prev_hash,
            log_entries.c.created_at,
            e.log_seq.label("e_log_seq"),
            e.signature.label("e_signature"),
            e.participant_id.label("e_participant_id"),
            e.sender.label("e_sender"),
            e.type.label("e_type"),
            e.seq.label("e_seq"),
            e.ts.label("e_ts"),
            e.payload_hash.label("e_payload_hash"),
            (e.raw == log_entries.c.body).label("e_same_raw"),
            e.received_at.label("e_received_at"),
        )
        .select_from(log_entries.outerjoin(envelopes, e.log_seq == log_entries.c.seq))
        .where(log_entries.c.grid == grid, log_entries.c.seq.between(start, end))
        .order_by(log_entries.c.seq)
    )


@dataclass
class VerifyReport:
    grid: str
    first_seq: int
    last_seq: int
    entries: int = 0
    envelopes: int = 0
    roots: int = 0
    anchors: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    state_checked: bool = False
    intervals_compared: int = 0
    seconds: float = 0.0
    problem: Inconsistency | None = None
    notes: list[str] = field(default_factory=list)

    anchors_checked_on_chain: int = 0
    signatures_checked: int = 0

    @property
    def ok(self) -> bool:
        return self.problem is None

    def ok_so_far(self, run: _Run) -> bool:
        return not run.problems

    @property
    def entries_per_second(self) -> float:
        return self.entries / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "grid": self.grid,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "entries": self.entries,
            "envelopes": self.envelopes,
            "roots": self.roots,
            "anchors": self.anchors,
            "anchors_checked_on_chain": self.anchors_checked_on_chain,
            "signatures_checked": self.signatures_checked,
            "kinds": dict(sorted(self.kinds.items())),
            "state_checked": self.state_checked,
            "intervals_compared": self.intervals_compared,
            "seconds": round(self.seconds, 3),
            "entries_per_second": round(self.entries_per_second),
            "problem": None if self.problem is None else str(self.problem),
            "notes": self.notes,
        }


class _Stop(Exception):
    """A chain-level inconsistency: stop reading further."""


class SignatureChecker:
    """Envelopes go to worker processes in chunks; problems come back with their seq."""

    def __init__(self, grid: str, workers: int) -> None:
        self.grid = grid
        self.workers = workers
        self.pool: ProcessPoolExecutor | None = None
        if workers > 1:
            self.pool = ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("spawn")
            )
        self._buffer: list[tuple[int, bytes]] = []
        self._inflight: deque[Future[list[tuple[int, str]]]] = deque()
        self.problems: list[tuple[int, str]] = []

    def add(self, seq: int, raw: bytes) -> None:
        self._buffer.append((seq, raw))
        if len(self._buffer) >= SIGNATURE_CHUNK:
            self._submit()

    def _submit(self) -> None:
        items, self._buffer = self._buffer, []
        if not items:
            return
        if self.pool is None:
            self.problems.extend(check_envelopes(self.grid, items))
        else:
            self._inflight.append(self.pool.submit(check_envelopes, self.grid, items))

    async def settle(self, *, all_of_them: bool = False) -> None:
        """Collect finished chunks; wait while too many are in flight (or for all)."""
        if all_of_them:
            self._submit()
        while self._inflight and (
            all_of_them or self._inflight[0].done() or len(self._inflight) > 2 * self.workers
        ):
            done: list[tuple[int, str]] = await asyncio.wrap_future(self._inflight.popleft())
            self.problems.extend(done)

    def close(self) -> None:
        if self.pool is not None:
            for future in self._inflight:
                future.cancel()
            self.pool.shutdown(wait=True, cancel_futures=True)


async def verify_log(
    url: str,
    *,
    grid: str | None = None,
    from_seq: int | None = None,
    to_seq: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    workers: int | None = None,
    check_state: bool = True,
    node: str | None = None,
    anchors: str = "latest",
    checkpoint: Path | None = None,
) -> VerifyReport:
    """Verify the log of ``url`` (or a range of it); see the module doc.

    ``checkpoint``: a file naming an entry up to which an earlier run verified
    every signature (``{"grid", "seq", "hash"}``). Envelopes up to it are not
    verified again, provided the recomputed chain hash of that entry is the
    one recorded (it commits to every byte before it); everything else (the
    chain, roots, tables, anchors) is checked in full. A successful run of
    the whole chain writes the file anew. Keep it where the database's
    administrators cannot write.
    """
    started = time.perf_counter()
    db = Database(url)
    workers = (os.cpu_count() or 1) if workers is None else workers
    try:
        async with db.read_engine.connect() as raw_conn:
            conn = raw_conn
            if db.is_postgres:
                conn = await raw_conn.execution_options(isolation_level="REPEATABLE READ")
            async with conn.begin():
                report = await _verify(
                    db,
                    conn,
                    grid=grid,
                    from_seq=from_seq,
                    to_seq=to_seq,
                    since=since,
                    until=until,
                    workers=workers,
                    check_state=check_state,
                    node=node,
                    anchors=anchors,
                    checkpoint=checkpoint,
                )
    finally:
        await db.dispose()
    report.seconds = time.perf_counter() - started
    return report


async def _verify(
    db: Database,
    conn: AsyncConnection,
    *,
    grid: str | None,
    from_seq: int | None,
    to_seq: int | None,
    since: datetime | None,
    until: datetime | None,
    workers: int,
    check_state: bool,
    node: str | None,
    anchors: str,
    checkpoint: Path | None = None,
) -> VerifyReport:
    if grid is None:
        grids = (await conn.execute(select(chain_heads.c.grid))).scalars().all()
        if len(grids) != 1:
            raise ValueError(f"the database holds {len(grids)} grids; name one with --grid")
        grid = str(grids[0])
    head = await conn.scalar(select(func.max(log_entries.c.seq)).where(log_entries.c.grid == grid))
    head = int(head or 0)
    first, last = 1, head
    if since is not None or until is not None:
        first, last = await _seq_range(conn, grid, since, until)
    if from_seq is not None:
        first = max(first, from_seq)
    if to_seq is not None:
        last = min(last, to_seq)
    report = VerifyReport(grid, first, last)
    whole = first == 1 and last == head
    report.state_checked = check_state and whole
    if not whole:
        report.notes.append(
            f"entries {first}–{last} of {head}: chain, roots and signatures checked; the "
            "tables are only compared when the whole log is verified"
        )
    run = _Run(db, conn, grid, report, workers)
    saved = None if checkpoint is None else read_checkpoint(checkpoint)
    if saved is not None:
        if saved.get("grid") != grid:
            raise ValueError(f"{checkpoint} is the checkpoint of grid {saved.get('grid')!r}")
        if first == 1:
            run.trusted = (int(saved["seq"]), bytes.fromhex(saved["hash"]))
            report.notes.append(
                f"signatures up to entry {run.trusted[0]} were verified by an earlier run "
                f"({checkpoint}); the chain hash there matched"
            )
    try:
        await run.go()
        if node is not None and anchors != "none" and run.anchor_records and report.ok_so_far(run):
            await run.check_chain(node, every=anchors == "all")
            run.conclude()
        if checkpoint is not None and report.ok and first == 1 and run.last_hash is not None:
            write_checkpoint(checkpoint, grid, last, run.last_hash)
    finally:
        run.signatures.close()
    return report


def read_checkpoint(path: Path) -> dict[str, Any] | None:
    """The checkpoint file of an earlier run, if there is one."""
    if not path.exists():
        return None
    saved: dict[str, Any] = orjson.loads(path.read_bytes())
    return saved


def write_checkpoint(path: Path, grid: str, seq: int, digest: bytes) -> None:
    path.write_bytes(orjson.dumps({"grid": grid, "seq": seq, "hash": digest.hex()}))


async def _seq_range(
    conn: AsyncConnection, grid: str, since: datetime | None, until: datetime | None
) -> tuple[int, int]:
    query = select(audit_roots.c.seq, audit_roots.c.first_seq).where(audit_roots.c.grid == grid)
    if since is not None:
        query = query.where(audit_roots.c.interval_to > since)
    if until is not None:
        query = query.where(audit_roots.c.interval_from < until)
    rows = (await conn.execute(query.order_by(audit_roots.c.seq))).all()
    if not rows:
        raise ValueError("no closed interval in that time range")
    return int(rows[0].first_seq), int(rows[-1].seq)


class _Run:
    def __init__(
        self, db: Database, conn: AsyncConnection, grid: str, report: VerifyReport, workers: int
    ) -> None:
        self.db = db
        self.conn = conn
        self.grid = grid
        self.report = report
        self.signatures = SignatureChecker(grid, workers)
        self.replay = Replay()
        self.problems: list[Inconsistency] = []
        self.state = report.state_checked
        self.pid_address: dict[int, str] = {}
        self.roots: dict[int, Any] = {}
        self.anchors: dict[int, Any] = {}
        self.anchor_records: list[tuple[int, dict[str, Any]]] = []
        # (seq, chain hash) up to which signatures were verified before (checkpoint).
        self.trusted: tuple[int, bytes] | None = None
        self.last_hash: bytes | None = None
        self.seen_roots: list[RootFields] = []
        self.segment_start = 1
        self.segment: list[bytes] = []
        self.partitions_done: set[datetime] = set()

    def problem(self, seq: int, table: str, row: str, message: str) -> None:
        self.problems.append(Inconsistency(seq, table, row, message))

    def stop(self, seq: int, table: str, row: str, message: str) -> None:
        self.problem(seq, table, row, message)
        raise _Stop

    async def go(self) -> None:
        report = self.report
        conn = self.conn
        self.pid_address = {
            int(r.id): r.address
            for r in await conn.execute(select(participants.c.id, participants.c.address))
        }
        self.roots = {
            int(r.seq): r
            for r in await conn.execute(select(audit_roots).where(audit_roots.c.grid == self.grid))
        }
        self.anchors = {
            int(r.log_seq): r
            for r in await conn.execute(
                select(audit_anchors).where(audit_anchors.c.grid == self.grid)
            )
        }
        prev_hash = GENESIS_HASH
        if report.first_seq > 1:
            before = await conn.scalar(
                select(log_entries.c.hash).where(
                    log_entries.c.grid == self.grid, log_entries.c.seq == report.first_seq - 1
                )
            )
            if before is None:
                self.problem(
                    report.first_seq - 1, "log_entries", f"seq {report.first_seq - 1}", "is missing"
                )
                self._finish()
                return
            prev_hash = bytes(before)
            self.segment_start = report.first_seq  # roots starting earlier are not checkable
        self.segment_start_known = report.first_seq == 1
        try:
            expected = report.first_seq
            for start in range(report.first_seq, report.last_seq + 1, BATCH):
                end = min(start + BATCH - 1, report.last_seq)
                rows = (await conn.execute(_log_query(self.grid, start, end))).all()
                expected_envelopes: dict[int, tuple[Any, ...]] = {}
                actual_envelopes: dict[tuple[Any, ...], tuple[Any, ...]] = {}
                for row in rows:
                    seq = int(row.seq)
                    if seq != expected:
                        self.stop(expected, "log_entries", f"seq {expected}", "is missing")
                    body = bytes(row.body)
                    digest = bytes(row.hash)
                    if bytes(row.prev_hash) != prev_hash:
                        self.stop(
                            seq,
                            "log_entries",
                            f"seq {seq}",
                            "prev_hash does not link to the entry before (reordered or removed)",
                        )
                    if entry_hash(prev_hash, seq, row.kind, row.ref, body_hash(body)) != digest:
                        self.stop(
                            seq,
                            "log_entries",
                            f"seq {seq} ({row.kind} {row.ref})",
                            "hash does not match the entry's fields and body (changed)",
                        )
                    prev_hash = digest
                    if (
                        self.trusted is not None
                        and seq == self.trusted[0]
                        and digest != self.trusted[1]
                    ):
                        self.stop(
                            seq,
                            "log_entries",
                            f"seq {seq}",
                            "the chain hash differs from the checkpoint's: the log before "
                            "it was changed since it was verified",
                        )
                    if row.e_log_seq is not None:
                        actual_envelopes[(seq,)] = self._stored_envelope(row)
                    expected += 1
                    report.entries += 1
                    report.kinds[row.kind] += 1
                    self.segment.append(digest)
                    await self.entry(
                        seq,
                        row.kind,
                        row.ref,
                        body,
                        digest=digest,
                        created_at=row.created_at,
                        expected_envelopes=expected_envelopes,
                    )
                if expected != end + 1:
                    self.stop(expected, "log_entries", f"seq {expected}", "is missing")
                want = {(seq,): (v, seq) for seq, v in expected_envelopes.items()}
                self.problems.extend(
                    compare_rows("envelopes", ENVELOPE_FIELDS, want, actual_envelopes)
                )
                await self.signatures.settle()
                self._signature_problems()
            await self.signatures.settle(all_of_them=True)
            self._signature_problems()
            if self.trusted is not None and self.trusted[0] > report.last_seq:
                self.stop(
                    report.last_seq,
                    "log_entries",
                    f"seq {self.trusted[0]}",
                    "the checkpoint names an entry beyond the log (entries were removed)",
                )
            self.last_hash = prev_hash
            await self._finish_state()
        except _Stop:
            await self.signatures.settle(all_of_them=True)
            self._signature_problems(stop=False)
        self._finish()

    def _signature_problems(self, *, stop: bool = True) -> None:
        if not self.signatures.problems:
            return
        seq, message = min(self.signatures.problems)
        self.signatures.problems.clear()
        self.problem(seq, "log_entries", f"seq {seq} (envelope)", message)
        if stop:
            raise _Stop

    def _finish(self) -> None:
        self.conclude()
        if self.replay.not_replayed:
            self.report.notes.append(
                "not replayed: "
                + ", ".join(f"{k} ×{n}" for k, n in sorted(self.replay.not_replayed.items()))
            )

    def conclude(self) -> None:
        if self.problems:
            # In log order; at one entry, the log's own problem before the tables'.
            self.report.problem = min(
                self.problems, key=lambda p: (p.seq, p.table != "log_entries", p.table, p.row)
            )

    # --- one entry ---

    async def entry(
        self,
        seq: int,
        kind: str,
        ref: str,
        body: bytes,
        *,
        digest: bytes,
        created_at: datetime,
        expected_envelopes: dict[int, tuple[Any, ...]],
    ) -> None:
        try:
            if kind == "envelope":
                self._envelope(seq, ref, body, created_at, expected_envelopes)
            elif kind == "root":
                self._root(seq, ref, body, digest)
            elif kind == "anchor":
                self._anchor(seq, body)
            elif self.state:
                record = orjson.loads(body)
                if kind == "market_result":
                    self.replay.market_result(seq, created_at, record)
                elif kind == "settlement":
                    t = self.replay.settlement(seq, created_at, record)
                    await self._compare_partition(t)
                elif kind == "statement":
                    self.replay.statement(seq, created_at, record)
                elif kind == "operator":
                    self.replay.operator(seq, created_at, record)
                elif kind == "participant":
                    self.replay.participant_entry(seq, record)
                elif kind == "payment":
                    self.replay.payment(seq, created_at, record)
                elif kind == "payout":
                    self.replay.payout(seq, created_at, record)
                elif kind == "ledger":
                    self.replay.ledger(seq, created_at, self.grid, record)
                else:
                    self.replay.not_replayed[kind] += 1
        except ReplayError as exc:
            self.problem(seq, "log_entries", f"seq {seq} ({kind} {ref})", str(exc))
            self.state = False  # the replay cannot go on meaningfully
            self.report.notes.append(f"state comparison stopped at entry {seq}")
        except (KeyError, TypeError, ValueError, orjson.JSONDecodeError) as exc:
            self.problem(
                seq, "log_entries", f"seq {seq} ({kind} {ref})", f"malformed body: {exc!r}"
            )
            self.state = False
            self.report.notes.append(f"state comparison stopped at entry {seq}")

    def _envelope(
        self,
        seq: int,
        ref: str,
        raw: bytes,
        created_at: datetime,
        expected_envelopes: dict[int, tuple[Any, ...]],
    ) -> None:
        self.report.envelopes += 1
        if self.trusted is None or seq > self.trusted[0]:
            self.signatures.add(seq, raw)
            self.report.signatures_checked += 1
        wire = orjson.loads(raw)
        payload = wire["payload"]
        sender, payload_seq = payload["sender"], payload["seq"]
        if ref != f"{sender}/{payload_seq}":
            self.stop(
                seq, "log_entries", f"seq {seq}", f"ref {ref!r} is not the envelope's sender/seq"
            )
        expected_envelopes[seq] = (
            base64.b64decode(wire["signature"]),
            sender,
            sender,
            payload["type"],
            payload_seq,
            self.replay._t(payload["ts"]),
            payload_hash(canonical_json(payload)),
            RAW_SAME,
            created_at,
        )
        if self.state:
            self.replay.envelope(seq, created_at, wire)

    def _root(self, seq: int, ref: str, body: bytes, digest: bytes) -> None:
        self.report.roots += 1
        record = orjson.loads(body)
        first, last = record["first_seq"], record["last_seq"]
        row = self.roots.pop(seq, None)
        label = f"seq {seq} (root of {ref})"
        if self.segment_start_known and first != self.segment_start:
            self.stop(
                seq, "log_entries", label, f"the range starts at {first}, not {self.segment_start}"
            )
        if not first - 1 <= last < seq:
            self.stop(seq, "log_entries", label, f"range {first}–{last} is not before the root")
        covered = first >= self.segment_start
        if covered:
            offset = first - self.segment_start
            hashes = self.segment[offset : offset + (last - first + 1)]
            chunks = chunk_roots(hashes)
            root = tree_root(chunks)
            if root.hex() != record["root"]:
                self.stop(seq, "log_entries", label, "the Merkle root does not match the entries")
            if row is not None and bytes(row.chunks) != pack(chunks):
                self.problem(seq, "audit_roots", f"seq {seq}", "chunks do not match the entries")
        self.segment = self.segment[last + 1 - self.segment_start :]
        self.segment_start = last + 1
        self.segment_start_known = True
        root_bytes = bytes.fromhex(record["root"])
        if row is None:
            self.problem(seq, "audit_roots", f"seq {seq}", "is missing from the table")
        else:
            want = root_body(
                row.interval_from,
                row.interval_to,
                int(row.first_seq),
                int(row.last_seq),
                bytes(row.root),
            )
            if want != body:
                self.problem(seq, "audit_roots", f"seq {seq}", "differs from the root entry")
            elif bytes(row.entry_hash) != digest:
                self.problem(seq, "audit_roots", f"seq {seq}", "entry_hash differs from the log")
        self.seen_roots.append(RootFields(seq, first, last, root_bytes, digest))

    def _anchor(self, seq: int, body: bytes) -> None:
        self.report.anchors += 1
        record = orjson.loads(body)
        members = [
            r
            for r in self.seen_roots
            if record["first_root_seq"] <= r.seq <= record["last_root_seq"]
        ]
        label = f"seq {seq} (anchor of roots {record['first_root_seq']}–{record['last_root_seq']})"
        if (
            members
            and members[0].seq == record["first_root_seq"]
            and members[-1].seq == record["last_root_seq"]
        ):
            batch = make_batch(members)
            if (
                batch.batch_root.hex() != record["batch_root"]
                or batch.payload.hex() != record["payload"]
            ):
                self.stop(seq, "log_entries", label, "the anchored batch does not match the roots")
        elif self.report.first_seq == 1:
            self.stop(seq, "log_entries", label, "names roots the log does not hold")
        if self.anchor_records:
            before = self.anchor_records[-1][1]
            if record["object_id"] != before["object_id"]:
                self.problem(seq, "log_entries", label, "anchors in another notarization object")
            elif record["state_version"] != before["state_version"] + 1:
                self.problem(
                    seq,
                    "log_entries",
                    label,
                    f"state version {record['state_version']} does not follow "
                    f"{before['state_version']}: an anchor is missing from the log",
                )
        elif self.report.first_seq == 1 and record["state_version"] != 0:
            self.problem(seq, "log_entries", label, "the first anchor must create the object")
        self.anchor_records.append((seq, record))
        row = self.anchors.pop(seq, None)
        if row is None:
            self.problem(seq, "audit_anchors", label, "is missing from the table")
            return
        have = {
            "first_root_seq": int(row.first_root_seq),
            "last_root_seq": int(row.last_root_seq),
            "batch_root": bytes(row.batch_root).hex(),
            "payload": bytes(row.payload).hex(),
            "ledger": row.ledger,
            "network": row.network,
            "package": row.package,
            "object_id": row.object_id,
            "digest": row.digest,
            "object_version": int(row.object_version),
            "state_version": int(row.state_version),
        }
        for key, value in have.items():
            if record.get(key) != value:
                self.problem(
                    seq,
                    "audit_anchors",
                    label,
                    f"{key} is {value!r} in the table, the log says {record.get(key)!r}",
                )
                return

    async def check_chain(self, node: str, *, every: bool) -> None:
        """Compare the anchors in the log with what the IOTA node shows."""
        async with IotaRpcClient(node) as rpc:
            owner = await self.conn.scalar(
                select(ledger_heads.c.address).where(ledger_heads.c.grid == self.grid)
            )
            seq, latest = self.anchor_records[-1]
            label = f"seq {seq} (anchor {latest['digest']})"
            payload = bytes.fromhex(latest["payload"])
            try:
                state = await read_state(rpc, latest["object_id"])
                if owner is not None and state.owner != owner:
                    self.problem(
                        seq,
                        "iota",
                        label,
                        f"the object is owned by {state.owner}, not the grid ({owner})",
                    )
                    return
                if state.state_version < latest["state_version"]:
                    self.problem(
                        seq,
                        "iota",
                        label,
                        f"the chain shows state version {state.state_version}, the log "
                        f"{latest['state_version']}",
                    )
                    return
                if state.state_version > latest["state_version"]:
                    state = await read_past_state(
                        rpc, latest["object_id"], latest["object_version"]
                    )
                if state.data != payload:
                    self.problem(
                        seq,
                        "iota",
                        label,
                        "the notarized bytes on chain differ from the log's anchor",
                    )
                    return
                self.report.anchors_checked_on_chain += 1
                if every:
                    for seq, record in self.anchor_records[:-1]:
                        on_chain = await read_anchored_payload(
                            rpc, record["digest"], record["object_id"], record["object_version"]
                        )
                        if on_chain != bytes.fromhex(record["payload"]):
                            self.problem(
                                seq,
                                "iota",
                                f"seq {seq} (anchor {record['digest']})",
                                "the notarized bytes on chain differ from the log's anchor",
                            )
                            return
                        self.report.anchors_checked_on_chain += 1
            except (NotarizationError, LedgerError) as exc:
                self.problem(seq, "iota", label, f"cannot be confirmed on chain: {exc}")

    # --- tables ---

    def _stored_envelope(self, row: Any) -> tuple[Any, ...]:
        return (
            bytes(row.e_signature),
            None
            if row.e_participant_id is None
            else self.pid_address.get(int(row.e_participant_id)),
            row.e_sender,
            row.e_type,
            int(row.e_seq),
            row.e_ts,
            bytes(row.e_payload_hash),
            RAW_SAME if row.e_same_raw else RAW_DIFFERENT,
            row.e_received_at,
        )

    async def _compare_partition(self, t: datetime) -> None:
        part = self.replay.partitions.pop(t, None)
        self.partitions_done.add(t)
        if part is None:
            return
        self.report.intervals_compared += 1
        conn = self.conn
        addr = self.pid_address.get
        found: list[Inconsistency] = []
        label = format_utc(t)
        readings_rows = {
            (addr(int(r.participant_id)), r.asset_id): (
                int(r.energy_wh),
                int(r.envelope),
                r.recorded_at,
                int(r.revision),
            )
            for r in await conn.execute(select(readings).where(readings.c.interval_start == t))
        }
        found += compare_rows(f"readings {label}", READING_FIELDS, part.readings, readings_rows)
        history_rows = [
            (
                addr(int(r.participant_id)),
                r.asset_id,
                int(r.energy_wh),
                int(r.envelope),
                r.recorded_at,
                int(r.revision),
                r.replaced_at,
                int(r.replaced_by),
            )
            for r in await conn.execute(
                select(reading_history).where(reading_history.c.interval_start == t)
            )
        ]
        found += compare_multiset(f"reading_history {label}", part.history, history_rows, str)
        order_rows = {
            (addr(int(r.participant_id)), r.order_id): (
                r.side,
                int(r.energy_wh),
                r.price,
                int(r.price_ticks),
                r.zone,
                int(r.envelope),
                r.placed_at,
            )
            for r in await conn.execute(select(orders).where(orders.c.interval_start == t))
        }
        found += compare_rows(f"orders {label}", ORDER_FIELDS, Replay.order_rows(part), order_rows)
        interval = (
            await conn.execute(select(intervals).where(intervals.c.start == t))
        ).one_or_none()
        interval_rows: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        if interval is not None and not (part.interval is None and interval.state == "open"):
            interval_rows[()] = (
                interval.state,
                interval.cleared_at,
                interval.settled_at,
                interval.welfare,
                interval.orders,
            )
        want_interval = {} if part.interval is None else {(): part.interval}
        found += compare_rows(f"intervals {label}", INTERVAL_FIELDS, want_interval, interval_rows)
        zone_rows = {
            (r.zone,): (
                int(r.price_ticks),
                int(r.bought_wh),
                int(r.sold_wh),
                int(r.utility_buy_wh),
                int(r.utility_sell_wh),
                int(r.flow_to_parent_wh),
            )
            for r in await conn.execute(
                select(zone_results).where(zone_results.c.interval_start == t)
            )
        }
        found += compare_rows(f"zone_results {label}", ZONE_RESULT_FIELDS, part.zones, zone_rows)
        fill_rows = {
            (addr(int(r.participant_id)), r.order_id): (
                r.side,
                r.zone,
                int(r.energy_wh),
                int(r.filled_wh),
                int(r.price_ticks),
                int(r.limit_ticks),
            )
            for r in await conn.execute(select(fills).where(fills.c.interval_start == t))
        }
        found += compare_rows(f"fills {label}", FILL_FIELDS, part.fills, fill_rows)
        line_rows = [
            (
                None if r.participant_id is None else addr(int(r.participant_id)),
                r.kind,
                int(r.energy_wh),
                int(r.price_ticks),
                int(r.amount_micro),
            )
            for r in await conn.execute(select(line_items).where(line_items.c.interval_start == t))
        ]
        found += compare_multiset(f"line_items {label}", part.lines, line_rows, str)
        self.problems.extend(found)

    async def _finish_state(self) -> None:
        report = self.report
        conn = self.conn
        if report.state_checked:
            chain = (
                await conn.execute(select(chain_heads).where(chain_heads.c.grid == self.grid))
            ).one_or_none()
            if chain is None or int(chain.seq) != report.last_seq:
                self.problem(
                    report.last_seq, "chain_heads", self.grid, "does not name the last entry"
                )
        for seq, _row in sorted(self.roots.items()):
            if report.first_seq <= seq <= report.last_seq:
                self.problem(seq, "audit_roots", f"seq {seq}", "names no root entry of the log")
        for seq, _row in sorted(self.anchors.items()):
            if report.first_seq <= seq <= report.last_seq:
                self.problem(
                    seq, "audit_anchors", f"log seq {seq}", "names no anchor entry of the log"
                )
        if not self.state:
            return
        orphans = (
            select(func.count())
            .select_from(
                envelopes.outerjoin(
                    log_entries,
                    (log_entries.c.seq == envelopes.c.log_seq) & (log_entries.c.grid == self.grid),
                )
            )
            .where(log_entries.c.seq.is_(None))
        )
        extra_envelopes = await conn.scalar(orphans)
        if extra_envelopes:
            self.problem(
                NO_ENTRY,
                "envelopes",
                "(no log entry)",
                f"{extra_envelopes} rows name log entries that do not exist",
            )
        for t in sorted(self.replay.partitions):
            await self._compare_partition(t)
        # Intervals that only the tables know.
        for table, column in (
            (readings, readings.c.interval_start),
            (reading_history, reading_history.c.interval_start),
            (orders, orders.c.interval_start),
            (fills, fills.c.interval_start),
            (zone_results, zone_results.c.interval_start),
            (line_items, line_items.c.interval_start),
        ):
            for t in (await conn.execute(select(column).distinct())).scalars():
                if t not in self.partitions_done:
                    self.problem(
                        NO_ENTRY,
                        table.name,
                        format_utc(t),
                        "rows for an interval no log entry touched",
                    )
        for t in (
            await conn.execute(select(intervals.c.start).where(intervals.c.state != "open"))
        ).scalars():
            if t not in self.partitions_done:
                self.problem(
                    NO_ENTRY, "intervals", format_utc(t), "is cleared, but the log never cleared it"
                )
        # Participants, assets, statements, zones, prices.
        part_rows = {
            (r.address,): (
                bytes(r.public_key),
                r.name,
                r.zone,
                r.role,
                r.status,
                int(r.last_seq),
                r.joined_at,
                r.status_changed_at,
            )
            for r in await conn.execute(select(participants))
        }
        self.problems.extend(
            compare_rows(
                "participants", PARTICIPANT_FIELDS, self.replay.participant_rows(), part_rows
            )
        )
        asset_rows = [
            (
                self.pid_address.get(int(r.participant_id)),
                r.asset_id,
                r.category,
                r.kind,
                r.name,
                r.rated_power_w,
                r.valid_from,
                r.valid_until,
            )
            for r in await conn.execute(select(assets))
        ]
        self.problems.extend(compare_multiset("assets", self.replay.asset_rows(), asset_rows, str))
        statement_rows = {
            (r.id,): (
                self.pid_address.get(int(r.participant_id)),
                r.period_start,
                r.period_end,
                r.currency,
                int(r.amount_due_micro),
                int(r.paid_micro),
                r.status,
                r.issued_at,
                int(r.intervals),
            )
            for r in await conn.execute(select(statements))
        }
        self.problems.extend(self.replay.statements.compare(statement_rows))
        zone_rows = {
            (r.id,): (
                r.name,
                r.parent,
                int(r.fee_ticks),
                r.capacity_up_wh,
                r.capacity_down_wh,
                r.updated_at,
            )
            for r in await conn.execute(select(zones))
        }
        self.problems.extend(self.replay.zones.compare(zone_rows))
        price_rows = {
            (r.effective_from,): (int(r.retail_ticks), int(r.feed_in_ticks), r.created_at)
            for r in await conn.execute(select(utility_prices))
        }
        self.problems.extend(self.replay.prices.compare(price_rows))
        await self._compare_payments()

    async def _compare_payments(self) -> None:
        conn = self.conn
        replay = self.replay
        addr = self.pid_address.get
        terms_rows = {
            (r.statement_id,): (r.ledger, r.unit, r.rate, int(r.amount_due), int(r.paid), r.due_at)
            for r in await conn.execute(select(statement_terms))
        }
        self.problems.extend(replay.terms.compare(terms_rows))
        payment_rows = {
            (r.tx_id,): (
                r.statement_id,
                addr(int(r.participant_id)),
                r.ledger,
                int(r.received),
                int(r.credited),
                int(r.envelope),
                r.recorded_at,
            )
            for r in await conn.execute(select(payments))
        }
        self.problems.extend(replay.payments.compare(payment_rows))
        payout_rows = {
            (int(r.id),): (
                r.tx_id,
                addr(int(r.participant_id)),
                r.ledger,
                int(r.amount),
                r.state,
                r.created_at,
                r.completed_at,
                None if r.error is None else r.error[:500],
            )
            for r in await conn.execute(select(payouts))
        }
        self.problems.extend(replay.payouts.compare(payout_rows))
        item_rows = {
            (int(r.payout_id), r.statement_id): (int(r.amount),)
            for r in await conn.execute(select(payout_items))
        }
        self.problems.extend(replay.payout_items.compare(item_rows))
        entry_rows = {
            (int(r._mapping["index"]),): (
                r.tx_id,
                r.kind,
                r.sender,
                r.recipient,
                int(r.amount),
                int(r.seq),
                r.memo,
                None if r.public_key is None else bytes(r.public_key),
                None if r.signature is None else bytes(r.signature),
                bytes(r.prev_hash),
                bytes(r.hash),
                r.created_at,
            )
            for r in await conn.execute(select(ledger_entries))
        }
        self.problems.extend(replay.ledger_entries.compare(entry_rows))
        account_rows = {
            (r.address,): (int(r.balance), int(r.seq))
            for r in await conn.execute(select(ledger_accounts))
            if r.balance or r.seq or (r.address,) in replay.accounts.rows
        }
        self.problems.extend(replay.accounts.compare(account_rows))
        head = (
            await conn.execute(select(ledger_heads).where(ledger_heads.c.grid == self.grid))
        ).one_or_none()
        if head is not None:
            have = (int(head.entries), bytes(head.hash), int(head.minted), int(head.mints))
            self.problems.extend(
                compare_rows(
                    "ledger_heads",
                    LEDGER_HEAD_FIELDS,
                    {(self.grid,): (replay.ledger_head, replay.ledger_head_seq or NO_ENTRY - 1)},
                    {(self.grid,): have},
                )
            )


__all__ = ["SignatureChecker", "VerifyReport", "verify_log"]
