"""A receipt verifies with the household's own bytes alone; any change makes it fail."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from grid_server.domain import audit_chain
from grid_server.domain.audit_merkle import chunk_roots, inclusion_path, tree_root
from grid_server.domain.audit_roots import RootFields, make_batch, root_item
from p2p_energy_client.crypto import KeyPair
from p2p_energy_client.models import SentEnvelope
from p2p_energy_client.protocol import Reading, Readings, sign
from p2p_energy_client.receipt_keeper import ReceiptKeeper
from p2p_energy_client.receipts import (
    GENESIS_HASH,
    AnchorRef,
    AuditRoot,
    InclusionProof,
    LoggedEntry,
    Receipt,
    ReceiptError,
    ReceiptPending,
    body_hash,
    entry_hash,
    parse_anchor_payload,
    verify_receipt,
)

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def wire(keys: KeyPair, seq: int, wh: int) -> bytes:
    envelope = sign(keys, "g", seq, Readings((Reading(T0, "pv", wh),)), ts=T0)
    return json.dumps(envelope, separators=(",", ":")).encode()


class Log:
    """A log the way the grid keeps it, with roots closed like the grid closes them."""

    def __init__(self) -> None:
        self.entries: list[audit_chain.LinkedEntry] = []
        self.roots: list[AuditRoot] = []

    def append(self, kind: str, ref: str, body: bytes) -> audit_chain.LinkedEntry:
        head = self.entries[-1] if self.entries else None
        (entry,) = audit_chain.link(
            0 if head is None else head.seq,
            GENESIS_HASH if head is None else head.hash,
            [(kind, ref, body)],
        )
        self.entries.append(entry)
        return entry

    def close(self, start: datetime) -> AuditRoot:
        first = 1 if not self.roots else self.roots[-1].last_seq + 1
        last = len(self.entries)
        root = tree_root(chunk_roots([e.hash for e in self.entries[first - 1 : last]]))
        end = start + timedelta(minutes=15)
        entry = self.append(*root_item(start, end, first, last, root))
        audit_root = AuditRoot(
            entry.seq, start, end, first, last, root, entry.prev_hash, entry.hash
        )
        self.roots.append(audit_root)
        return audit_root

    def receipt(self, seq: int) -> Receipt:
        e = self.entries[seq - 1]
        header = LoggedEntry(e.seq, e.kind, e.ref, e.prev_hash, body_hash(e.body), e.hash, T0)
        root = next((r for r in self.roots if r.first_seq <= seq <= r.last_seq), None)
        if root is None:
            return Receipt("g", "pending", header, None, None)
        hashes = [x.hash for x in self.entries[root.first_seq - 1 : root.last_seq]]
        index = seq - root.first_seq
        path = inclusion_path(index, hashes[(index // 256) * 256 :][:256], chunk_roots(hashes))
        return Receipt("g", "rooted", header, root, InclusionProof(index, root.size, tuple(path)))


@pytest.fixture
def log() -> tuple[Log, list[bytes]]:
    keys = KeyPair.generate()
    other = KeyPair.generate()
    log = Log()
    sent = []
    for seq in range(1, 8):
        raw = wire(keys, seq, 100 * seq)
        log.append("envelope", f"{keys.address}/{seq}", raw)
        sent.append(raw)
        log.append("envelope", f"{other.address}/{seq}", wire(other, seq, 5))
    log.append("market_result", "2026-11-27T10:00:00Z", b"{}")
    log.close(T0)
    return log, sent


def test_a_receipt_verifies_with_the_households_own_bytes(log: tuple[Log, list[bytes]]) -> None:
    chain, sent = log
    for i, raw in enumerate(sent):
        verified = verify_receipt(chain.receipt(2 * i + 1), raw)
        assert verified.seq == 2 * i + 1
        assert verified.root == chain.roots[0].root
        assert verified.envelope_type == "readings"
        assert not verified.anchored
    # The public copy of the root, kept earlier, agrees.
    verify_receipt(chain.receipt(1), sent[0], trusted_root=chain.roots[0])
    # And the wire form survives the round trip.
    again = Receipt.from_wire(json.loads(json.dumps(chain.receipt(3).to_wire())))
    assert verify_receipt(again, sent[1]).seq == 3


def test_other_bytes_or_another_entry_fail(log: tuple[Log, list[bytes]]) -> None:
    chain, sent = log
    receipt = chain.receipt(1)
    with pytest.raises(ReceiptError, match="different bytes"):
        verify_receipt(receipt, sent[0].replace(b'"energy_wh":100', b'"energy_wh":101'))
    with pytest.raises(ReceiptError, match="not envelope"):
        verify_receipt(receipt, sent[1])  # another envelope of mine
    with pytest.raises(ReceiptError, match="not envelope"):
        verify_receipt(chain.receipt(2), sent[0])  # another household's entry
    with pytest.raises(ReceiptError, match="not an envelope"):
        verify_receipt(receipt, b"garbage")


def test_tampered_receipts_fail(log: tuple[Log, list[bytes]]) -> None:
    chain, sent = log
    receipt = chain.receipt(5)
    assert receipt.proof is not None and receipt.root is not None
    raw = sent[2]
    path = list(receipt.proof.path)
    path[1] = bytes(32)
    with pytest.raises(ReceiptError, match="does not lead to the root"):
        verify_receipt(replace(receipt, proof=replace(receipt.proof, path=tuple(path))), raw)
    with pytest.raises(ReceiptError, match="position"):
        verify_receipt(replace(receipt, proof=replace(receipt.proof, leaf_index=5)), raw)
    forged_root = replace(receipt.root, root=bytes(32))
    with pytest.raises(ReceiptError):
        verify_receipt(replace(receipt, root=forged_root), raw)
    # A consistent receipt for a root the household never saw published.
    with pytest.raises(ReceiptError, match="trusted copy"):
        verify_receipt(receipt, raw, trusted_root=bytes(32))
    forged_entry = replace(receipt.entry, prev_hash=bytes(32))
    with pytest.raises(ReceiptError, match="chain hash"):
        verify_receipt(replace(receipt, entry=forged_entry), raw)
    # A root whose own log entry does not match its fields.
    moved = replace(receipt.root, interval_to=receipt.root.interval_to + timedelta(minutes=15))
    with pytest.raises(ReceiptError, match="root's log entry"):
        verify_receipt(replace(receipt, root=moved), raw)


def test_pending_until_the_interval_is_closed(log: tuple[Log, list[bytes]]) -> None:
    chain, _ = log
    keys = KeyPair.generate()
    raw = wire(keys, 1, 7)
    seq = chain.append("envelope", f"{keys.address}/1", raw).seq
    with pytest.raises(ReceiptPending):
        verify_receipt(chain.receipt(seq), raw)
    chain.close(T0 + timedelta(minutes=15))
    assert verify_receipt(chain.receipt(seq), raw).root_seq == chain.roots[-1].seq
    # The first root's entry is covered by the second root.
    assert chain.roots[1].first_seq <= chain.roots[0].seq <= chain.roots[1].last_seq


def test_anchored_batches(log: tuple[Log, list[bytes]]) -> None:
    chain, sent = log
    keys = KeyPair.generate()
    raw = wire(keys, 1, 9)
    seq = chain.append("envelope", f"{keys.address}/1", raw).seq
    chain.close(T0 + timedelta(minutes=15))
    chain.close(T0 + timedelta(minutes=30))  # an empty range
    assert chain.roots[2].size == 1  # only the previous root entry
    batch = make_batch(
        [RootFields(r.seq, r.first_seq, r.last_seq, r.root, r.entry_hash) for r in chain.roots]
    )
    assert parse_anchor_payload(batch.payload) == (
        batch.batch_root,
        chain.roots[-1].seq,
        chain.roots[-1].entry_hash,
    )

    def anchored(receipt: Receipt, index: int) -> Receipt:
        assert receipt.root is not None
        ref = AnchorRef(
            "iota",
            "testnet",
            "0x" + "ab" * 32,
            "0x" + "cd" * 32,
            "Digest1111",
            7,
            2,
            batch.first_root_seq,
            batch.last_root_seq,
            batch.batch_root,
            batch.payload,
            index,
            len(batch.roots),
            tuple(batch.path(index)),
        )
        return replace(receipt, root=replace(receipt.root, anchor=ref))

    first = anchored(chain.receipt(1), 0)
    verified = verify_receipt(first, sent[0], anchored_payload=batch.payload)
    assert verified.anchored and verified.anchor_checked
    assert verify_receipt(anchored(chain.receipt(seq), 1), raw).anchored
    with pytest.raises(ReceiptError, match="not in the anchored batch"):
        verify_receipt(anchored(chain.receipt(1), 1), sent[0])
    with pytest.raises(ReceiptError, match="other bytes"):
        verify_receipt(first, sent[0], anchored_payload=batch.payload[:-1] + b"\x00")
    assert first.anchor is not None
    other_payload = bytes([1]) + bytes(32) + batch.payload[33:]
    bad = replace(
        first, root=replace(first.root, anchor=replace(first.anchor, payload=other_payload))
    )  # type: ignore[arg-type]
    with pytest.raises(ReceiptError, match="another batch"):
        verify_receipt(bad, sent[0])
    again = Receipt.from_wire(json.loads(json.dumps(first.to_wire())))
    assert verify_receipt(again, sent[0]).anchor_digest == "Digest1111"


@given(
    st.binary(min_size=32, max_size=32),
    st.integers(min_value=1, max_value=2**63),
    st.text(max_size=30),
    st.text(max_size=80),
    st.binary(max_size=300),
)
def test_the_chain_hash_is_the_documented_formula(
    prev: bytes, seq: int, kind: str, ref: str, body: bytes
) -> None:
    """SHA-256(prev ‖ u64be(seq) ‖ u16be(len kind) ‖ kind ‖ u16be(len ref) ‖ ref ‖ H(body))."""
    k, r = kind.encode(), ref.encode()
    documented = hashlib.sha256(
        prev
        + seq.to_bytes(8, "big")
        + len(k).to_bytes(2, "big")
        + k
        + len(r).to_bytes(2, "big")
        + r
        + hashlib.sha256(body).digest()
    ).digest()
    assert entry_hash(prev, seq, kind, ref, body_hash(body)) == documented
    [linked] = audit_chain.link(seq - 1, prev, [(kind, ref, body)])
    assert linked.hash == documented


def test_keeper_state_round_trips() -> None:
    keeper = ReceiptKeeper()
    keeper.track(
        [
            SentEnvelope("readings", 3, b'{"a":1}', T0),
            SentEnvelope("session", 4, b"{}", T0),
            SentEnvelope("orders", 5, b'{"b":2}', T0),
        ]
    )
    assert sorted(keeper.pending) == [3, 5]
    assert keeper.last_tracked_seq == 5
    keeper.failures[9] = "bad"
    state = json.loads(json.dumps(keeper.to_state()))
    again = ReceiptKeeper.from_state(state)
    assert again.pending == keeper.pending
    assert again.failures == {9: "bad"}
    assert again.last_tracked_seq == 5
