"""IotaLedger against the stand-in node: payments, gas, failures, never paying twice."""

from __future__ import annotations

import asyncio

import pytest

from p2p_energy_client.crypto import KeyPair
from p2p_energy_client.ledger.base import InsufficientFunds, LedgerError, TxStatus
from p2p_energy_client.ledger.iota import (
    IotaConfig,
    IotaLedger,
    SignedTransaction,
    TransactionRejected,
    TransferInDoubt,
)
from p2p_energy_client.ledger.iota.bcs import ImmOrOwnedObject
from p2p_energy_client.ledger.iota.ledger import (
    BASE_TX_COST_FIXED_UNITS,
    gas_budget_from_dry_run,
)
from p2p_energy_client.ledger.iota.rpc import GasCost
from tests.support.iota_node import (
    COMPUTATION_UNITS,
    FAST,
    STORAGE_COST_PER_OBJECT,
    Fault,
    StandInIotaNode,
)

# The stand-in node listens on 127.0.0.1; Home Assistant's test plugin blocks sockets otherwise.
pytestmark = pytest.mark.usefixtures("socket_enabled")

IOTA = 10**9
EXECUTE = "iota_executeTransactionBlock"
GET_TX = "iota_getTransactionBlock"


def _net_gas(node: StandInIotaNode, digest: str) -> int:
    gas = node.transactions[digest].effects["gasUsed"]
    return int(gas["computationCost"]) + int(gas["storageCost"]) - int(gas["storageRebate"])


async def test_transfer_pays_exactly_the_amount(
    iota_node: StandInIotaNode, ledger: IotaLedger, alice: KeyPair, bob: KeyPair
) -> None:
    iota_node.mint(alice.address, 5 * IOTA)
    tx_id = await ledger.transfer(alice, bob.address, 1_234_567)

    assert await ledger.balance(bob.address) == 1_234_567
    assert iota_node.balance_of(bob.address) == 1_234_567
    gas = _net_gas(iota_node, tx_id)
    assert gas > 0
    assert await ledger.balance(alice.address) == 5 * IOTA - 1_234_567 - gas
    record = await ledger.lookup(tx_id)
    assert record is not None
    assert (record.sender, record.recipient, record.amount) == (
        alice.address,
        bob.address,
        1_234_567,
    )
    assert record.status is TxStatus.SUCCESS
    assert record.time is not None


async def test_gas_price_and_budget_come_from_node_and_dry_run(
    alice: KeyPair, bob: KeyPair
) -> None:
    async with StandInIotaNode(reference_gas_price=1_500) as node:
        node.mint(alice.address, 5 * IOTA)
        async with IotaLedger(IotaConfig(url=node.url, **FAST)) as ledger:
            signed = await ledger.prepare_transfer(alice, bob.address, IOTA)
            assert node.calls.count("iota_dryRunTransactionBlock") == 1
            await ledger.submit(signed)
    gas = signed.data.gas_data
    assert gas.price == 1_500
    # The dry run cost 1,000 units of computation and two stored coins (the
    # gas coin and the new one); the budget adds the margin and overhead.
    dry_cost = GasCost(COMPUTATION_UNITS * 1_500, 0, 2 * STORAGE_COST_PER_OBJECT, 0, 0)
    assert gas.budget == gas_budget_from_dry_run(dry_cost, price=1_500, margin_percent=20)
    assert gas.budget >= BASE_TX_COST_FIXED_UNITS * 1_500


def test_budget_never_below_protocol_minimum() -> None:
    tiny = GasCost(0, 0, 0, 0, 0)
    assert gas_budget_from_dry_run(tiny, price=1000, margin_percent=20) == 1_000_000
    cost = GasCost(1_000_000, 1_000_000, 2_000_000, 1_500_000, 0)
    # (1,000,000 + 2,000,000) × 1.2 + 1,000 × 1000; the rebate is not subtracted.
    assert gas_budget_from_dry_run(cost, price=1000, margin_percent=20) == 4_600_000


