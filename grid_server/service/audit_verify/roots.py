"""Interval roots: each root entry's range and Merkle root, and the ``audit_roots`` table."""

from __future__ import annotations

from typing import Any

import orjson

from grid_server.domain.audit_merkle import chunk_roots, pack, tree_root
from grid_server.domain.audit_roots import RootFields, root_body

from .findings import Findings

TABLE = "audit_roots"


class IntervalRoots:
    """Each ``root`` entry's range starts right after the previous root's and ends before the
    root; its Merkle root is recomputed from the entries' hashes; its ``audit_roots`` row
    holds the same fields, chunk roots and entry hash. A row that no root entry of the
    verified range made is reported at the end.

    A verification that starts inside the log cannot check the first root whose range
    began before it, only the roots after.
    """

    def __init__(self, findings: Findings, rows: dict[int, Any], first_seq: int) -> None:
        self.findings = findings
        self.rows = rows  # by the root entry's seq; checked rows are taken out
        self.segment_start = first_seq  # the first entry not covered by a root yet
        self.segment_start_known = first_seq == 1
        self.segment: list[bytes] = []  # the hashes of the entries from segment_start on
        self.seen: list[RootFields] = []

    def add(self, digest: bytes) -> None:
        """Every entry's hash, in order (root entries included)."""
        self.segment.append(digest)

    def check(self, seq: int, ref: str, body: bytes, digest: bytes) -> None:
        record = orjson.loads(body)
        first, last = record["first_seq"], record["last_seq"]
        label = f"seq {seq} (root of {ref})"
        row = self.rows.pop(seq, None)
        if self.segment_start_known and first != self.segment_start:
            self.findings.stop(
                seq, "log_entries", label, f"the range starts at {first}, not {self.segment_start}"
            )
        if not first - 1 <= last < seq:
            self.findings.stop(
                seq, "log_entries", label, f"range {first}–{last} is not before the root"
            )
        if first >= self.segment_start:
            self._merkle_root(seq, record, row, label)
        self.segment = self.segment[last + 1 - self.segment_start :]
        self.segment_start = last + 1
        self.segment_start_known = True
        self._row(seq, body, digest, row)
        self.seen.append(RootFields(seq, first, last, bytes.fromhex(record["root"]), digest))

    def _merkle_root(self, seq: int, record: dict[str, Any], row: Any, label: str) -> None:
        first, last = record["first_seq"], record["last_seq"]
        offset = first - self.segment_start
        chunks = chunk_roots(self.segment[offset : offset + (last - first + 1)])
        if tree_root(chunks).hex() != record["root"]:
            self.findings.stop(
                seq, "log_entries", label, "the Merkle root does not match the entries"
            )
        if row is not None and bytes(row.chunks) != pack(chunks):
            self.findings.problem(seq, TABLE, f"seq {seq}", "chunks do not match the entries")

    def _row(self, seq: int, body: bytes, digest: bytes, row: Any) -> None:
        if row is None:
            self.findings.problem(seq, TABLE, f"seq {seq}", "is missing from the table")
            return
        want = root_body(
            row.interval_from,
            row.interval_to,
            int(row.first_seq),
            int(row.last_seq),
            bytes(row.root),
        )
        if want != body:
            self.findings.problem(seq, TABLE, f"seq {seq}", "differs from the root entry")
        elif bytes(row.entry_hash) != digest:
            self.findings.problem(seq, TABLE, f"seq {seq}", "entry_hash differs from the log")

    def leftovers(self, first_seq: int, last_seq: int) -> None:
        """Rows of the verified range that no root entry made."""
        for seq in sorted(self.rows):
            if first_seq <= seq <= last_seq:
                self.findings.problem(seq, TABLE, f"seq {seq}", "names no root entry of the log")


__all__ = ["IntervalRoots"]
