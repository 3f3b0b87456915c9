"""Batch payouts against the stand-in node: gas, paying all or nothing, lookup, exactly once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from p2p_energy_client.crypto import KeyPair
from p2p_energy_client.ledger.base import InsufficientFunds, LedgerError, Payment, TxStatus
from p2p_energy_client.ledger.iota import (
    BatchTooLarge,
    IotaConfig,
    IotaLedger,
    IotaRpcClient,
    ObjectRef,
    RpcError,
    SignedTransaction,
    TransferFailed,
    batch_terms,
    build_batch,
    transaction_digest,
)
from p2p_energy_client.ledger.iota.batch import PLANNING_LIMITS, batch_capacity
from p2p_energy_client.ledger.iota.bcs import MergeCoins, Pure, TransactionData
from p2p_energy_client.ledger.iota.ledger import gas_budget_from_dry_run
from p2p_energy_client.ledger.iota.rpc import GasCost
from tests.support.iota_batches import payments, ptb_with_splits, with_padding
from tests.support.iota_node import (
    COMPUTATION_UNITS,
    FAST,
    STORAGE_COST_PER_OBJECT,
    Fault,
    StandInIotaNode,
)

pytestmark = pytest.mark.usefixtures("socket_enabled")

IOTA = 10**9
EXECUTE = "iota_executeTransactionBlock"
DRY_RUN = "iota_dryRunTransactionBlock"


def coin_ref(node: StandInIotaNode, object_id: str) -> ObjectRef:
    coin = node.objects[object_id]
    return ObjectRef(coin.object_id, coin.version, coin.digest)


def _net_gas(node: StandInIotaNode, digest: str) -> int:
    gas = node.transactions[digest].effects["gasUsed"]
    return int(gas["computationCost"]) + int(gas["storageCost"]) - int(gas["storageRebate"])


async def test_a_batch_pays_every_recipient_once_and_lookup_lists_them(
    iota_node: StandInIotaNode, ledger: IotaLedger, alice: KeyPair
) -> None:
    iota_node.mint(alice.address, 5 * IOTA)
    batch = payments(3, amount=1_000_000)
    signed = await ledger.prepare_batch(alice, batch)
    assert signed.digest == transaction_digest(signed.tx_bytes)  # known before sending
    assert batch_terms(signed.data) == tuple(batch)
    assert iota_node.execute_count() == 0

    block = await ledger.submit(signed)
    assert block.digest == signed.digest
    for payment in batch:
        assert iota_node.balance_of(payment.recipient) == payment.amount
    total = sum(p.amount for p in batch)
    assert iota_node.balance_of(alice.address) == 5 * IOTA - total - _net_gas(
        iota_node, signed.digest
    )

    record = await ledger.lookup(signed.digest)
    assert record is not None
    assert record.payments == tuple(batch)
    assert (record.sender, record.recipient, record.amount) == (alice.address, "", total)
    assert record.status is TxStatus.SUCCESS


async def test_a_recipient_paid_twice_gets_both_payments(
    iota_node: StandInIotaNode, ledger: IotaLedger, alice: KeyPair, bob: KeyPair
) -> None:
    iota_node.mint(alice.address, 5 * IOTA)
    batch = [Payment(bob.address, 5_000), Payment(bob.address, 5_000)]
    signed = await ledger.prepare_batch(alice, batch)
    await ledger.submit(signed)
    assert iota_node.balance_of(bob.address) == 10_000
    assert len(iota_node.coins_of(bob.address)) == 2
    record = await ledger.lookup(signed.digest)
    assert record is not None
    assert record.payments == tuple(batch)
    assert (record.recipient, record.amount) == (bob.address, 10_000)


async def test_single_transfers_are_itemised_too(
    iota_node: StandInIotaNode, ledger: IotaLedger, alice: KeyPair, bob: KeyPair
) -> None:
    iota_node.mint(alice.address, 5 * IOTA)
    tx_id = await ledger.transfer(alice, bob.address, 1_234)
    record = await ledger.lookup(tx_id)
    assert record is not None
    assert (record.recipient, record.amount) == (bob.address, 1_234)
    assert record.payments == (Payment(bob.address, 1_234),)


async def test_gas_comes_from_the_dry_run_and_grows_with_the_batch(
    alice: KeyPair,
) -> None:
    async with StandInIotaNode(reference_gas_price=1_500) as node:
        node.mint(alice.address, 50 * IOTA)
        async with IotaLedger(IotaConfig(url=node.url, **FAST)) as ledger:
            budgets = {}
            for n in (1, 100):
                calls = node.calls.count(DRY_RUN)
                signed = await ledger.prepare_batch(alice, payments(n))
                assert node.calls.count(DRY_RUN) == calls + 1
                gas = signed.data.gas_data
                assert gas.price == 1_500
                # The dry run stored the gas coin and n new coins.
                dry = GasCost(COMPUTATION_UNITS * 1_500, 0, (n + 1) * STORAGE_COST_PER_OBJECT, 0, 0)
                assert gas.budget == gas_budget_from_dry_run(dry, price=1_500, margin_percent=20)
                budgets[n] = gas.budget
                await ledger.submit(signed)
    assert budgets[100] > budgets[1] + 99 * STORAGE_COST_PER_OBJECT


async def test_the_largest_planned_batch_lands(
    iota_node: StandInIotaNode, ledger: IotaLedger, alice: KeyPair
) -> None:
    iota_node.mint(alice.address, 10 * IOTA)
    given = payments(2 * batch_capacity(PLANNING_LIMITS, coins=256) + 1)
    plan = ledger.plan_batches(given)
    assert [len(b) for b in plan] == [459, 459, 1]
    for batch in plan:  # each batch spends the coin versions the previous one left
        await ledger.submit(await ledger.prepare_batch(alice, batch))
    assert all(iota_node.balance_of(p.recipient) == p.amount for p in given)
    assert len(iota_node.transactions) == 3


async def test_coins_are_merged_first_when_the_largest_is_too_small(
    iota_node: StandInIotaNode, ledger: IotaLedger, alice: KeyPair
) -> None:
    for amount in (IOTA, IOTA, IOTA):
        iota_node.mint(alice.address, amount)
    batch = payments(2, amount=IOTA - 10_000_000)
    signed = await ledger.prepare_batch(alice, batch)
    assert isinstance(signed.data.kind.commands[0], MergeCoins)
    await ledger.submit(signed)
    assert all(iota_node.balance_of(p.recipient) == p.amount for p in batch)


async def test_too_little_money_for_the_whole_batch_sends_nothing(
    iota_node: StandInIotaNode, ledger: IotaLedger, alice: KeyPair
) -> None:
    batch = payments(3, amount=IOTA // 4)
    total = sum(p.amount for p in batch)
    iota_node.mint(alice.address, total)  # the payments, but nothing for gas
    with pytest.raises(InsufficientFunds):
        await ledger.prepare_batch(alice, batch)
    assert DRY_RUN not in iota_node.calls
    # Enough for the payments and the minimum budget, not for the real gas.
    iota_node.mint(alice.address, 1_000_000)
    with pytest.raises(InsufficientFunds):
        await ledger.prepare_batch(alice, batch)
    assert iota_node.execute_count() == 0
    assert all(iota_node.balance_of(p.recipient) == 0 for p in batch)


async def test_a_batch_the_coin_cannot_cover_fails_whole_and_pays_no_one(
    iota_node: StandInIotaNode, ledger: IotaLedger, alice: KeyPair
) -> None:
    # Signed by hand past prepare_batch's checks: the split needs more than the coin holds.
    coin = iota_node.mint(alice.address, IOTA)
    batch = [*payments(2, amount=IOTA // 4), *payments(1, amount=IOTA, start=2)]
    tx = build_batch(
        sender=alice.address,
        payments=batch,
        gas_payment=[coin_ref(iota_node, coin.object_id)],
        gas_price=1_000,
        gas_budget=10_000_000,
    )
    signed = SignedTransaction.sign(alice, tx)
    with pytest.raises(TransferFailed) as info:
        await ledger.submit(signed)
    assert "InsufficientCoinBalance" in info.value.error
    assert all(iota_node.balance_of(p.recipient) == 0 for p in batch)
    assert iota_node.balance_of(alice.address) == IOTA - _net_gas(iota_node, signed.digest)
    record = await ledger.lookup(signed.digest)
    assert record is not None
    assert (record.status, record.amount, record.payments) == (TxStatus.FAILURE, 0, ())


async def test_the_same_bytes_land_once_however_often_they_are_sent(
    iota_node: StandInIotaNode, ledger: IotaLedger, alice: KeyPair
) -> None:
    iota_node.mint(alice.address, 5 * IOTA)
    batch = payments(4)
    signed = await ledger.prepare_batch(alice, batch)
    stored = signed.to_json()  # the intent, written before sending
    iota_node.inject(EXECUTE, Fault.HANG_AFTER_APPLY)  # executed, the answer lost
    await ledger.submit(signed)
    restored = SignedTransaction.from_json(stored)  # after a crash
    await ledger.submit(restored)
    await ledger.submit(restored)
    assert iota_node.submitted_digests.count(signed.digest) == 3
    assert list(iota_node.transactions) == [signed.digest]
    assert all(iota_node.balance_of(p.recipient) == p.amount for p in batch)


async def test_a_batch_in_doubt_is_resolved_by_its_digest(
    iota_node: StandInIotaNode, alice: KeyPair
) -> None:
    iota_node.mint(alice.address, 5 * IOTA)
    config = IotaConfig(url=iota_node.url, **{**FAST, "submit_deadline": 0.3})
    async with IotaLedger(config) as ledger:
        signed = await ledger.prepare_batch(alice, payments(2))
        iota_node.inject(EXECUTE, Fault.HANG_BEFORE_APPLY, times=100)
        with pytest.raises(LedgerError) as info:
            await ledger.submit(signed)
        assert info.value.code == "outcome_unknown"
        assert await ledger.lookup(signed.digest) is None  # never executed: send again
        iota_node._faults.clear()
        await ledger.submit(signed)
        record = await ledger.lookup(signed.digest)
    assert record is not None and record.payments == tuple(payments(2))


@pytest.mark.parametrize(
    ("given", "code"),
    [
        ([], "invalid_payments"),
        ([Payment("0x1234", 5)], "invalid_recipient"),
        ([Payment("0x" + "11" * 32, 0)], "invalid_amount"),
    ],
)
async def test_invalid_batches_never_reach_the_node(
    iota_node: StandInIotaNode, ledger: IotaLedger, alice: KeyPair, given: list[Payment], code: str
) -> None:
    with pytest.raises(LedgerError) as info:
        await ledger.prepare_batch(alice, given)
    assert info.value.code == code
    assert iota_node.calls == []


async def test_more_than_one_transaction_holds_is_refused_before_the_node(
    iota_node: StandInIotaNode, ledger: IotaLedger, alice: KeyPair
) -> None:
    with pytest.raises(BatchTooLarge) as info:
        await ledger.prepare_batch(alice, payments(460))
    assert "plan_batches" in str(info.value)
    assert iota_node.calls == []


async def test_lookup_refuses_raw_bytes_of_another_transaction(
    iota_node: StandInIotaNode, ledger: IotaLedger, alice: KeyPair
) -> None:
    iota_node.mint(alice.address, 5 * IOTA)
    first = await ledger.prepare_batch(alice, payments(1))
    await ledger.submit(first)
    second = await ledger.prepare_batch(alice, payments(2))
    await ledger.submit(second)
    # A node that answers for one digest with another transaction's bytes.
    iota_node.transactions[second.digest].raw_transaction = iota_node.transactions[
        first.digest
    ].raw_transaction
    with pytest.raises(LedgerError) as info:
        await ledger.lookup(second.digest)
    assert info.value.code == "malformed_response"


# --- the stand-in node refuses what the real node refuses -------------------------


@pytest.fixture
async def rpc(iota_node: StandInIotaNode) -> AsyncIterator[IotaRpcClient]:
    async with IotaRpcClient(iota_node.url, execute_timeout=5.0) as client:
        yield client


def _gas(node: StandInIotaNode, owner: str, coins: int = 1) -> list[ObjectRef]:
    return [
        coin_ref(node, node.mint(owner, 20 * IOTA if i == 0 else IOTA).object_id)
        for i in range(coins)
    ]


def _commands(node: StandInIotaNode, keys: KeyPair, extra: int) -> TransactionData:
    # Two splits (511 + 510 coins) and a transfer for each: 1,023 commands.
    return ptb_with_splits(keys.address, [511, 510 + extra], gas=_gas(node, keys.address))


def _arguments(node: StandInIotaNode, keys: KeyPair, extra: int) -> TransactionData:
    return ptb_with_splits(keys.address, [511 + extra], gas=_gas(node, keys.address))


def _pure(node: StandInIotaNode, keys: KeyPair, extra: int) -> TransactionData:
    tx = ptb_with_splits(keys.address, [1], gas=_gas(node, keys.address))
    padded = (*tx.kind.inputs, Pure(b"\x00" * (16_383 + extra)))
    return replace(tx, kind=replace(tx.kind, inputs=padded))


def _gas_coins(node: StandInIotaNode, keys: KeyPair, extra: int) -> TransactionData:
    return ptb_with_splits(keys.address, [1], gas=_gas(node, keys.address, 255 + extra))


def _size(node: StandInIotaNode, keys: KeyPair, extra: int) -> TransactionData:
    tx = ptb_with_splits(keys.address, [1], gas=_gas(node, keys.address))
    return with_padding(tx, 131_072 + extra)


NODE_LIMITS = {
    "commands": (_commands, "maximum commands in a programmable transaction is 1024"),
    "arguments": (_arguments, "maximum arguments in a programmable transaction command is 512"),
    "pure": (_pure, "maximum pure argument size is 16384"),
    "gas_coins": (_gas_coins, "maximum number of gas payment objects is 256"),
    "size": (_size, "serialized transaction size exceeded maximum of 131072"),
}


@pytest.mark.parametrize("limit", sorted(NODE_LIMITS))
async def test_the_node_executes_a_transaction_exactly_at_each_limit(
    iota_node: StandInIotaNode, rpc: IotaRpcClient, alice: KeyPair, limit: str
) -> None:
    make, _message = NODE_LIMITS[limit]
    signed = SignedTransaction.sign(alice, make(iota_node, alice, 0))
    block = await rpc.execute(signed.tx_bytes_b64, [signed.signature])
    assert block.succeeded, block.error


@pytest.mark.parametrize("limit", sorted(NODE_LIMITS))
async def test_the_node_refuses_one_over_each_limit(
    iota_node: StandInIotaNode, rpc: IotaRpcClient, alice: KeyPair, limit: str
) -> None:
    make, message = NODE_LIMITS[limit]
    signed = SignedTransaction.sign(alice, make(iota_node, alice, 1))
    with pytest.raises(RpcError) as info:
        await rpc.execute(signed.tx_bytes_b64, [signed.signature])
    assert message in info.value.rpc_message
    assert iota_node.transactions == {}


async def test_the_node_charges_the_whole_budget_when_gas_runs_out(
    iota_node: StandInIotaNode, rpc: IotaRpcClient, alice: KeyPair
) -> None:
    # 100 new coins need ~0.1 IOTA of storage; a budget of 0.01 IOTA runs out.
    gas = _gas(iota_node, alice.address)
    tx = ptb_with_splits(alice.address, [100], gas=gas, gas_budget=10_000_000)
    signed = SignedTransaction.sign(alice, tx)
    block = await rpc.execute(signed.tx_bytes_b64, [signed.signature])
    assert block.error == "InsufficientGas"
    assert iota_node.balance_of(alice.address) == 20 * IOTA - 10_000_000