async def test_merges_coins_when_the_largest_is_too_small(
    iota_node: StandInIotaNode, ledger: IotaLedger, alice: KeyPair, bob: KeyPair
) -> None:
    for amount in (3 * IOTA, 2 * IOTA, 2 * IOTA, IOTA // 2):
        iota_node.mint(alice.address, amount)
    tx_id = await ledger.transfer(alice, bob.address, 6 * IOTA)

    assert iota_node.balance_of(bob.address) == 6 * IOTA
    assert iota_node.balance_of(alice.address) == 7_500_000_000 - 6 * IOTA - _net_gas(
        iota_node, tx_id
    )
    recorded = iota_node.transactions[tx_id]
    commands = recorded.input_json["transaction"]["transactions"]
    assert "MergeCoins" in commands[0]
    # Largest coins first: 3 (gas) + 2 + 2 covers 6 IOTA + budget; the 0.5 stays.
    assert sorted(c.balance for c in iota_node.coins_of(alice.address)) == [
        IOTA // 2,
        iota_node.balance_of(alice.address) - IOTA // 2,
    ]


async def test_many_small_coins_across_pages(
    iota_node: StandInIotaNode, ledger: IotaLedger, alice: KeyPair, bob: KeyPair
) -> None:
    for _ in range(120):  # three pages of iotax_getCoins
        iota_node.mint(alice.address, 100_000_000)
    tx_id = await ledger.transfer(alice, bob.address, 9 * IOTA)
    assert iota_node.balance_of(bob.address) == 9 * IOTA
    assert iota_node.balance_of(alice.address) == 12 * IOTA - 9 * IOTA - _net_gas(iota_node, tx_id)
    assert iota_node.calls.count("iotax_getCoins") >= 3


async def test_insufficient_funds_sends_nothing(
    iota_node: StandInIotaNode, ledger: IotaLedger, alice: KeyPair, bob: KeyPair
) -> None:
    iota_node.mint(alice.address, IOTA)
    with pytest.raises(InsufficientFunds):
        await ledger.transfer(alice, bob.address, IOTA)  # the gas would not fit
    assert iota_node.execute_count() == 0
    assert "iota_dryRunTransactionBlock" not in iota_node.calls
    assert iota_node.balance_of(alice.address) == IOTA
    # Just enough for amount + the minimum budget is still refused once the
    # dry run shows the real budget does not fit.
    with pytest.raises(InsufficientFunds):
        await ledger.transfer(alice, bob.address, IOTA - 1_000_000)
    assert iota_node.execute_count() == 0


async def test_invalid_requests_are_refused_before_the_node(
    iota_node: StandInIotaNode, ledger: IotaLedger, alice: KeyPair, bob: KeyPair
) -> None:
    iota_node.mint(alice.address, IOTA)
    for recipient, amount, code in [
        (bob.address, 0, "invalid_amount"),
        (bob.address, -5, "invalid_amount"),
        (bob.address, 2**64, "invalid_amount"),
        ("0x1234", 10, "invalid_recipient"),
        (bob.address.upper(), 10, "invalid_recipient"),
        (alice.address, 10, "invalid_recipient"),
    ]:
        with pytest.raises(LedgerError) as info:
            await ledger.transfer(alice, recipient, amount)
        assert info.value.code == code
    assert iota_node.calls == []


async def test_timeout_after_execution_does_not_pay_twice(
    iota_node: StandInIotaNode, ledger: IotaLedger, alice: KeyPair, bob: KeyPair
) -> None:
    iota_node.mint(alice.address, 5 * IOTA)
    iota_node.inject(EXECUTE, Fault.HANG_AFTER_APPLY)
    tx_id = await ledger.transfer(alice, bob.address, IOTA)

    assert iota_node.balance_of(bob.address) == IOTA
    assert list(iota_node.transactions) == [tx_id]
    assert iota_node.submitted_digests == [tx_id]  # found by lookup, not re-sent


async def test_timeout_and_unreadable_node_resubmit_the_same_bytes(
    iota_node: StandInIotaNode, ledger: IotaLedger, alice: KeyPair, bob: KeyPair
) -> None:
    iota_node.mint(alice.address, 5 * IOTA)
    iota_node.inject(EXECUTE, Fault.HANG_AFTER_APPLY)
    iota_node.inject(GET_TX, Fault.UNAVAILABLE)  # the digest lookup fails too
    tx_id = await ledger.transfer(alice, bob.address, IOTA)

    assert iota_node.submitted_digests == [tx_id, tx_id]
    assert list(iota_node.transactions) == [tx_id]
    assert iota_node.balance_of(bob.address) == IOTA


@pytest.mark.parametrize("fault", [Fault.HANG_BEFORE_APPLY, Fault.UNAVAILABLE])
async def test_lost_request_is_resent_with_the_same_bytes(
    iota_node: StandInIotaNode, ledger: IotaLedger, alice: KeyPair, bob: KeyPair, fault: Fault
) -> None:
    iota_node.mint(alice.address, 5 * IOTA)
    iota_node.inject(EXECUTE, fault, times=2)
    tx_id = await ledger.transfer(alice, bob.address, IOTA)
    assert iota_node.submitted_digests == [tx_id] * 3
    assert iota_node.balance_of(bob.address) == IOTA


async def test_transient_error_after_execution_does_not_pay_twice(
    iota_node: StandInIotaNode, ledger: IotaLedger, alice: KeyPair, bob: KeyPair
) -> None:
    iota_node.mint(alice.address, 5 * IOTA)
    iota_node.inject(EXECUTE, Fault.TRANSIENT_AFTER_APPLY)
    tx_id = await ledger.transfer(alice, bob.address, IOTA)
    assert iota_node.submitted_digests == [tx_id]
    assert iota_node.balance_of(bob.address) == IOTA


async def test_no_answer_until_the_deadline_leaves_the_payment_in_doubt(
    iota_node: StandInIotaNode, alice: KeyPair, bob: KeyPair
) -> None:
    iota_node.mint(alice.address, 5 * IOTA)
    iota_node.inject(EXECUTE, Fault.HANG_BEFORE_APPLY, times=100)
    config = IotaConfig(url=iota_node.url, **{**FAST, "submit_deadline": 0.5})
    async with IotaLedger(config) as ledger:
        with pytest.raises(TransferInDoubt) as info:
            await ledger.transfer(alice, bob.address, IOTA)
        doubt = info.value
        assert doubt.code == "outcome_unknown"
        assert doubt.signed is not None and doubt.signed.digest == doubt.tx_id
        # Only ever one set of bytes was signed and sent.
        assert set(iota_node.submitted_digests) == {doubt.tx_id}
        assert await ledger.lookup(doubt.tx_id) is None

        # Later (the node is back): the same bytes, restored from storage, land once.
        iota_node._faults.clear()
        stored = SignedTransaction.from_json(doubt.signed.to_json())
        block = await ledger.submit(stored)
        assert block.digest == doubt.tx_id
        await ledger.submit(stored)  # and again: still one payment
    assert iota_node.balance_of(bob.address) == IOTA
    assert list(iota_node.transactions) == [doubt.tx_id]


async def test_refused_retry_after_timeout_is_in_doubt_not_rebuilt(
    iota_node: StandInIotaNode, ledger: IotaLedger, alice: KeyPair, bob: KeyPair
) -> None:
    # First attempt: no answer. Retry: refused, though the coins are untouched.
    # The first attempt might still land, so nothing new may be signed.
    iota_node.mint(alice.address, 5 * IOTA)
    iota_node.inject(EXECUTE, Fault.HANG_BEFORE_APPLY)
    iota_node.inject(EXECUTE, Fault.REFUSE)
    with pytest.raises(TransferInDoubt) as info:
        await ledger.transfer(alice, bob.address, IOTA)
    assert info.value.code == "outcome_unknown"
    assert iota_node.submitted_digests == [info.value.tx_id] * 2


async def test_refusal_with_untouched_coins_is_not_rebuilt(
    iota_node: StandInIotaNode, ledger: IotaLedger, alice: KeyPair, bob: KeyPair
) -> None:
    iota_node.mint(alice.address, 5 * IOTA)
    iota_node.inject(EXECUTE, Fault.REFUSE)
    with pytest.raises(TransactionRejected) as info:
        await ledger.transfer(alice, bob.address, IOTA)
    assert info.value.can_never_land is False
    assert iota_node.submitted_digests == [info.value.tx_id]
    assert iota_node.balance_of(bob.address) == 0


async def test_coin_spent_elsewhere_is_rebuilt_once_stale(
    iota_node: StandInIotaNode, ledger: IotaLedger, alice: KeyPair, bob: KeyPair
) -> None:
    iota_node.mint(alice.address, 5 * IOTA)
    spent: list[str] = []

    def other_device_spends_first(data: object) -> None:
        if not spent:
            coin = data.gas_data.payment[0].object_id  # type: ignore[attr-defined]
            iota_node.spend_elsewhere(coin, amount=1_000)
            spent.append(coin)

    iota_node.before_execute = other_device_spends_first
    tx_id = await ledger.transfer(alice, bob.address, IOTA)

    first, second = iota_node.submitted_digests
    assert second == tx_id != first
    assert first not in iota_node.transactions  # the stale bytes never executed
    assert iota_node.balance_of(bob.address) == IOTA


async def test_stale_merge_coin_is_detected_too(
    iota_node: StandInIotaNode, ledger: IotaLedger, alice: KeyPair, bob: KeyPair
) -> None:
    iota_node.mint(alice.address, 2 * IOTA)
    iota_node.mint(alice.address, 2 * IOTA)
    spent: list[str] = []

    def spend_the_merged_coin(data: object) -> None:
        merged = [a for a in data.kind.inputs if isinstance(a, ImmOrOwnedObject)]  # type: ignore[attr-defined]
        if merged and not spent:
            iota_node.spend_elsewhere(merged[0].ref.object_id)
            spent.append(merged[0].ref.object_id)

    iota_node.before_execute = spend_the_merged_coin
    await ledger.transfer(alice, bob.address, 3 * IOTA)
    assert spent
    assert len(iota_node.submitted_digests) == 2
    assert iota_node.balance_of(bob.address) == 3 * IOTA


async def test_waits_for_the_checkpoint(alice: KeyPair, bob: KeyPair) -> None:
    async with StandInIotaNode(checkpoint_delay=0.15) as node:
        node.mint(alice.address, 5 * IOTA)
        async with IotaLedger(IotaConfig(url=node.url, **FAST)) as ledger:
            tx_id = await ledger.transfer(alice, bob.address, IOTA)
            assert node.transactions[tx_id].checkpoint is not None
            assert node.calls.count(GET_TX) >= 2  # polled until it was there


async def test_lagging_checkpoint_is_reported_not_retried(
    iota_node: StandInIotaNode, alice: KeyPair, bob: KeyPair
) -> None:
    iota_node.mint(alice.address, 5 * IOTA)
    iota_node.hold_checkpoints()
    config = IotaConfig(url=iota_node.url, **{**FAST, "checkpoint_timeout": 0.2})
    async with IotaLedger(config) as ledger:
        with pytest.raises(TransferInDoubt) as info:
            await ledger.transfer(alice, bob.address, IOTA)
        assert info.value.code == "not_checkpointed"
        record = await ledger.lookup(info.value.tx_id)
        assert record is not None and record.status is TxStatus.PENDING
        iota_node.release_checkpoints()
        record = await ledger.lookup(info.value.tx_id)
        assert record is not None and record.status is TxStatus.SUCCESS
    assert iota_node.submitted_digests == [info.value.tx_id]


async def test_concurrent_payments_from_one_key_both_land(
    iota_node: StandInIotaNode, ledger: IotaLedger, alice: KeyPair, bob: KeyPair
) -> None:
    iota_node.mint(alice.address, 5 * IOTA)
    carol = KeyPair.generate()
    first, second = await asyncio.gather(
        ledger.transfer(alice, bob.address, IOTA), ledger.transfer(alice, carol.address, IOTA)
    )
    assert first != second
    assert iota_node.balance_of(bob.address) == IOTA
    assert iota_node.balance_of(carol.address) == IOTA


async def test_lookup_unknown_and_invalid(ledger: IotaLedger) -> None:
    assert await ledger.lookup("11111111111111111111111111111111") is None
    with pytest.raises(LedgerError) as info:
        await ledger.lookup("not a digest")
    assert info.value.code == "invalid_tx_id"


def test_network_constants() -> None:
    config = IotaConfig.for_network("testnet")
    assert config.url == "https://api.testnet.iota.cafe"
    assert IotaConfig.for_network("localnet").url == "http://127.0.0.1:9000"
    with pytest.raises(ValueError):
        IotaConfig.for_network("chrysalis")


def test_ledger_interface(ledger: IotaLedger, alice: KeyPair) -> None:
    assert ledger.unit == "nanos"
    assert ledger.address_of(alice.public_key) == alice.address


async def test_stale_coin_in_the_dry_run_is_retried_before_signing(
    iota_node: StandInIotaNode, ledger: IotaLedger, alice: KeyPair, bob: KeyPair
) -> None:
    # The node's coin index lagged: the dry run already sees the coin spent.
    iota_node.mint(alice.address, 5 * IOTA)
    spent: list[str] = []

    def spend_once(data: object) -> None:
        if not spent:
            coin = data.gas_data.payment[0].object_id  # type: ignore[attr-defined]
            iota_node.spend_elsewhere(coin, amount=1_000)
            spent.append(coin)

    iota_node.before_dry_run = spend_once
    await ledger.transfer(alice, bob.address, IOTA)
    assert iota_node.calls.count("iota_dryRunTransactionBlock") == 2  # refused, then retried
    assert len(iota_node.submitted_digests) == 1
    assert iota_node.balance_of(bob.address) == IOTA


async def test_balance_of_a_malformed_address(ledger: IotaLedger) -> None:
    with pytest.raises(LedgerError) as info:
        await ledger.balance("alice")
    assert info.value.code == "invalid_address"
