"""IOTA Rebased (the Move-based IOTA network) as a p2p_energy ledger.

Everything is built here, with no IOTA SDK: BCS for the transaction shapes
we send (split + transfer to one recipient or to many, merging coins when
needed), Ed25519 signing over the transaction intent, and a small JSON-RPC
client. Amounts
are integer nanos (1 IOTA = 10^9 nanos); transaction ids are the base58
digests the network uses.

Paying (households, and the grid paying producers)::

    async with IotaLedger(IotaConfig.for_network("testnet")) as ledger:
        tx_id = await ledger.transfer(keys, grid_address, 1_500_000)

``transfer`` returns once the payment is in a checkpoint and its effects
show the recipient receiving exactly the amount. It never pays twice (see
:mod:`.ledger`); :class:`TransferInDoubt` means "may have been paid — look
the ``tx_id`` up, do not pay again". For crash-safe payouts, split it:
``signed = await ledger.prepare_transfer(...)``, store ``signed.to_json()``
and ``signed.digest``, then ``await ledger.submit(signed)``; after a crash,
``SignedTransaction.from_json(...)`` and ``submit`` again (the same bytes
can land only once).

Paying many at once (the grid's payouts): one transaction per batch,
pay-all-or-nothing, laid out as the official TypeScript SDK lays it out::

    for batch in ledger.plan_batches(payments):      # [Payment(recipient, amount), …]
        signed = await ledger.prepare_batch(keys, batch)
        # store signed.to_json() and signed.digest as the batch's intent, then:
        block = await ledger.submit(signed)

A batch in doubt is resolved with ``lookup(signed.digest)``, whose record
lists every payment (``TransferRecord.payments``), or by submitting the
stored bytes again. Consecutive batches from one key are prepared one after
the other (each spends the coin versions the previous one left).

Accepting a payment (the grid)::

    record = await ledger.verify_incoming(
        tx_id, expected_sender=payer_address, recipient=grid_address, min_amount=amount
    )

raises :class:`PaymentNotVerified` (``code``, ``retryable``) unless the
transaction succeeded, is checkpointed, was sent by ``expected_sender`` and
raised ``recipient``'s IOTA balance by at least ``min_amount``. Whether the
digest settled something before is the grid's own check.

Also: ``balance(address)``, ``lookup(tx_id)`` (the :class:`~..base.Ledger`
interface), :func:`keypair_from_secret` for ``iotaprivkey1…`` wallet
exports, and the building blocks (:func:`build_transfer`,
:class:`SignedTransaction`, :func:`transaction_digest`, :class:`IotaRpcClient`).
"""

from __future__ import annotations

from ..base import Payment, TransferInDoubt
from .batch import (
    PLANNING_LIMITS,
    PROTOCOL_LIMITS,
    BatchTooLarge,
    TransactionLimits,
    batch_terms,
    build_batch,
    check_limits,
    payment_terms,
    plan_batches,
)
from .bcs import BcsError, ObjectRef, decode_transaction_data, encode_transaction_data
from .keys import keypair_from_secret
from .ledger import (
    BASE_TX_COST_FIXED_UNITS,
    NETWORK_URLS,
    IotaConfig,
    IotaLedger,
    IotaNetwork,
    PaymentNotVerified,
    TransactionRejected,
    TransferFailed,
)
from .rpc import IOTA_COIN_TYPE, IotaRpcClient, NodeUnavailable, RpcError
from .transactions import (
    SignedTransaction,
    build_transfer,
    sign_transaction,
    transaction_digest,
)

__all__ = [
    "BASE_TX_COST_FIXED_UNITS",
    "IOTA_COIN_TYPE",
    "NETWORK_URLS",
    "PLANNING_LIMITS",
    "PROTOCOL_LIMITS",
    "BatchTooLarge",
    "BcsError",
    "IotaConfig",
    "IotaLedger",
    "IotaNetwork",
    "IotaRpcClient",
    "NodeUnavailable",
    "ObjectRef",
    "Payment",
    "PaymentNotVerified",
    "RpcError",
    "SignedTransaction",
    "TransactionLimits",
    "TransactionRejected",
    "TransferFailed",
    "TransferInDoubt",
    "batch_terms",
    "build_batch",
    "build_transfer",
    "check_limits",
    "decode_transaction_data",
    "encode_transaction_data",
    "keypair_from_secret",
    "payment_terms",
    "plan_batches",
    "sign_transaction",
    "transaction_digest",
]
