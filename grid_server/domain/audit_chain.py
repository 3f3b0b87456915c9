"""The hash chain behind the grid's append-only log (pure hashing, no storage).

Each log entry is ``(seq, kind, ref, body)``: a sequence number starting at
1, a kind (``envelope``, ``market_result``, ``settlement``, ``statement``,
``payment``, …), a reference (an envelope's signature hash, an interval
start, a statement id) and the entry's bytes (for envelopes: the raw request
body exactly as received; for grid decisions: canonical JSON). Its hash is::

    entry_hash = SHA-256( prev_hash ‖ u64be(seq) ‖ u16be(len(kind)) ‖ kind
                          ‖ u16be(len(ref)) ‖ ref ‖ SHA-256(body) )

with ``prev_hash`` 32 zero bytes for the first entry, kind and ref in UTF-8.
Hashing the body's digest (not the body) lets a verifier check a link
without the body when only its digest is published. Length prefixes make the
encoding unambiguous. Changing, removing or reordering any entry changes
every later hash.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

GENESIS_HASH: Final = bytes(32)


def body_digest(body: bytes) -> bytes:
    return hashlib.sha256(body).digest()


def entry_hash(prev_hash: bytes, seq: int, kind: str, ref: str, body: bytes) -> bytes:
    kind_b = kind.encode()
    ref_b = ref.encode()
    h = hashlib.sha256()
    h.update(prev_hash)
    h.update(struct.pack(">QH", seq, len(kind_b)))
    h.update(kind_b)
    h.update(struct.pack(">H", len(ref_b)))
    h.update(ref_b)
    h.update(body_digest(body))
    return h.digest()


@dataclass(frozen=True, slots=True)
class LinkedEntry:
    seq: int
    kind: str
    ref: str
    body: bytes
    prev_hash: bytes
    hash: bytes


def link(
    head_seq: int, head_hash: bytes, items: Iterable[tuple[str, str, bytes]]
) -> list[LinkedEntry]:
    """Chain ``(kind, ref, body)`` items after the head ``(head_seq, head_hash)``."""
    out: list[LinkedEntry] = []
    seq, prev = head_seq, head_hash
    for kind, ref, body in items:
        seq += 1
        digest = entry_hash(prev, seq, kind, ref, body)
        out.append(LinkedEntry(seq, kind, ref, body, prev, digest))
        prev = digest
    return out


def first_break(entries: Iterable[LinkedEntry]) -> int | None:
    """The seq of the first entry whose link or hash is wrong, or ``None``."""
    prev = GENESIS_HASH
    expected = 1
    for entry in entries:
        if (
            entry.seq != expected
            or entry.prev_hash != prev
            or entry.hash != entry_hash(prev, entry.seq, entry.kind, entry.ref, entry.body)
        ):
            return entry.seq
        prev = entry.hash
        expected += 1
    return None
