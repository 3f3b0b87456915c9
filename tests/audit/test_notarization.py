"""IOTA Notarization: our BCS equals the official SDK's; anchoring against the stand-in node."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from p2p_energy_client.crypto import KeyPair
from p2p_energy_client.ledger.iota import IotaRpcClient
from p2p_energy_client.ledger.iota.bcs import (
    BcsError,
    ObjectRef,
    SharedObject,
    decode_transaction_data,
    encode_transaction_data,
)
from p2p_energy_client.ledger.iota.notarization import (
    PACKAGES,
    NotarizationError,
    Notarizer,
    create_programme,
    read_anchored_payload,
    read_past_state,
    read_programme,
    read_state,
    signed_from_json,
    signed_to_json,
    update_programme,
    with_gas,
)
from p2p_energy_client.ledger.iota.transactions import SignedTransaction, transaction_digest
from tests.support.iota_node import Fault, StandInIotaNode
from tests.support.iota_notarization import TEST_PACKAGE

VECTORS = json.loads((Path(__file__).parent / "vectors" / "notarization_ts_sdk.json").read_text())
SECRET = "c0035e1c8cda12eb55aa656a8a9ddc29cfa36c08edf9a16a95d8857253a3aa05"
GAS = [ObjectRef("0x" + "ee" * 32, 10, bytes(range(32)))]


def _vector_tx(name: str) -> Any:
    payload = bytes.fromhex(VECTORS["payload_hex"])
    if name == "create":
        programme = create_programme(VECTORS["package"], payload, None, VECTORS["description"])
    else:
        target = ObjectRef("0x" + "ab" * 32, 7, bytes([3]) * 32)
        programme = update_programme(VECTORS["package"], target, payload, VECTORS["metadata"])
    return with_gas(
        programme, sender=VECTORS["sender"], gas_payment=GAS, gas_price=1000, gas_budget=10_000_000
    )


@pytest.mark.parametrize("name", ["create", "update"])
def test_transactions_are_byte_identical_to_the_typescript_sdk(name: str) -> None:
    expected = VECTORS["transactions"][name]
    tx = _vector_tx(name)
    raw = encode_transaction_data(tx)
    assert raw.hex() == expected["tx_bytes_hex"]
    assert transaction_digest(raw) == expected["digest"]
    signed = SignedTransaction.sign(KeyPair.from_hex(SECRET), tx)
    assert signed.signature == expected["serialized_signature_b64"]
    decoded = decode_transaction_data(raw, move_calls=True)
    assert decoded == tx and encode_transaction_data(decoded) == raw
    call = read_programme(decoded)
    assert (call.kind, call.data) == (name, bytes.fromhex(VECTORS["payload_hex"]))
    # Payment code never accepts a Move call.
    with pytest.raises(BcsError, match="Move calls"):
        decode_transaction_data(raw)


def test_published_packages_and_the_clock() -> None:
    assert PACKAGES["testnet"] == VECTORS["package"]
    tx = _vector_tx("create")
    assert tx.kind.inputs[0] == SharedObject("0x6", 1, False)


@pytest.fixture
async def node(socket_enabled: None) -> Any:
    async with StandInIotaNode(hang_seconds=1.0) as stand_in:
        yield stand_in


FAST = {"submit_deadline": 3.0, "checkpoint_timeout": 2.0, "poll_interval": 0.01}


async def test_create_and_update_a_dynamic_notarization(node: StandInIotaNode) -> None:
    keys = KeyPair.generate()
    node.mint(keys.address, 2_000_000_000)
    async with IotaRpcClient(node.url, execute_timeout=0.5) as rpc:
        notarizer = Notarizer(rpc, keys, TEST_PACKAGE, **FAST)
        first = await notarizer.submit(
            await notarizer.prepare(b"root-1", "roots 1-1", object_id=None, description="grid")
        )
        assert first.state_version == 0 and first.checkpoint is not None
        state = await read_state(rpc, first.object_id)
        assert (state.data, state.metadata, state.owner) == (b"root-1", "roots 1-1", keys.address)
        assert state.type == f"{TEST_PACKAGE}::notarization::Notarization<vector<u8>>"
        second = await notarizer.submit(
            await notarizer.prepare(b"root-2", "roots 2-2", object_id=first.object_id)
        )
        third = await notarizer.submit(
            await notarizer.prepare(b"root-3", None, object_id=first.object_id)
        )
        assert (second.state_version, third.state_version) == (1, 2)
        assert second.object_id == third.object_id == first.object_id
        assert first.object_version < second.object_version < third.object_version
        now = await read_state(rpc, first.object_id)
        assert (now.data, now.state_version, now.version) == (b"root-3", 2, third.object_version)
        # Every anchor stays readable by its digest.
        for anchored, data in ((first, b"root-1"), (second, b"root-2"), (third, b"root-3")):
            assert (
                await read_anchored_payload(
                    rpc, anchored.digest, anchored.object_id, anchored.object_version
                )
                == data
            )
        past = await read_past_state(rpc, first.object_id, second.object_version)
        assert past.data == b"root-2"
        with pytest.raises(NotarizationError):
            await read_anchored_payload(rpc, first.digest, first.object_id, third.object_version)
        # Gas was paid; nothing else left the account.
        assert 0 < 2_000_000_000 - node.balance_of(keys.address) < 50_000_000


async def test_retries_never_write_twice_and_stale_bytes_are_refused(node: StandInIotaNode) -> None:
    keys = KeyPair.generate()
    node.mint(keys.address, 2_000_000_000)
    async with IotaRpcClient(node.url, execute_timeout=0.3) as rpc:
        notarizer = Notarizer(rpc, keys, TEST_PACKAGE, **FAST)
        created = await notarizer.submit(await notarizer.prepare(b"a", None, object_id=None))
        signed = await notarizer.prepare(b"b", None, object_id=created.object_id)
        stored = signed_to_json(signed)
        # The node executes, then the answer is lost: the same bytes are found, not re-run.
        node.inject("iota_executeTransactionBlock", Fault.HANG_AFTER_APPLY)
        again = signed_from_json(stored)
        done = await notarizer.submit(again)
        assert done.state_version == 1
        assert await notarizer.submit(again) == done  # idempotent
        assert node.submitted_digests.count(signed.digest) >= 2
        assert len([d for d in node.transactions if d == signed.digest]) == 1
        # Bytes built against an old version of the object can never land.
        stale = await notarizer.prepare(b"c", None, object_id=created.object_id)
        await notarizer.submit(await notarizer.prepare(b"d", None, object_id=created.object_id))
        with pytest.raises(NotarizationError, match="refused"):
            await notarizer.submit(stale)
        # Another key cannot update the grid's object.
        intruder = KeyPair.generate()
        node.mint(intruder.address, 1_000_000_000)
        with pytest.raises(NotarizationError, match=r"not_owner|owned by"):
            await Notarizer(rpc, intruder, TEST_PACKAGE, **FAST).prepare(
                b"x", None, object_id=created.object_id
            )


async def test_the_stand_in_enforces_the_move_rules(node: StandInIotaNode) -> None:
    keys = KeyPair.generate()
    coin = node.mint(keys.address, 1_000_000_000)
    gas = [ObjectRef(coin.object_id, coin.version, coin.digest)]
    async with IotaRpcClient(node.url) as rpc:

        async def dry(programme: Any) -> Any:
            tx = with_gas(
                programme,
                sender=keys.address,
                gas_payment=gas,
                gas_price=1000,
                gas_budget=50_000_000,
            )
            return await rpc.dry_run(base64.b64encode(encode_transaction_data(tx)).decode())

        ok = await dry(create_programme(TEST_PACKAGE, b"x", None, None))
        assert ok.succeeded
        unknown = create_programme("0x" + "99" * 32, b"x", None, None)
        with pytest.raises(Exception, match="Package object does not exist"):
            await dry(unknown)
        programme = create_programme(TEST_PACKAGE, b"x", None, None)
        mutable_clock = type(programme)(
            (SharedObject("0x6", 1, True), *programme.inputs[1:]), programme.commands
        )
        with pytest.raises(Exception, match="immutable"):
            await dry(mutable_clock)
        # A TimeLock left unused (no drop) fails the transaction.
        unused = type(programme)(programme.inputs, programme.commands[:2])
        failed = await dry(unused)
        assert not failed.succeeded and "UnusedValueWithoutDrop" in (failed.error or "")
