"""One pass over the log, in sequence order, inside one read snapshot, feeding each entry to
the checkers; the first inconsistency in log order is the verdict."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from grid_server.storage import audit_snapshot as snapshot
from grid_server.storage import ledger, participants
from grid_server.storage.db import Database
from p2p_energy_client.receipts import GENESIS_HASH

from ..audit_replay import ReplayError
from .anchors import AnchorEntries, AnchorsOnChain
from .chain import ChainLinks
from .envelopes import EnvelopeEntries, SignatureChecker
from .findings import Findings, Stop, VerifyReport
from .roots import IntervalRoots
from .tables import TablesMatchLog

BATCH: Final = 5_000  # log entries per query


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
    from_checkpoint: bool = False,
) -> VerifyReport:
    """Verify the log of ``url`` (or a range of it); see the package doc.

    ``checkpoint``: a file naming an entry up to which an earlier run verified
    every signature (``{"grid", "seq", "hash"}``). Envelopes up to it are not
    verified again, provided the recomputed chain hash of that entry is the
    one recorded (it commits to every byte before it); everything else (the
    chain, roots, tables, anchors) is checked in full. A successful run of
    the whole chain writes the file anew. Keep it where the database's
    administrators cannot write. A range run that holds the checkpoint's entry
    trusts it the same way (the recomputed hash there binds everything before
    the range) and moves it on.

    ``from_checkpoint``: verify only from the checkpoint on, not from entry 1:
    from the start of its interval root's range (so that root is recomputed
    too) to the head. What is new gets its chain, roots and signatures checked
    in time proportional to it, not to the log; the tables are not compared
    (that needs the whole log replayed). Without a checkpoint file yet, the
    whole log is verified (and the file written).
    """
    if from_checkpoint and checkpoint is None:
        raise ValueError("--from-checkpoint needs --checkpoint FILE")
    if from_checkpoint and (from_seq is not None or since is not None):
        raise ValueError("--from-checkpoint starts at the checkpoint: no --from-seq or --since")
    saved = None if checkpoint is None else read_checkpoint(checkpoint)
    after = int(saved["seq"]) if from_checkpoint and saved is not None else None
    started = time.perf_counter()
    db = Database(url)
    try:
        async with db.read_engine.connect() as raw_conn:
            conn = raw_conn
            if db.is_postgres:
                conn = await raw_conn.execution_options(isolation_level="REPEATABLE READ")
            async with conn.begin():
                report = await _verify(
                    conn,
                    Scope(grid, from_seq, to_seq, since, until, after=after),
                    workers=(os.cpu_count() or 1) if workers is None else workers,
                    check_state=check_state,
                    node=None if anchors == "none" else node,
                    every_anchor=anchors == "all",
                    checkpoint=checkpoint,
                    saved=saved,
                )
    finally:
        await db.dispose()
    report.seconds = time.perf_counter() - started
    return report


class Scope:
    """Which grid and which entries to verify, as asked."""

    def __init__(
        self,
        grid: str | None,
        from_seq: int | None,
        to_seq: int | None,
        since: datetime | None,
        until: datetime | None,
        *,
        after: int | None = None,
    ) -> None:
        self.grid, self.from_seq, self.to_seq = grid, from_seq, to_seq
        self.since, self.until = since, until
        self.after = after  # a checkpoint's entry: start at its interval root's range
        self.head = 0  # the log's last entry, once :meth:`report` has run

    async def report(self, conn: AsyncConnection) -> tuple[VerifyReport, bool]:
        """An empty report over the entries to verify, and whether that is the whole log."""
        grid = self.grid
        if grid is None:
            grids = await snapshot.grids(conn)
            if len(grids) != 1:
                raise ValueError(f"the database holds {len(grids)} grids; name one with --grid")
            grid = grids[0]
        head = self.head = await snapshot.last_seq(conn, grid)
        first, last = 1, head
        if self.after is not None:
            first = await _segment_start(conn, grid, self.after)
        if self.since is not None or self.until is not None:
            found = await snapshot.seq_range(conn, grid, self.since, self.until)
            if found is None:
                raise ValueError("no closed interval in that time range")
            first, last = found
        if self.from_seq is not None:
            first = max(first, self.from_seq)
        if self.to_seq is not None:
            last = min(last, self.to_seq)
        report = VerifyReport(grid, first, last)
        whole = first == 1 and last == head
        if not whole:
            report.notes.append(
                f"entries {first}–{last} of {head}: chain, roots and signatures checked; the "
                "tables are only compared when the whole log is verified"
            )
        return report, whole


async def _verify(
    conn: AsyncConnection,
    scope: Scope,
    *,
    workers: int,
    check_state: bool,
    node: str | None,
    every_anchor: bool,
    checkpoint: Path | None,
    saved: dict[str, Any] | None,
) -> VerifyReport:
    report, whole = await scope.report(conn)
    report.state_checked = check_state and whole
    trusted = _trusted(checkpoint, saved, report, scope.head)
    signatures = SignatureChecker(report.grid, workers)
    try:
        run = Verification(conn, report, signatures, trusted)
        await run.go()
        if node is not None and run.anchor_records and not run.findings.problems:
            owner = await ledger.owner(conn, report.grid)
            on_chain = AnchorsOnChain(run.findings, report, owner)
            await on_chain.check(node, run.anchor_records, every=every_anchor)
            run.conclude()
        if (
            checkpoint is not None
            and report.ok
            and (report.first_seq == 1 or trusted is not None)
            and run.last_hash is not None
        ):
            write_checkpoint(checkpoint, report.grid, report.last_seq, run.last_hash)
    finally:
        signatures.close()
    return report


async def _segment_start(conn: AsyncConnection, grid: str, seq: int) -> int:
    """The first entry of the interval root range that entry ``seq`` falls in: just after
    the range of the last root entry at or before it (1 before the first root)."""
    body = await snapshot.root_body_before(conn, grid, seq)
    if body is None:
        return 1
    try:
        return min(int(orjson.loads(body)["last_seq"]) + 1, seq)
    except (KeyError, TypeError, ValueError):  # a root changed since: from entry 1, to find it
        return 1


def _trusted(
    checkpoint: Path | None, saved: dict[str, Any] | None, report: VerifyReport, head: int
) -> tuple[int, bytes] | None:
    """The checkpoint's entry and hash, when it applies to this run (see :func:`verify_log`):
    the run starts at or before that entry and reaches it (or the head: a checkpoint beyond
    the head means entries were removed)."""
    if saved is None:
        return None
    if saved.get("grid") != report.grid:
        raise ValueError(f"{checkpoint} is the checkpoint of grid {saved.get('grid')!r}")
    seq = int(saved["seq"])
    if report.first_seq > seq or (seq > report.last_seq and report.last_seq != head):
        return None
    trusted = (seq, bytes.fromhex(saved["hash"]))
    report.notes.append(
        f"signatures up to entry {trusted[0]} were verified by an earlier run "
        f"({checkpoint}); the chain hash there matched"
    )
    return trusted


def read_checkpoint(path: Path) -> dict[str, Any] | None:
    """The checkpoint file of an earlier run, if there is one."""
    if not path.exists():
        return None
    saved: dict[str, Any] = orjson.loads(path.read_bytes())
    return saved


def write_checkpoint(path: Path, grid: str, seq: int, digest: bytes) -> None:
    path.write_bytes(orjson.dumps({"grid": grid, "seq": seq, "hash": digest.hex()}))


@dataclass(frozen=True, slots=True)
class Checkers:
    chain: ChainLinks
    envelopes: EnvelopeEntries
    roots: IntervalRoots
    anchors: AnchorEntries
    tables: TablesMatchLog


class Verification:
    """Reads the log in batches and hands each entry to the checkers that concern it:

    * :class:`ChainLinks`: every entry (a break stops the pass);
    * :class:`EnvelopeEntries`: ``envelope`` entries (a bad signature stops it);
    * :class:`IntervalRoots` and :class:`AnchorEntries`: ``root`` and ``anchor`` entries;
    * :class:`TablesMatchLog`: everything, when the tables are compared.
    """

    def __init__(
        self,
        conn: AsyncConnection,
        report: VerifyReport,
        signatures: SignatureChecker,
        trusted: tuple[int, bytes] | None,
    ) -> None:
        self.conn = conn
        self.report = report
        self.grid = report.grid
        self.signatures = signatures
        self.trusted = trusted
        self.findings = Findings()
        self.anchor_records: list[tuple[int, dict[str, Any]]] = []
        self.last_hash: bytes | None = None  # of the last entry, when the chain held

    async def go(self) -> None:
        report = self.report
        prev_hash = await self._hash_before()
        if prev_hash is None:
            self.conclude()
            return
        checks = await self._checkers(prev_hash)
        self.anchor_records = checks.anchors.records
        try:
            for start in range(report.first_seq, report.last_seq + 1, BATCH):
                await self._batch(checks, start, min(start + BATCH - 1, report.last_seq))
            await checks.envelopes.collect_signatures(all_of_them=True)
            checks.chain.all_read(report.last_seq)
            self.last_hash = checks.chain.prev_hash
            await self._after_the_log(checks)
        except Stop:
            await checks.envelopes.collect_signatures(all_of_them=True, stop=False)
        self.conclude()
        not_replayed = checks.tables.replay.not_replayed
        if not_replayed:
            self.report.notes.append(
                "not replayed: " + ", ".join(f"{k} ×{n}" for k, n in sorted(not_replayed.items()))
            )

    async def _hash_before(self) -> bytes | None:
        """The hash the first verified entry links to (None: that entry is missing)."""
        first = self.report.first_seq
        if first == 1:
            return GENESIS_HASH
        before = await snapshot.entry_hash(self.conn, self.grid, first - 1)
        if before is None:
            self.findings.problem(first - 1, "log_entries", f"seq {first - 1}", "is missing")
        return before

    async def _checkers(self, prev_hash: bytes) -> Checkers:
        first, findings, conn = self.report.first_seq, self.findings, self.conn
        addresses = await participants.addresses(conn)
        tables = TablesMatchLog(findings, self.report, conn, addresses)
        roots = IntervalRoots(findings, await snapshot.roots_by_seq(conn, self.grid), first)
        return Checkers(
            ChainLinks(findings, first, prev_hash, self.trusted),
            EnvelopeEntries(
                findings,
                self.report,
                self.signatures,
                addresses,
                tables.replay.time_of,
                trusted_up_to=None if self.trusted is None else self.trusted[0],
            ),
            roots,
            AnchorEntries(
                findings,
                await snapshot.anchors_by_seq(conn, self.grid),
                roots.seen,
                whole=first == 1,
            ),
            tables,
        )

    async def _batch(self, checks: Checkers, start: int, end: int) -> None:
        report = self.report
        for row in await snapshot.log_batch(self.conn, self.grid, start, end):
            body = bytes(row.body)
            digest = checks.chain.link(row, body)
            checks.envelopes.stored_row(int(row.seq), row)
            report.entries += 1
            report.kinds[row.kind] += 1
            checks.roots.add(digest)
            await self._entry(checks, row, body, digest)
        checks.chain.batch_read(end)
        checks.envelopes.batch_read()
        await checks.envelopes.collect_signatures()

    async def _entry(self, checks: Checkers, row: Any, body: bytes, digest: bytes) -> None:
        """One entry to the checker of its kind; a body the replay cannot apply is a problem
        of that entry, and ends the table comparison."""
        seq, kind, ref, created_at = int(row.seq), row.kind, row.ref, row.created_at
        try:
            if kind == "envelope":
                wire = checks.envelopes.entry(seq, ref, body, created_at)
                checks.tables.envelope(seq, created_at, wire)
            elif kind == "root":
                self.report.roots += 1
                checks.roots.check(seq, ref, body, digest)
            elif kind == "anchor":
                self.report.anchors += 1
                checks.anchors.check(seq, body)
            else:
                await checks.tables.entry(seq, kind, created_at, body)
        except ReplayError as exc:
            self.findings.problem(seq, "log_entries", f"seq {seq} ({kind} {ref})", str(exc))
            checks.tables.stop_at(seq)
        except (KeyError, TypeError, ValueError, orjson.JSONDecodeError) as exc:
            self.findings.problem(
                seq, "log_entries", f"seq {seq} ({kind} {ref})", f"malformed body: {exc!r}"
            )
            checks.tables.stop_at(seq)

    async def _after_the_log(self, checks: Checkers) -> None:
        report = self.report
        if report.state_checked:
            await checks.tables.chain_head()
        checks.roots.leftovers(report.first_seq, report.last_seq)
        checks.anchors.leftovers(report.first_seq, report.last_seq)
        await checks.tables.finish()

    def conclude(self) -> None:
        if self.findings.problems:
            self.report.problem = self.findings.first()


__all__ = ["BATCH", "VerifyReport", "read_checkpoint", "verify_log", "write_checkpoint"]
