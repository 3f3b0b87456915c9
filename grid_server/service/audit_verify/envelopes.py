"""Envelope entries: signed by their sender, named by their sender and seq, stored as logged."""

from __future__ import annotations

import asyncio
import base64
import multiprocessing
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from datetime import datetime
from typing import Any, Final

import orjson

from grid_server.domain.audit_envelopes import check_envelopes
from p2p_energy_client.protocol import canonical_json

from ..audit_replay import ENVELOPE_FIELDS, compare_rows, payload_hash
from .findings import Findings, Stop, VerifyReport

SIGNATURE_CHUNK: Final = 1_000  # envelopes per worker task


class _RawMark(str):
    """How a stored envelope's raw bytes compare with its log entry's body (in SQL)."""


RAW_SAME: Final = _RawMark("equal to the log entry's body")
RAW_DIFFERENT: Final = _RawMark("different from the log entry's body")


class SignatureChecker:
    """Envelopes go to worker processes in chunks; problems come back with their seq.

    Each envelope is opened again from its stored bytes: the signature over
    the canonical payload, key and sender, the payload's rules, this grid.
    """

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


class EnvelopeEntries:
    """Each envelope entry's signature (see :class:`SignatureChecker`; not again up to a
    checkpoint), its ref (the payload's ``sender/seq``), and its ``envelopes`` row: exactly
    the header, payload hash and raw bytes the entry implies, one row per entry.
    """

    def __init__(
        self,
        findings: Findings,
        report: VerifyReport,
        signatures: SignatureChecker,
        addresses: dict[int, str],
        time_of: Callable[[str], datetime],
        *,
        trusted_up_to: int | None,
    ) -> None:
        self.findings = findings
        self.report = report
        self.signatures = signatures
        self.addresses = addresses
        self.time_of = time_of
        self.trusted_up_to = trusted_up_to
        self.expected: dict[int, tuple[Any, ...]] = {}
        self.stored: dict[tuple[Any, ...], tuple[Any, ...]] = {}

    def stored_row(self, seq: int, row: Any) -> None:
        """The ``envelopes`` row joined to a log row (``e_*``), if there is one."""
        if row.e_log_seq is None:
            return
        self.stored[(seq,)] = (
            bytes(row.e_signature),
            None if row.e_participant_id is None else self.addresses.get(int(row.e_participant_id)),
            row.e_sender,
            row.e_type,
            int(row.e_seq),
            row.e_ts,
            bytes(row.e_payload_hash),
            RAW_SAME if row.e_same_raw else RAW_DIFFERENT,
            row.e_received_at,
        )

    def entry(self, seq: int, ref: str, raw: bytes, created_at: datetime) -> dict[str, Any]:
        """Check an envelope entry; returns the envelope as its wire dict."""
        self.report.envelopes += 1
        if self.trusted_up_to is None or seq > self.trusted_up_to:
            self.signatures.add(seq, raw)
            self.report.signatures_checked += 1
        wire: dict[str, Any] = orjson.loads(raw)
        payload = wire["payload"]
        sender, payload_seq = payload["sender"], payload["seq"]
        if ref != f"{sender}/{payload_seq}":
            self.findings.stop(
                seq, "log_entries", f"seq {seq}", f"ref {ref!r} is not the envelope's sender/seq"
            )
        self.expected[seq] = (
            base64.b64decode(wire["signature"]),
            sender,
            sender,
            payload["type"],
            payload_seq,
            self.time_of(payload["ts"]),
            payload_hash(canonical_json(payload)),
            RAW_SAME,
            created_at,
        )
        return wire

    def batch_read(self) -> None:
        """Compare the batch's ``envelopes`` rows with its entries."""
        want = {(seq,): (v, seq) for seq, v in self.expected.items()}
        self.findings.extend(compare_rows("envelopes", ENVELOPE_FIELDS, want, self.stored))
        self.expected, self.stored = {}, {}

    async def collect_signatures(self, *, all_of_them: bool = False, stop: bool = True) -> None:
        """Take in the workers' results; the first bad signature stops the verification."""
        await self.signatures.settle(all_of_them=all_of_them)
        if not self.signatures.problems:
            return
        seq, message = min(self.signatures.problems)
        self.signatures.problems.clear()
        self.findings.problem(seq, "log_entries", f"seq {seq} (envelope)", message)
        if stop:
            raise Stop


__all__ = ["RAW_DIFFERENT", "RAW_SAME", "EnvelopeEntries", "SignatureChecker"]
