"""RFC 6962 Merkle trees over log entries: roots, audit paths, chunked storage.

Leaves and interior nodes are domain-separated as in RFC 6962 (``0x00`` ‖
leaf data, ``0x01`` ‖ left ‖ right, SHA-256; the empty tree's root is
SHA-256 of nothing). The hash functions and the path *verification* are the
household's (:mod:`p2p_energy_client.receipts`), defined once; this module
builds trees and paths.

The tree of ``n`` leaves splits at the largest power of two below ``n``
(RFC 6962 §2.1). Built bottom-up, that is: pair neighbours level by level
and carry an unpaired last node up unchanged. Because every aligned block
of ``CHUNK`` leaves (and the last, partial one) is a subtree of that tree,
the grid stores one root per chunk (:func:`chunk_roots`): a receipt then
needs the entry hashes of one chunk plus the chunk roots, not the whole
interval's entries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from p2p_energy_client.receipts import EMPTY_ROOT, leaf_hash, node_hash

CHUNK: Final = 256  # leaves per stored subtree root (a power of two)
HASH: Final = 32


def tree_root(nodes: Sequence[bytes]) -> bytes:
    """Root over already-hashed nodes (leaf hashes, or subtree roots of aligned chunks)."""
    if not nodes:
        return EMPTY_ROOT
    level = list(nodes)
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def tree_path(nodes: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path (leaf to root) of node ``index`` among ``nodes``."""
    if not 0 <= index < len(nodes):
        raise IndexError(f"node {index} is not among {len(nodes)}")
    path: list[bytes] = []
    level = list(nodes)
    i = index
    while len(level) > 1:
        sibling = i ^ 1
        if sibling < len(level):
            path.append(level[sibling])
        paired = [node_hash(level[j], level[j + 1]) for j in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
        i >>= 1
    return path


def merkle_root(entry_hashes: Sequence[bytes]) -> bytes:
    """The root over log entries (each leaf is ``leaf_hash(entry hash)``)."""
    return tree_root([leaf_hash(h) for h in entry_hashes])


def chunk_roots(entry_hashes: Sequence[bytes]) -> list[bytes]:
    """Subtree roots of each aligned block of :data:`CHUNK` entries (the last may be short)."""
    return [merkle_root(entry_hashes[i : i + CHUNK]) for i in range(0, len(entry_hashes), CHUNK)]


def pack(hashes: Sequence[bytes]) -> bytes:
    return b"".join(hashes)


def unpack(blob: bytes) -> list[bytes]:
    if len(blob) % HASH:
        raise ValueError("a packed hash list has a multiple of 32 bytes")
    return [blob[i : i + HASH] for i in range(0, len(blob), HASH)]


def inclusion_path(
    index: int, chunk_entry_hashes: Sequence[bytes], chunks: Sequence[bytes]
) -> list[bytes]:
    """Audit path of entry ``index`` of a range, from its chunk's entries and all chunk roots.

    ``chunk_entry_hashes`` are the entry hashes of the chunk holding
    ``index`` (``index // CHUNK``); ``chunks`` are the range's chunk roots.
    """
    chunk = index // CHUNK
    if not 0 <= chunk < len(chunks):
        raise IndexError(f"entry {index} is beyond the range's {len(chunks)} chunks")
    inner = tree_path([leaf_hash(h) for h in chunk_entry_hashes], index % CHUNK)
    return inner + tree_path(chunks, chunk)


__all__ = [
    "CHUNK",
    "chunk_roots",
    "inclusion_path",
    "merkle_root",
    "pack",
    "tree_path",
    "tree_root",
    "unpack",
]
