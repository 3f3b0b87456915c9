"""The local ledger's record format: signing, ids, entry hashes (pure, no server)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from p2p_energy_client.crypto import KeyPair, b64encode
from p2p_energy_client.ledger.local import (
    GENESIS_HASH,
    LedgerRecord,
    SignedTransfer,
    check_entry,
    is_tx_id,
    ledger_entry_hash,
    mint_record,
    time_ms,
    transfer_record,
)
from p2p_energy_client.models import LedgerEntry
from p2p_energy_client.protocol import ErrorCode, ProtocolError

ALICE = KeyPair(bytes(range(32)))
GRID = KeyPair(bytes(range(1, 33)))


def test_signed_transfer_roundtrip_and_id() -> None:
    signed = SignedTransfer.sign(
        ALICE, grid="g", recipient=GRID.address, amount=1_500, seq=7, memo="st-1"
    )
    assert signed.verify()
    again = SignedTransfer.from_wire(signed.to_wire())
    assert again == signed and again.verify()
    # Ed25519 is deterministic: the same transfer has the same id (and signature).
    twin = SignedTransfer.sign(
        ALICE, grid="g", recipient=GRID.address, amount=1_500, seq=7, memo="st-1"
    )
    assert twin.tx_id == signed.tx_id and twin.signature == signed.signature
    assert is_tx_id(signed.tx_id) and len(signed.record.tx_digest) == 32
    # Every field is covered by the id and the signature.
    for change in ({"amount": 1_501}, {"seq": 8}, {"memo": "st-2"}, {"grid": "h"}):
        wire = signed.to_wire()
        wire["record"] = {**wire["record"], **change}
        forged = SignedTransfer.from_wire(wire)
        assert not forged.verify()
        assert forged.tx_id != signed.tx_id


def test_transfer_needs_the_senders_key() -> None:
    signed = SignedTransfer.sign(ALICE, grid="g", recipient=GRID.address, amount=1, seq=1)
    wire = signed.to_wire()
    wire["public_key"] = b64encode(GRID.public_key)
    assert not SignedTransfer.from_wire(wire).verify()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amount": 0}, "transfer.record.amount"),
        ({"amount": 1.0}, "transfer.record.amount"),
        ({"amount": True}, "transfer.record.amount"),
        ({"seq": 0}, "transfer.record.seq"),
        ({"recipient": "0xABC"}, "transfer.record.recipient"),
        ({"memo": "a\u202eb"}, "transfer.record.memo"),
        ({"v": 2}, "transfer.record.v"),
        ({"extra": 1}, "transfer.record.extra"),
        ({"type": "p2p-ledger-mint"}, "transfer.record.sender"),
    ],
)
def test_malformed_records_name_the_field(change: dict[str, object], field: str) -> None:
    wire = SignedTransfer.sign(ALICE, grid="g", recipient=GRID.address, amount=1, seq=1).to_wire()
    wire["record"] = {**wire["record"], **change}
    with pytest.raises(ProtocolError) as err:
        SignedTransfer.from_wire(wire)
    assert (err.value.code, err.value.field) == (ErrorCode.INVALID_FIELD, field)


def test_mint_and_transfer_ids_differ() -> None:
    mint = mint_record("g", GRID.address, 5, 1, None)
    transfer = transfer_record("g", ALICE.address, recipient=GRID.address, amount=5, seq=1)
    assert mint.tx_id != transfer.tx_id
    assert LedgerRecord.from_wire(mint.to_wire()) == mint


def test_entry_check_detects_tampering() -> None:
    signed = SignedTransfer.sign(ALICE, grid="g", recipient=GRID.address, amount=9, seq=3)
    when = datetime(2026, 11, 27, 10, 0, 0, 123_000, tzinfo=UTC)
    digest = ledger_entry_hash(
        GENESIS_HASH, 1, signed.record.tx_digest, signed.signature, time_ms(when)
    )
    entry = LedgerEntry(
        1,
        signed.tx_id,
        "transfer",
        ALICE.address,
        GRID.address,
        9,
        3,
        None,
        when,
        b64encode(ALICE.public_key),
        b64encode(signed.signature),
        GENESIS_HASH.hex(),
        digest.hex(),
    )
    assert check_entry(entry, "g", GENESIS_HASH) is None
    assert LedgerEntry.from_wire(entry.to_wire()) == entry
    assert check_entry(replace(entry, amount=10), "g", GENESIS_HASH) is not None
    assert check_entry(entry, "g", bytes([1]) * 32) is not None
    assert check_entry(replace(entry, time=when.replace(microsecond=124_000)), "g", GENESIS_HASH)
    assert check_entry(entry, "other-grid", GENESIS_HASH) is not None
