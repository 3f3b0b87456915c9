"""verify_incoming (how the grid accepts a payment) and lookup of failed transactions."""

from __future__ import annotations

import pytest

from p2p_energy_client.crypto import KeyPair
from p2p_energy_client.ledger.base import TxStatus
from p2p_energy_client.ledger.iota import (
    IotaLedger,
    ObjectRef,
    PaymentNotVerified,
    SignedTransaction,
    TransferFailed,
    build_transfer,
)
from tests.support.iota_node import Fault, StandInIotaNode

pytestmark = pytest.mark.usefixtures("socket_enabled")

IOTA = 10**9


@pytest.fixture
def grid() -> KeyPair:
    return KeyPair(b"\x07" * 32)


@pytest.fixture
async def payment(
    iota_node: StandInIotaNode, ledger: IotaLedger, alice: KeyPair, grid: KeyPair
) -> str:
    iota_node.mint(alice.address, 5 * IOTA)
    return await ledger.transfer(alice, grid.address, 2 * IOTA)


async def _failed_transaction(
    iota_node: StandInIotaNode, ledger: IotaLedger, sender: KeyPair, recipient: str
) -> SignedTransaction:
    """A transfer of more than the gas coin holds: accepted, executed, failed."""
    coin = iota_node.mint(sender.address, 2 * IOTA)
    tx = build_transfer(
        sender=sender.address,
        recipient=recipient,
        amount=5 * IOTA,
        gas_payment=[ObjectRef(coin.object_id, coin.version, coin.digest)],
        gas_price=1_000,
        gas_budget=5_000_000,
    )
    signed = SignedTransaction.sign(sender, tx)
    block = await ledger.rpc.execute(signed.tx_bytes_b64, [signed.signature])
    assert block.status == "failure"
    assert block.error is not None and "InsufficientCoinBalance" in block.error
    return signed


async def test_accepts_the_right_payment(
    ledger: IotaLedger, payment: str, alice: KeyPair, grid: KeyPair
) -> None:
    record = await ledger.verify_incoming(
        payment, expected_sender=alice.address, recipient=grid.address, min_amount=2 * IOTA
    )
    assert (record.sender, record.recipient, record.amount) == (
        alice.address,
        grid.address,
        2 * IOTA,
    )
    assert record.status is TxStatus.SUCCESS
    # Paying more than asked is fine; the record says what really arrived.
    record = await ledger.verify_incoming(
        payment, expected_sender=alice.address, recipient=grid.address, min_amount=IOTA
    )
    assert record.amount == 2 * IOTA


@pytest.mark.parametrize(
    ("who", "to", "min_amount", "code"),
    [
        ("bob", "grid", 2 * IOTA, "wrong_sender"),
        ("alice", "bob", 1, "wrong_recipient"),
        ("alice", "alice", 1, "wrong_recipient"),
        ("alice", "grid", 2 * IOTA + 1, "amount_too_small"),
    ],
)
async def test_rejects_wrong_claims(
    ledger: IotaLedger,
    payment: str,
    alice: KeyPair,
    bob: KeyPair,
    grid: KeyPair,
    who: str,
    to: str,
    min_amount: int,
    code: str,
) -> None:
    keys = {"alice": alice, "bob": bob, "grid": grid}
    with pytest.raises(PaymentNotVerified) as info:
        await ledger.verify_incoming(
            payment,
            expected_sender=keys[who].address,
            recipient=keys[to].address,
            min_amount=min_amount,
        )
    assert info.value.code == code
    assert info.value.retryable is False


async def test_rejects_a_failed_transaction(
    iota_node: StandInIotaNode, ledger: IotaLedger, alice: KeyPair, grid: KeyPair
) -> None:
    signed = await _failed_transaction(iota_node, ledger, alice, grid.address)
    with pytest.raises(PaymentNotVerified) as info:
        await ledger.verify_incoming(
            signed.digest, expected_sender=alice.address, recipient=grid.address, min_amount=1
        )
    assert info.value.code == "tx_failed"
    assert not info.value.retryable


async def test_unknown_pending_and_unreachable_are_retryable(
    iota_node: StandInIotaNode, ledger: IotaLedger, alice: KeyPair, grid: KeyPair
) -> None:
    def verify(tx_id: str, **kw: bool) -> object:
        return ledger.verify_incoming(
            tx_id, expected_sender=alice.address, recipient=grid.address, min_amount=IOTA, **kw
        )

    with pytest.raises(PaymentNotVerified) as info:
        await verify("11111111111111111111111111111111")
    assert (info.value.code, info.value.retryable) == ("tx_not_found", True)

    iota_node.mint(alice.address, 5 * IOTA)
    iota_node.hold_checkpoints()
    signed = await ledger.prepare_transfer(alice, grid.address, IOTA)
    await ledger.rpc.execute(signed.tx_bytes_b64, [signed.signature])
    with pytest.raises(PaymentNotVerified) as info:
        await verify(signed.digest)
    assert (info.value.code, info.value.retryable) == ("tx_pending", True)
    record = await verify(signed.digest, require_checkpoint=False)
    assert record.status is TxStatus.PENDING  # type: ignore[attr-defined]

    iota_node.release_checkpoints()
    iota_node.inject("iota_getTransactionBlock", Fault.UNAVAILABLE)
    with pytest.raises(PaymentNotVerified) as info:
        await verify(signed.digest)
    assert (info.value.code, info.value.retryable) == ("node_unavailable", True)
    record = await verify(signed.digest)
    assert record.status is TxStatus.SUCCESS  # type: ignore[attr-defined]


async def test_rejects_malformed_ids_and_addresses(
    ledger: IotaLedger, alice: KeyPair, grid: KeyPair
) -> None:
    with pytest.raises(PaymentNotVerified) as info:
        await ledger.verify_incoming(
            "0xabc", expected_sender=alice.address, recipient=grid.address, min_amount=1
        )
    assert info.value.code == "invalid_tx_id"
    with pytest.raises(PaymentNotVerified) as info:
        await ledger.verify_incoming(
            "11111111111111111111111111111111",
            expected_sender="alice",
            recipient=grid.address,
            min_amount=1,
        )
    assert info.value.code == "invalid_address"


async def test_failed_transaction_lookup_and_submit(
    iota_node: StandInIotaNode, ledger: IotaLedger, alice: KeyPair, grid: KeyPair
) -> None:
    signed = await _failed_transaction(iota_node, ledger, alice, grid.address)
    record = await ledger.lookup(signed.digest)
    assert record is not None
    assert record.status is TxStatus.FAILURE
    assert (record.sender, record.recipient, record.amount) == (alice.address, grid.address, 0)
    # Only gas was charged; nothing reached the recipient.
    assert iota_node.balance_of(grid.address) == 0
    assert iota_node.balance_of(alice.address) < 2 * IOTA
    # Submitting the same bytes again reports the failure (and charges nothing more).
    balance = iota_node.balance_of(alice.address)
    with pytest.raises(TransferFailed) as info:
        await ledger.submit(signed)
    assert info.value.tx_id == signed.digest
    assert iota_node.balance_of(alice.address) == balance
