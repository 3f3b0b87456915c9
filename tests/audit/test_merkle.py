"""RFC 6962 Merkle trees: reference vectors, every audit path, chunked proofs."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grid_server.domain.audit_merkle import (
    CHUNK,
    chunk_roots,
    inclusion_path,
    merkle_root,
    pack,
    tree_path,
    tree_root,
    unpack,
)
from p2p_energy_client.receipts import (
    EMPTY_ROOT,
    ReceiptError,
    leaf_hash,
    node_hash,
    root_from_path,
)

# The reference tree of RFC 6962's authors (certificate-transparency,
# cpp/merkletree/merkle_tree_test.cc: kInputs, kSHA256Roots, kInclusionProofs).
LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    bytes(range(0x50, 0x58)),
    bytes(range(0x60, 0x70)),
]
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
INCLUSION = [  # (leaf index, tree size, path)
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]


def mth(data: list[bytes]) -> bytes:
    """RFC 6962 §2.1, written as recursively as the RFC states it."""
    if not data:
        return hashlib.sha256(b"").digest()
    if len(data) == 1:
        return leaf_hash(data[0])
    k = 1
    while k * 2 < len(data):
        k *= 2
    return node_hash(mth(data[:k]), mth(data[k:]))


def test_reference_roots() -> None:
    assert tree_root([]) == EMPTY_ROOT
    for n in range(len(ROOTS)):
        assert tree_root([leaf_hash(x) for x in LEAVES[:n]]).hex() == ROOTS[n]
        assert mth(LEAVES[:n]).hex() == ROOTS[n]


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION)
def test_reference_inclusion_paths(index: int, size: int, path: list[str]) -> None:
    nodes = [leaf_hash(x) for x in LEAVES[:size]]
    assert [p.hex() for p in tree_path(nodes, index)] == path
    root = root_from_path(nodes[index], index, size, [bytes.fromhex(p) for p in path])
    assert root.hex() == ROOTS[size]


def test_every_path_of_every_small_tree_verifies_and_nothing_else_does() -> None:
    for n in range(1, 70):
        data = [bytes([i % 256, i // 256]) for i in range(n)]
        nodes = [leaf_hash(x) for x in data]
        root = tree_root(nodes)
        assert root == mth(data)
        for i in range(n):
            path = tree_path(nodes, i)
            assert root_from_path(nodes[i], i, n, path) == root
            if n > 1:
                # The same path at another position or in another size leads elsewhere.
                other = (i + 1) % n
                try:
                    assert root_from_path(nodes[i], other, n, path) != root
                except ReceiptError:
                    pass
            with pytest.raises(ReceiptError):
                root_from_path(nodes[i], i, n, [*path, root])
        with pytest.raises(ReceiptError):
            root_from_path(nodes[0], n, n, [])


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=1, max_value=3 * CHUNK + 5), st.data())
def test_chunked_proofs_equal_whole_tree_proofs(n: int, data: st.DataObject) -> None:
    hashes = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(n)]
    chunks = chunk_roots(hashes)
    assert tree_root(chunks) == merkle_root(hashes)
    assert unpack(pack(chunks)) == chunks
    index = data.draw(st.integers(min_value=0, max_value=n - 1))
    start = (index // CHUNK) * CHUNK
    path = inclusion_path(index, hashes[start : start + CHUNK], chunks)
    assert path == tree_path([leaf_hash(h) for h in hashes], index)
    assert root_from_path(leaf_hash(hashes[index]), index, n, path) == merkle_root(hashes)
