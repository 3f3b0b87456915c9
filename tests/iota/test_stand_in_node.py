"""The stand-in node enforces the real node's rules, so the ledger tests mean something.

Each case hands the node a transaction a real IOTA node refuses and checks
that it is refused the same way (JSON-RPC code -32002 with the node's
message) and that nothing changed.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from p2p_energy_client.crypto import KeyPair
from p2p_energy_client.ledger.iota import (
    ObjectRef,
    RpcError,
    SignedTransaction,
    build_transfer,
    encode_transaction_data,
    sign_transaction,
)
from p2p_energy_client.ledger.iota.bcs import GasData, TransactionData
from p2p_energy_client.ledger.iota.rpc import IotaRpcClient
from tests.support.iota_node import CoinObject, StandInIotaNode

pytestmark = pytest.mark.usefixtures("socket_enabled")

IOTA = 10**9


@pytest.fixture
async def rpc(iota_node: StandInIotaNode) -> AsyncIterator[IotaRpcClient]:
    async with IotaRpcClient(iota_node.url) as client:
        yield client


def _ref(coin: CoinObject) -> ObjectRef:
    return ObjectRef(coin.object_id, coin.version, coin.digest)


def _transfer(sender: KeyPair, to: KeyPair, *coins: CoinObject, **gas: int) -> TransactionData:
    return build_transfer(
        sender=sender.address,
        recipient=to.address,
        amount=gas.pop("amount", IOTA),
        gas_payment=[_ref(coins[0])],
        merge_coins=[_ref(c) for c in coins[1:]],
        gas_price=gas.pop("price", 1_000),
        gas_budget=gas.pop("budget", 5_000_000),
    )


async def _refused(rpc: IotaRpcClient, node: StandInIotaNode, tx_bytes: bytes, sig: str) -> str:
    before = {c.object_id: (c.version, c.balance, c.owner) for c in node.all_coins()}
    executed = set(node.transactions)
    with pytest.raises(RpcError) as info:
        await rpc.execute(base64.b64encode(tx_bytes).decode(), [sig])
    assert {c.object_id: (c.version, c.balance, c.owner) for c in node.all_coins()} == before
    assert set(node.transactions) == executed
    return f"{info.value.rpc_code} {info.value.rpc_message}"


async def _refused_tx(
    rpc: IotaRpcClient, node: StandInIotaNode, keys: KeyPair, tx: TransactionData
) -> str:
    tx_bytes = encode_transaction_data(tx)
    return await _refused(rpc, node, tx_bytes, sign_transaction(keys, tx_bytes))


async def test_a_valid_transfer_executes_once(
    iota_node: StandInIotaNode, rpc: IotaRpcClient, alice: KeyPair, bob: KeyPair
) -> None:
    coin = iota_node.mint(alice.address, 3 * IOTA)
    signed = SignedTransaction.sign(alice, _transfer(alice, bob, coin))
    first = await rpc.execute(signed.tx_bytes_b64, [signed.signature])
    again = await rpc.execute(signed.tx_bytes_b64, [signed.signature])
    assert first.succeeded and first.digest == again.digest == signed.digest
    assert iota_node.balance_of(bob.address) == IOTA
    assert first.net_change(bob.address) == IOTA
    assert first.gas_used is not None
    assert first.net_change(alice.address) == -(IOTA + first.gas_used.net)
    gas_coin = iota_node.objects[coin.object_id]
    assert gas_coin.version == 2  # Lamport: max(input versions) + 1


async def test_signature_by_another_key_is_refused(
    iota_node: StandInIotaNode, rpc: IotaRpcClient, alice: KeyPair, bob: KeyPair
) -> None:
    coin = iota_node.mint(alice.address, 3 * IOTA)
    message = await _refused_tx(rpc, iota_node, bob, _transfer(alice, bob, coin))
    assert message.startswith("-32002 Invalid user signature")
    assert "correct sender" in message


async def test_tampered_bytes_are_refused(
    iota_node: StandInIotaNode, rpc: IotaRpcClient, alice: KeyPair, bob: KeyPair
) -> None:
    coin = iota_node.mint(alice.address, 3 * IOTA)
    signed = SignedTransaction.sign(alice, _transfer(alice, bob, coin))
    # Same shape, two nanos more: the signature no longer matches.
    tampered = encode_transaction_data(_transfer(alice, bob, coin, amount=IOTA + 2))
    message = await _refused(rpc, iota_node, tampered, signed.signature)
    assert "Ed25519 verification failed" in message
    message = await _refused(rpc, iota_node, signed.tx_bytes + b"\x00", signed.signature)
    assert message.startswith("-32602")


@pytest.mark.parametrize(
    ("gas", "expected"),
    [
        ({"price": 999}, "under reference gas price (RGP) 1000"),
        ({"price": 100_001}, "Gas price cannot exceed"),
        ({"budget": 999_999}, "is lower than min: 1000000"),
        ({"budget": 50_000_000_001}, "is higher than max"),
        ({"budget": 3 * IOTA + 1}, "lower than the needed amount"),
    ],
)
async def test_gas_rules(
    iota_node: StandInIotaNode,
    rpc: IotaRpcClient,
    alice: KeyPair,
    bob: KeyPair,
    gas: dict[str, int],
    expected: str,
) -> None:
    coin = iota_node.mint(alice.address, 3 * IOTA)
    message = await _refused_tx(rpc, iota_node, alice, _transfer(alice, bob, coin, **gas))
    assert message.startswith("-32002 Transaction execution failed due to issues with")
    assert expected in message


async def test_gas_coin_of_someone_else_is_refused(
    iota_node: StandInIotaNode, rpc: IotaRpcClient, alice: KeyPair, bob: KeyPair
) -> None:
    bobs_coin = iota_node.mint(bob.address, 3 * IOTA)
    message = await _refused_tx(rpc, iota_node, alice, _transfer(alice, bob, bobs_coin))
    assert "not by the sender" in message


async def test_stale_version_and_wrong_digest_are_refused(
    iota_node: StandInIotaNode, rpc: IotaRpcClient, alice: KeyPair, bob: KeyPair
) -> None:
    coin = iota_node.mint(alice.address, 3 * IOTA)
    tx = _transfer(alice, bob, coin)
    iota_node.spend_elsewhere(coin.object_id)
    message = await _refused_tx(rpc, iota_node, alice, tx)
    assert "is not available for consumption, its current version: SequenceNumber(2)" in message

    fresh = iota_node.objects[coin.object_id]
    wrong_digest = ObjectRef(fresh.object_id, fresh.version, b"\x01" * 32)
    tx = replace(tx, gas_data=GasData((wrong_digest,), alice.address, 1_000, 5_000_000))
    message = await _refused_tx(rpc, iota_node, alice, tx)
    assert "Invalid Object digest" in message


async def test_merged_coin_used_twice_is_refused(
    iota_node: StandInIotaNode, rpc: IotaRpcClient, alice: KeyPair, bob: KeyPair
) -> None:
    coin = iota_node.mint(alice.address, 3 * IOTA)
    message = await _refused_tx(rpc, iota_node, alice, _transfer(alice, bob, coin, coin))
    assert "duplicated ObjectRef" in message


async def test_merge_and_deleted_coins(
    iota_node: StandInIotaNode, rpc: IotaRpcClient, alice: KeyPair, bob: KeyPair
) -> None:
    gas_coin = iota_node.mint(alice.address, IOTA)
    extra = iota_node.mint(alice.address, 2 * IOTA)
    signed = SignedTransaction.sign(alice, _transfer(alice, bob, gas_coin, extra, amount=2 * IOTA))
    block = await rpc.execute(signed.tx_bytes_b64, [signed.signature])
    assert block.succeeded
    assert iota_node.balance_of(bob.address) == 2 * IOTA
    [state] = await rpc.multi_get_objects([extra.object_id])
    assert state is not None and state.deleted and state.version == 2
    message = await _refused_tx(rpc, iota_node, alice, _transfer(alice, bob, extra))
    assert "not available for consumption" in message


async def test_dry_run_changes_nothing(
    iota_node: StandInIotaNode, rpc: IotaRpcClient, alice: KeyPair, bob: KeyPair
) -> None:
    coin = iota_node.mint(alice.address, 3 * IOTA)
    tx_bytes = encode_transaction_data(_transfer(alice, bob, coin))
    block = await rpc.dry_run(base64.b64encode(tx_bytes).decode())
    assert block.succeeded and block.sender == alice.address
    assert block.net_change(bob.address) == IOTA
    assert iota_node.balance_of(bob.address) == 0
    assert iota_node.objects[coin.object_id].version == 1
    assert iota_node.transactions == {}


async def test_coin_pages(iota_node: StandInIotaNode, rpc: IotaRpcClient, alice: KeyPair) -> None:
    for i in range(1, 76):
        iota_node.mint(alice.address, i)
    first = await rpc.get_coins(alice.address)
    assert len(first.coins) == 50 and first.has_next_page
    second = await rpc.get_coins(alice.address, cursor=first.next_cursor)
    assert len(second.coins) == 25 and not second.has_next_page
    everything = await rpc.get_all_coins(alice.address)
    assert sorted(c.balance for c in everything) == list(range(1, 76))
    assert await rpc.get_balance(alice.address) == sum(range(1, 76))


async def test_unknown_method(rpc: IotaRpcClient) -> None:
    with pytest.raises(RpcError) as info:
        await rpc.call("sui_getTransactionBlock", [])
    assert info.value.rpc_code == -32601
