"""Which entries an interval's Merkle root covers, and how roots are anchored (pure rules).

Ranges. The log is one chain of entries numbered 1, 2, 3 … Interval roots
partition it into contiguous ranges: a root covers every entry after the
previous root's range up to the chain head at the moment the grid *closes*
the interval (shortly after the interval ends; the interval cycle does it).
The root is then appended as an entry of its own (kind ``root``, ref the
first interval's start, body :func:`root_body`), so it lands just after its
range and is itself covered by the next range. A range can be empty (a
quiet interval): ``last_seq = first_seq - 1`` and the root is SHA-256 of
nothing. After downtime, one root closes every interval that ended
meanwhile: ``[interval_from, interval_to)`` spans them.

Why ranges of sequence numbers rather than entry timestamps: entries are
numbered in commit order under the chain-head lock, while a transaction's
timestamp is taken before it gets the lock; ranges of sequence numbers are
exact, gap-free and cannot overlap.

Anchors. Roots are anchored on IOTA in batches of consecutive roots (a batch
of one by default). The batch tree's leaves are
``batch_leaf_data(root seq, first_seq, last_seq, root)`` and the anchored
bytes are :func:`p2p_energy_client.receipts.anchor_payload` of the batch
root, the seq of the batch's last root entry and that entry's chain hash.
Since a chain hash commits to every entry before it, the latest anchored
state on chain commits to the whole log up to that root.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from p2p_energy_client.protocol import canonical_json
from p2p_energy_client.receipts import anchor_payload, batch_leaf_data, leaf_hash, root_record
from p2p_energy_client.units import format_utc

from .audit_merkle import tree_path, tree_root
from .schedule import Schedule

ROOT_KIND: Final = "root"
ANCHOR_KIND: Final = "anchor"


def close_span(
    schedule: Schedule, last_closed_to: datetime, now: datetime, grace: timedelta
) -> tuple[datetime, datetime] | None:
    """The intervals to close at ``now``: ``[last_closed_to, latest ended start)``, or None.

    An interval is closed once ``grace`` has passed after its end (entries
    committed around the boundary then fall into the next range, which is
    fine: ranges are by sequence number).
    """
    until = schedule.start_of(now - grace)
    if until <= last_closed_to:
        return None
    return last_closed_to, until


def root_body(
    interval_from: datetime, interval_to: datetime, first_seq: int, last_seq: int, root: bytes
) -> bytes:
    return canonical_json(root_record(interval_from, interval_to, first_seq, last_seq, root))


def root_item(
    interval_from: datetime, interval_to: datetime, first_seq: int, last_seq: int, root: bytes
) -> tuple[str, str, bytes]:
    """The ``(kind, ref, body)`` log item of a root."""
    return (
        ROOT_KIND,
        format_utc(interval_from),
        root_body(interval_from, interval_to, first_seq, last_seq, root),
    )


@dataclass(frozen=True, slots=True)
class RootFields:
    """What a root contributes to an anchored batch."""

    seq: int
    first_seq: int
    last_seq: int
    root: bytes
    entry_hash: bytes

    def leaf(self) -> bytes:
        return leaf_hash(batch_leaf_data(self.seq, self.first_seq, self.last_seq, self.root))


@dataclass(frozen=True, slots=True)
class Batch:
    roots: tuple[RootFields, ...]
    batch_root: bytes
    payload: bytes

    @property
    def first_root_seq(self) -> int:
        return self.roots[0].seq

    @property
    def last_root_seq(self) -> int:
        return self.roots[-1].seq

    def path(self, index: int) -> list[bytes]:
        return tree_path([r.leaf() for r in self.roots], index)


def make_batch(roots: Sequence[RootFields]) -> Batch:
    """The anchored batch of consecutive ``roots`` (in log order)."""
    if not roots:
        raise ValueError("a batch holds at least one root")
    if any(b.seq <= a.seq for a, b in itertools.pairwise(roots)):
        raise ValueError("a batch's roots are in log order")
    batch_root = tree_root([r.leaf() for r in roots])
    last = roots[-1]
    return Batch(tuple(roots), batch_root, anchor_payload(batch_root, last.seq, last.entry_hash))


def anchor_metadata(grid: str, batch: Batch) -> str:
    """The human-readable ``metadata`` stored with the notarized state."""
    return f"p2p_energy audit roots {batch.first_root_seq}-{batch.last_root_seq} of grid {grid}"


def anchor_record(
    batch: Batch,
    *,
    ledger: str,
    network: str | None,
    package: str,
    object_id: str,
    digest: str,
    object_version: int,
    state_version: int,
) -> dict[str, Any]:
    """The body (before canonical JSON) of an ``anchor`` log entry."""
    return {
        "first_root_seq": batch.first_root_seq,
        "last_root_seq": batch.last_root_seq,
        "batch_root": batch.batch_root.hex(),
        "payload": batch.payload.hex(),
        "ledger": ledger,
        "network": network,
        "package": package,
        "object_id": object_id,
        "digest": digest,
        "object_version": object_version,
        "state_version": state_version,
    }


__all__ = [
    "ANCHOR_KIND",
    "ROOT_KIND",
    "Batch",
    "RootFields",
    "anchor_metadata",
    "anchor_record",
    "close_span",
    "make_batch",
    "root_body",
    "root_item",
]
