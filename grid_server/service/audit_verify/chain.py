"""The hash chain's links: no gaps, each entry linked to the one before, each hash right."""

from __future__ import annotations

from typing import Any

from p2p_energy_client.receipts import body_hash, entry_hash

from .findings import Findings

TABLE = "log_entries"


class ChainLinks:
    """Checks every entry in seq order; the first break stops the verification.

    Sequence numbers follow each other without a gap, each entry's
    ``prev_hash`` is the hash of the entry before, and its hash is
    recomputed from its seq, kind, ref and body. With a checkpoint
    (``trusted``: an earlier run's last entry and its hash), the hash at that
    entry must be the one recorded, since it commits to everything before.
    """

    def __init__(
        self,
        findings: Findings,
        first_seq: int,
        prev_hash: bytes,
        trusted: tuple[int, bytes] | None,
    ) -> None:
        self.findings = findings
        self.expected = first_seq
        self.prev_hash = prev_hash
        self.trusted = trusted

    def link(self, row: Any, body: bytes) -> bytes:
        """Check one log row (seq, kind, ref, hash, prev_hash); returns its hash."""
        seq = int(row.seq)
        if seq != self.expected:
            self.findings.stop(self.expected, TABLE, f"seq {self.expected}", "is missing")
        digest = bytes(row.hash)
        if bytes(row.prev_hash) != self.prev_hash:
            self.findings.stop(
                seq,
                TABLE,
                f"seq {seq}",
                "prev_hash does not link to the entry before (reordered or removed)",
            )
        if entry_hash(self.prev_hash, seq, row.kind, row.ref, body_hash(body)) != digest:
            self.findings.stop(
                seq,
                TABLE,
                f"seq {seq} ({row.kind} {row.ref})",
                "hash does not match the entry's fields and body (changed)",
            )
        self.prev_hash = digest
        if self.trusted is not None and seq == self.trusted[0] and digest != self.trusted[1]:
            self.findings.stop(
                seq,
                TABLE,
                f"seq {seq}",
                "the chain hash differs from the checkpoint's: the log before it was changed "
                "since it was verified",
            )
        self.expected += 1
        return digest

    def batch_read(self, end: int) -> None:
        """After a batch up to ``end``: entries missing at its end are a gap too."""
        if self.expected != end + 1:
            self.findings.stop(self.expected, TABLE, f"seq {self.expected}", "is missing")

    def all_read(self, last_seq: int) -> None:
        """After the last entry: a checkpoint beyond it means entries were removed."""
        if self.trusted is not None and self.trusted[0] > last_seq:
            self.findings.stop(
                last_seq,
                TABLE,
                f"seq {self.trusted[0]}",
                "the checkpoint names an entry beyond the log (entries were removed)",
            )


__all__ = ["ChainLinks"]
