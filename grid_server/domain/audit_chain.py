"""The hash chain behind the grid's append-only log: linking entries (pure, no storage).

Each log entry is ``(seq, kind, ref, body)``: a sequence number starting at
1, a kind (``envelope``, ``market_result``, ``settlement``, ``statement``,
``payment``, …), a reference (an envelope's ``sender/seq``, an interval
start, a statement id) and the entry's bytes (for envelopes: the raw request
body exactly as received; for grid decisions: canonical JSON). Its hash is
:func:`p2p_energy_client.receipts.entry_hash` — the one definition, shared
with the households that verify receipts::

    entry_hash = SHA-256( prev_hash ‖ u64be(seq) ‖ u16be(len(kind)) ‖ kind
                          ‖ u16be(len(ref)) ‖ ref ‖ SHA-256(body) )

with ``prev_hash`` :data:`~p2p_energy_client.receipts.GENESIS_HASH` (32 zero
bytes) for the first entry, kind and ref in UTF-8. Hashing the body's digest
(not the body) lets a verifier check a link without the body when only its
digest is published. Length prefixes make the encoding unambiguous.
Changing, removing or reordering any entry changes every later hash.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from p2p_energy_client.receipts import body_hash, entry_hash


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
        digest = entry_hash(prev, seq, kind, ref, body_hash(body))
        out.append(LinkedEntry(seq, kind, ref, body, prev, digest))
        prev = digest
    return out
