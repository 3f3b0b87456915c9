"""Opt-in: the same payment, and a batch, against a real IOTA Rebased node (testnet).

Skipped unless ``P2P_IOTA_TESTNET_URL`` names a node (e.g.
https://api.testnet.iota.cafe) and ``P2P_IOTA_TESTNET_SECRET`` holds a
funded key (``iotaprivkey1…`` or a hex seed; fund it from the testnet
faucet). Each run pays 1,000 nanos to a fresh address, a batch of about
4,000 nanos to three, plus gas.
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

import pytest
import pytest_socket

from p2p_energy_client.crypto import KeyPair
from p2p_energy_client.ledger.base import Payment, TxStatus
from p2p_energy_client.ledger.iota import (
    IotaConfig,
    IotaLedger,
    PaymentNotVerified,
    keypair_from_secret,
)

URL = os.environ.get("P2P_IOTA_TESTNET_URL", "")
SECRET = os.environ.get("P2P_IOTA_TESTNET_SECRET", "")

pytestmark = pytest.mark.skipif(
    not (URL and SECRET),
    reason="set P2P_IOTA_TESTNET_URL and P2P_IOTA_TESTNET_SECRET to run against a real node",
)


@pytest.fixture
def real_network(socket_enabled: None) -> None:
    # Home Assistant's test plugin only lets tests reach 127.0.0.1.
    pytest_socket.socket_allow_hosts([urlparse(URL).hostname or "", "127.0.0.1"])


@pytest.mark.usefixtures("real_network")
async def test_pay_and_verify_on_testnet() -> None:
    payer = keypair_from_secret(SECRET)
    payee = KeyPair.generate()
    config = IotaConfig(url=URL, checkpoint_timeout=90.0)
    async with IotaLedger(config) as ledger:
        before = await ledger.balance(payer.address)
        assert before > 10_000_000, f"fund {payer.address} from the testnet faucet"
        assert await ledger.rpc.get_reference_gas_price() > 0

        tx_id = await ledger.transfer(payer, payee.address, 1_000)

        assert await ledger.balance(payee.address) == 1_000
        record = await ledger.lookup(tx_id)
        assert record is not None and record.status is TxStatus.SUCCESS
        assert (record.sender, record.recipient, record.amount) == (
            payer.address,
            payee.address,
            1_000,
        )
        verified = await ledger.verify_incoming(
            tx_id, expected_sender=payer.address, recipient=payee.address, min_amount=1_000
        )
        assert verified.amount == 1_000
        with pytest.raises(PaymentNotVerified) as info:
            await ledger.verify_incoming(
                tx_id, expected_sender=payee.address, recipient=payee.address, min_amount=1
            )
        assert info.value.code == "wrong_sender"
        spent = before - await ledger.balance(payer.address)
        assert 1_000 < spent < 1_000 + 50_000_000  # the amount plus a modest gas charge


@pytest.mark.usefixtures("real_network")
async def test_batch_on_testnet() -> None:
    payer = keypair_from_secret(SECRET)
    payees = [KeyPair.generate() for _ in range(3)]
    batch = [Payment(p.address, 1_000 + i) for i, p in enumerate(payees)]
    batch.append(Payment(payees[0].address, 7))  # one recipient paid twice
    config = IotaConfig(url=URL, checkpoint_timeout=90.0)
    async with IotaLedger(config) as ledger:
        signed = await ledger.prepare_batch(payer, batch)
        block = await ledger.submit(signed)
        assert block.digest == signed.digest
        assert await ledger.balance(payees[0].address) == 1_007
        record = await ledger.lookup(signed.digest)
        assert record is not None and record.status is TxStatus.SUCCESS
        assert record.payments == tuple(batch)
