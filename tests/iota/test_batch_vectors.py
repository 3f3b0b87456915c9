"""Batch payouts: our bytes, digests and signatures equal the official TypeScript SDK's.

``vectors/batch_ts_sdk.json`` was made by ``vectors/make_batch_vectors.mjs``
with ``@iota/iota-sdk`` (version pinned in ``vectors/package-lock.json``).
The committed vectors are checked always; where Node and the SDK are
installed (``cd tests/iota/vectors && npm ci``) the SDK builds them afresh
and they must equal the committed ones, so the file cannot go stale.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from p2p_energy_client.crypto import KeyPair
from p2p_energy_client.ledger.iota import (
    ObjectRef,
    Payment,
    SignedTransaction,
    batch_terms,
    build_batch,
    build_transfer,
    check_limits,
    decode_transaction_data,
    encode_transaction_data,
    payment_terms,
)
from p2p_energy_client.ledger.iota.batch import PLANNING_LIMITS, batch_capacity

VECTORS_DIR = Path(__file__).parent / "vectors"
VECTORS = json.loads((VECTORS_DIR / "batch_ts_sdk.json").read_text())
CASES = sorted(VECTORS["transactions"])


def _refs(coins: list[dict[str, Any]]) -> list[ObjectRef]:
    return [
        ObjectRef(c["object_id"], c["version"], base64.b64decode(c["digest_b64"])) for c in coins
    ]


def _payments(case: dict[str, Any]) -> list[Payment]:
    return [Payment(p["recipient"], int(p["amount"])) for p in case["payments"]]


def _build(name: str) -> Any:
    case = VECTORS["transactions"][name]
    return build_batch(
        sender=VECTORS["sender"],
        payments=_payments(case),
        gas_payment=_refs(case["gas_payment"]),
        merge_coins=_refs(case["merge_coins"]),
        gas_price=VECTORS["gas_price"],
        gas_budget=VECTORS["gas_budget"],
    )


def test_the_vectors_cover_what_the_batches_need() -> None:
    sizes = {name: len(VECTORS["transactions"][name]["payments"]) for name in CASES}
    assert {1, 2, 3, 100} <= set(sizes.values())
    # The largest batch the planner makes is in the vectors too.
    assert max(sizes.values()) >= batch_capacity(PLANNING_LIMITS, coins=256)
    repeated = _payments(VECTORS["transactions"]["repeated_recipient"])
    assert len({p.recipient for p in repeated}) < len(repeated)
    assert VECTORS["transactions"]["merge"]["merge_coins"]


@pytest.mark.parametrize("name", CASES)
def test_batch_bytes_digest_and_signature_equal_the_sdk(name: str) -> None:
    expected = VECTORS["transactions"][name]
    tx = _build(name)
    raw = encode_transaction_data(tx)
    assert base64.b64encode(raw).decode() == expected["tx_bytes_b64"]
    signed = SignedTransaction.sign(KeyPair.from_hex(VECTORS["secret_hex"]), tx)
    assert signed.digest == expected["digest"]
    assert signed.signature == expected["serialized_signature_b64"]
    check_limits(tx)


@pytest.mark.parametrize("name", CASES)
def test_sdk_bytes_read_back_as_their_payments(name: str) -> None:
    case = VECTORS["transactions"][name]
    raw = base64.b64decode(case["tx_bytes_b64"])
    decoded = decode_transaction_data(raw)
    assert encode_transaction_data(decoded) == raw
    assert batch_terms(decoded) == tuple(_payments(case))
    assert payment_terms(decoded) == tuple(_payments(case))


def test_repeated_values_are_separate_inputs_as_in_the_sdk() -> None:
    tx = _build("repeated_recipient")
    # Three amounts (two equal) and three recipients (two equal): six inputs.
    assert len(tx.kind.inputs) == 6
    assert tx.kind.inputs[0] == tx.kind.inputs[2]
    assert tx.kind.inputs[3] == tx.kind.inputs[5]


def test_a_batch_of_one_is_the_single_transfer() -> None:
    case = VECTORS["transactions"]["one"]
    (payment,) = _payments(case)
    single = build_transfer(
        sender=VECTORS["sender"],
        recipient=payment.recipient,
        amount=payment.amount,
        gas_payment=_refs(case["gas_payment"]),
        gas_price=VECTORS["gas_price"],
        gas_budget=VECTORS["gas_budget"],
    )
    assert encode_transaction_data(single) == base64.b64decode(case["tx_bytes_b64"])


def _sdk_missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed"
    if not (VECTORS_DIR / "node_modules" / "@iota" / "iota-sdk" / "package.json").exists():
        return "the IOTA SDK is not installed (cd tests/iota/vectors && npm ci)"
    return None


@pytest.mark.skipif(_sdk_missing() is not None, reason=str(_sdk_missing()))
def test_the_sdk_builds_the_committed_vectors_afresh() -> None:
    node = shutil.which("node")
    assert node is not None
    result = subprocess.run(
        [node, "make_batch_vectors.mjs"],
        cwd=VECTORS_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == VECTORS
