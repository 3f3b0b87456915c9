"""A stand-in IOTA Rebased full node on 127.0.0.1 for offline tests.

No IOTA node can run here, so this one plays its part of the JSON-RPC API,
with the rules that matter for payments enforced the way the real node
enforces them (``iotaledger/iota``: ``iota-types`` gas_v1.rs and error.rs,
``iota-json-rpc`` error codes, ``iota-json-rpc-types`` response shapes):

* decodes the submitted BCS ``TransactionData`` (and refuses bytes that do
  not re-encode identically), checks the Ed25519 signature over the intent
  message and that its key's address is the sender — independently of the
  client's signing code (``cryptography`` + ``hashlib`` here);
* gas: price ≥ reference gas price and ≤ max, budget between
  1,000 × reference price and 50 IOTA, payment coins exist, are current,
  are owned by the sender and together cover the budget;
* the protocol's limits on a transaction's shape, checked as
  ``iota-types`` transaction.rs checks them (values from
  ``iota-protocol-config``): fewer than 1,024 commands, 1 to 511 arguments
  per command, pure inputs under 16 KiB, at most 2,048 input objects with
  the gas coins, fewer than 256 gas coins and at most 128 KiB of signed
  transaction (the last two not on dry runs, as on the real node);
* owned inputs must be at their current version and digest
  (``ObjectVersionUnavailableForConsumption`` otherwise); no duplicates;
* execution: payment coins are merged into the first ("gas smashing"),
  the budget is reserved from the gas coin while commands run, SplitCoins /
  MergeCoins / TransferObjects move balances, unused split results fail the
  transaction, a failed transaction keeps only its gas charge; every
  written object gets the Lamport version max(input versions) + 1;
* gas charged deterministically: 1,000 units × price of computation plus
  ``STORAGE_COST_PER_OBJECT`` per written object, minus the rebate stored
  on mutated/deleted objects;
* IOTA Notarization's Move calls (dynamic notarizations: create, update the
  state), with notarization objects, events and past versions: see
  :mod:`tests.support.iota_notarization`;
* re-submitting executed bytes returns the recorded effects (idempotent),
  transactions get checkpoints (immediately, after a delay, or when
  released), reads answer in the node's camelCase shapes.

In a test package: ``from tests.support.iota_node import iota_node`` in its
``conftest.py`` gives every test an ``iota_node`` fixture (a running node;
``iota_node.url`` is its JSON-RPC endpoint, ``iota_node.mint(address,
nanos)`` funds an address).

Failures a real node shows can be injected: :meth:`StandInIotaNode.inject`
(answer after executing but too late, hang before executing, HTTP 503,
transient error after executing, refusal), :meth:`hold_checkpoints`, and
``before_execute`` to let "another device" spend a coin first.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import hashlib
import itertools
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType
from typing import Any, Self

import base58
import orjson
import pytest
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from p2p_energy_client.ledger.iota.bcs import (
    BcsError,
    GasCoin,
    ImmOrOwnedObject,
    Input,
    MergeCoins,
    MoveCall,
    NestedResult,
    Pure,
    Receiving,
    Result,
    SharedObject,
    SplitCoins,
    TransactionData,
    TransferObjects,
    decode_transaction_data,
    encode_transaction_data,
    normalize_address,
)

from .iota_notarization import MoveInputError, MoveRuntime, has_move_calls

# Short waits so that timeouts, retries and checkpoint waits take milliseconds.
FAST = {
    "request_timeout": 2.0,
    "execute_timeout": 0.3,
    "submit_deadline": 2.0,
    "checkpoint_timeout": 1.0,
    "poll_interval": 0.01,
}

IOTA_COIN_TYPE = "0x2::iota::IOTA"
BASE_TX_COST_FIXED_UNITS = 1_000
MAX_TX_GAS = 50_000_000_000
MAX_GAS_PRICE = 100_000
MAX_GAS_PAYMENT_OBJECTS = 256  # gas coins must number fewer
# Shape limits (iota-protocol-config), compared as transaction.rs does.
MAX_PROGRAMMABLE_TX_COMMANDS = 1_024  # commands.len() < this
MAX_ARGUMENTS = 512  # arguments of one command < this
MAX_PURE_ARGUMENT_SIZE = 16 * 1024  # bytes of one pure input < this
MAX_INPUT_OBJECTS = 2_048  # object inputs + gas coins <= this
MAX_TX_SIZE_BYTES = 128 * 1024  # serialized SenderSignedData <= this
COMPUTATION_UNITS = 1_000  # a coin transfer falls in the lowest computation bucket
STORAGE_COST_PER_OBJECT = 988_000  # roughly what a Coin<IOTA> costs to store
OBJECT_DIGEST_DELETED = bytes([99]) * 32  # ObjectDigest::OBJECT_DIGEST_DELETED
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
EXECUTION_CLIENT_ERROR = -32002
TRANSIENT_ERROR = -32050


class Fault(StrEnum):
    """How the next call(s) of a method misbehave."""

    HANG_AFTER_APPLY = "hang_after_apply"  # execute, then never answer
    HANG_BEFORE_APPLY = "hang_before_apply"  # never answer, do nothing
    UNAVAILABLE = "unavailable"  # HTTP 503, do nothing
    TRANSIENT_AFTER_APPLY = "transient_after_apply"  # execute, answer -32050
    REFUSE = "refuse"  # answer -32002, do nothing


class RpcFailure(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _ExecutionFailure(Exception):
    """Move-level failure: the transaction is recorded as failed, only gas is charged."""


def _blake2b(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=32).digest()


def _b58(raw: bytes) -> str:
    return base58.b58encode(raw).decode()


@dataclass
class CoinObject:
    object_id: str
    version: int
    digest: bytes
    owner: str
    balance: int
    previous_transaction: str
    storage_rebate: int = STORAGE_COST_PER_OBJECT

    def ref_json(self) -> dict[str, Any]:
        return {"objectId": self.object_id, "version": self.version, "digest": _b58(self.digest)}


def _uleb128(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | 0x80 if value else byte)
        if not value:
            return bytes(out)


def sender_signed_data(tx_bytes: bytes, signatures: list[str]) -> bytes:
    """BCS ``SenderSignedData``: one ``(IntentMessage(tx), [signature bytes…])``."""
    out = bytearray(_uleb128(1) + b"\x00\x00\x00" + tx_bytes + _uleb128(len(signatures)))
    for signature in signatures:
        raw = base64.b64decode(signature)
        out += _uleb128(len(raw)) + raw
    return bytes(out)


@dataclass
class RecordedTransaction:
    digest: str
    signatures: list[str]
    input_json: dict[str, Any]
    effects: dict[str, Any]
    balance_changes: list[dict[str, Any]]
    checkpoint: int | None = None
    timestamp_ms: int | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    raw_transaction: bytes = b""


@dataclass
class _Injected:
    fault: Fault
    remaining: int


@dataclass
class _Outcome:
    effects: dict[str, Any]
    balance_changes: list[dict[str, Any]]
    written: dict[str, CoinObject]
    deleted: dict[str, tuple[int, bytes]] = field(default_factory=dict)


class StandInIotaNode:
    """An in-process IOTA node. Use as ``async with StandInIotaNode() as node: node.url``."""

    def __init__(
        self,
        *,
        reference_gas_price: int = 1_000,
        checkpoint_delay: float = 0.0,
        epoch: int = 7,
        hang_seconds: float = 5.0,
    ) -> None:
        self.reference_gas_price = reference_gas_price
        self.checkpoint_delay = checkpoint_delay
        self.epoch = epoch
        self.hang_seconds = hang_seconds
        self.objects: dict[str, CoinObject] = {}
        self.deleted: dict[str, tuple[int, bytes]] = {}
        self.transactions: dict[str, RecordedTransaction] = {}
        self.calls: list[str] = []
        # Digest of the bytes of every execute request, in order (also refused ones).
        self.submitted_digests: list[str] = []
        # Called with the decoded transaction just before it is checked and run:
        # lets a test have "another device" spend a coin first.
        self.before_execute: Callable[[TransactionData], None] | None = None
        self.before_dry_run: Callable[[TransactionData], None] | None = None
        self._faults: dict[str, list[_Injected]] = {}
        self._ids = itertools.count(1)
        self._checkpoint_seq = 1000
        self._held = False
        self._pending_checkpoints: list[str] = []
        self._stopping = asyncio.Event()
        # IOTA Notarization (Move calls); shares gas rules and coins with this node.
        self.storage_per_coin = STORAGE_COST_PER_OBJECT
        self.deleted_digest = OBJECT_DIGEST_DELETED
        self.move = MoveRuntime(self)
        self._runner: web.AppRunner | None = None
        self._sock: socket.socket | None = None
        self.url = ""

    # --- lifecycle ---

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        site = web.SockSite(self._runner, self._sock)
        await site.start()
        port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/"
        return self.url

    async def stop(self) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # --- test controls ---

    def mint(self, owner: str, amount: int) -> CoinObject:
        """Give ``owner`` a new coin of ``amount`` nanos (as a faucet would)."""
        n = next(self._ids)
        object_id = "0x" + _blake2b(b"mint" + n.to_bytes(8, "little")).hex()
        coin = CoinObject(
            object_id=object_id,
            version=1,
            digest=_blake2b(b"mint-digest" + n.to_bytes(8, "little")),
            owner=normalize_address(owner),
            balance=amount,
            previous_transaction=_b58(_blake2b(b"genesis")),
        )
        self.objects[object_id] = coin
        return coin

    def balance_of(self, owner: str) -> int:
        return sum(c.balance for c in self.coins_of(owner))

    def coins_of(self, owner: str) -> list[CoinObject]:
        owner = normalize_address(owner)
        return sorted(
            (c for c in self.objects.values() if c.owner == owner), key=lambda c: c.object_id
        )

    def spend_elsewhere(self, object_id: str, amount: int = 0) -> None:
        """Another transaction (e.g. the owner's other device) uses this coin: new version."""
        coin = self.objects[normalize_address(object_id)]
        n = next(self._ids)
        coin.version += 1
        coin.balance -= amount
        coin.previous_transaction = _b58(_blake2b(b"elsewhere" + n.to_bytes(8, "little")))
        coin.digest = _blake2b(b"elsewhere-digest" + n.to_bytes(8, "little"))

    def inject(self, method: str, fault: Fault, times: int = 1) -> None:
        """Make the next ``times`` calls of ``method`` misbehave as ``fault``."""
        self._faults.setdefault(method, []).append(_Injected(fault, times))

    def hold_checkpoints(self) -> None:
        """Executed transactions wait for :meth:`release_checkpoints` before checkpointing."""
        self._held = True

    def release_checkpoints(self) -> None:
        self._held = False
        for digest in self._pending_checkpoints:
            self._assign_checkpoint(digest)
        self._pending_checkpoints.clear()

    def _submitted_digest(self, params: object) -> str:
        try:
            return self._digest(base64.b64decode(params[0], validate=True))  # type: ignore[index]
        except (TypeError, IndexError, KeyError, binascii.Error, ValueError):
            return "<undecodable>"

    def execute_count(self) -> int:
        return self.calls.count("iota_executeTransactionBlock")

    # --- HTTP / JSON-RPC ---

    def _take_fault(self, method: str) -> Fault | None:
        queue = self._faults.get(method)
        if not queue:
            return None
        injected = queue[0]
        injected.remaining -= 1
        if injected.remaining <= 0:
            queue.pop(0)
        return injected.fault

    async def _hang(self) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=self.hang_seconds)
        except TimeoutError:
            pass

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return self._error_response(None, INVALID_REQUEST, "Parse error")
        request_id = body.get("id") if isinstance(body, dict) else None
        if not isinstance(body, dict) or not isinstance(body.get("method"), str):
            return self._error_response(request_id, INVALID_REQUEST, "Invalid request")
        method = body["method"]
        params = body.get("params", [])
        self.calls.append(method)
        if method == "iota_executeTransactionBlock":
            self.submitted_digests.append(self._submitted_digest(params))
        fault = self._take_fault(method)
        if fault is Fault.UNAVAILABLE:
            return web.Response(status=503, text="Service Unavailable")
        if fault is Fault.HANG_BEFORE_APPLY:
            await self._hang()
            return web.Response(status=504, text="Gateway Timeout")
        handler = self._methods().get(method)
        if handler is None:
            return self._error_response(request_id, METHOD_NOT_FOUND, f"Method not found: {method}")
        if fault is Fault.REFUSE:
            return self._error_response(
                request_id, EXECUTION_CLIENT_ERROR, "Injected refusal: nothing was executed"
            )
        try:
            result = handler(params if isinstance(params, list) else [])
        except RpcFailure as exc:
            return self._error_response(request_id, exc.code, exc.message)
        if fault is Fault.HANG_AFTER_APPLY:
            await self._hang()
            return web.Response(status=504, text="Gateway Timeout")
        if fault is Fault.TRANSIENT_AFTER_APPLY:
            return self._error_response(
                request_id, TRANSIENT_ERROR, "Transaction timed out before reaching finality"
            )
        return web.Response(
            body=orjson.dumps({"jsonrpc": "2.0", "id": request_id, "result": result}),
            content_type="application/json",
        )

    @staticmethod
    def _error_response(request_id: object, code: int, message: str) -> web.Response:
        return web.Response(
            body=orjson.dumps(
                {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}
            ),
            content_type="application/json",
        )

    def _methods(self) -> dict[str, Callable[[list[Any]], Any]]:
        return {
            "iotax_getReferenceGasPrice": lambda _p: str(self.reference_gas_price),
            "iotax_getCoins": self._get_coins,
            "iotax_getBalance": self._get_balance,
            "iota_dryRunTransactionBlock": self._dry_run,
            "iota_executeTransactionBlock": self._execute,
            "iota_getTransactionBlock": self._get_transaction_block,
            "iota_multiGetObjects": self._multi_get_objects,
            "iota_getObject": self._get_object,
            "iota_tryGetPastObject": self._try_get_past_object,
        }

    # --- read methods ---

    @staticmethod
    def _param(params: list[Any], index: int, default: Any = None) -> Any:
        return params[index] if len(params) > index else default

    def _owner_param(self, value: object) -> str:
        try:
            return normalize_address(value)  # type: ignore[arg-type]
        except BcsError as exc:
            raise RpcFailure(INVALID_PARAMS, f"Invalid params: {exc}") from exc

    def _check_coin_type(self, coin_type: object) -> None:
        if coin_type not in (None, IOTA_COIN_TYPE, "0x" + "0" * 63 + "2::iota::IOTA"):
            raise RpcFailure(INVALID_PARAMS, f"this stand-in only holds IOTA, not {coin_type}")

    def _get_coins(self, params: list[Any]) -> dict[str, Any]:
        owner = self._owner_param(self._param(params, 0))
        self._check_coin_type(self._param(params, 1))
        cursor = self._param(params, 2)
        limit = self._param(params, 3) or 50
        if not isinstance(limit, int) or limit < 1:
            raise RpcFailure(INVALID_PARAMS, "Page size limit cannot be smaller than 1")
        limit = min(limit, 50)
        coins = [c for c in self.coins_of(owner) if cursor is None or c.object_id > cursor]
        page = coins[:limit]
        has_next = len(coins) > limit
        return {
            "data": [
                {
                    "coinType": IOTA_COIN_TYPE,
                    "coinObjectId": c.object_id,
                    "version": str(c.version),
                    "digest": _b58(c.digest),
                    "balance": str(c.balance),
                    "previousTransaction": c.previous_transaction,
                }
                for c in page
            ],
            "nextCursor": page[-1].object_id if page else cursor,
            "hasNextPage": has_next,
        }

    def _get_balance(self, params: list[Any]) -> dict[str, Any]:
        owner = self._owner_param(self._param(params, 0))
        self._check_coin_type(self._param(params, 1))
        coins = self.coins_of(owner)
        return {
            "coinType": IOTA_COIN_TYPE,
            "coinObjectCount": len(coins),
            "totalBalance": str(sum(c.balance for c in coins)),
        }

    def _multi_get_objects(self, params: list[Any]) -> list[dict[str, Any]]:
        ids = self._param(params, 0)
        if not isinstance(ids, list):
            raise RpcFailure(INVALID_PARAMS, "Invalid params: expected a list of object ids")
        out: list[dict[str, Any]] = []
        for raw_id in ids:
            object_id = self._owner_param(raw_id)
            coin = self.objects.get(object_id)
            notarized = self.move.get_object(object_id, {"showPreviousTransaction": True})
            if notarized is not None:
                out.append(notarized)
            elif coin is not None:
                out.append(
                    {
                        "data": {
                            "objectId": coin.object_id,
                            "version": str(coin.version),
                            "digest": _b58(coin.digest),
                            "previousTransaction": coin.previous_transaction,
                        }
                    }
                )
            elif object_id in self.deleted:
                version, digest = self.deleted[object_id]
                out.append(
                    {
                        "error": {
                            "code": "deleted",
                            "object_id": object_id,
                            "version": version,
                            "digest": _b58(digest),
                        }
                    }
                )
            else:
                out.append({"error": {"code": "notExists", "object_id": object_id}})
        return out

    def _get_object(self, params: list[Any]) -> dict[str, Any]:
        object_id = self._owner_param(self._param(params, 0))
        options = self._param(params, 1) or {}
        found = self.move.get_object(object_id, options)
        if found is not None:
            return found
        coin = self.objects.get(object_id)
        if coin is None:
            return {"error": {"code": "notExists", "object_id": object_id}}
        data: dict[str, Any] = coin.ref_json() | {"version": str(coin.version)}
        if options.get("showType"):
            data["type"] = f"0x2::coin::Coin<{IOTA_COIN_TYPE}>"
        if options.get("showOwner"):
            data["owner"] = {"AddressOwner": coin.owner}
        return {"data": data}

    def _try_get_past_object(self, params: list[Any]) -> dict[str, Any]:
        object_id = self._owner_param(self._param(params, 0))
        version = self._param(params, 1)
        if not isinstance(version, int) or isinstance(version, bool):
            raise RpcFailure(INVALID_PARAMS, "Invalid params: version must be an integer")
        return self.move.past_object(object_id, version, self._param(params, 2) or {})

    def _get_transaction_block(self, params: list[Any]) -> dict[str, Any]:
        digest = self._param(params, 0)
        options = self._param(params, 1) or {}
        recorded = self.transactions.get(digest) if isinstance(digest, str) else None
        if recorded is None:
            raise RpcFailure(
                INVALID_PARAMS,
                f"Could not find the referenced transaction [TransactionDigest({digest})].",
            )
        return self._response(recorded, options, with_checkpoint=True)

    @staticmethod
    def _response(
        recorded: RecordedTransaction, options: dict[str, Any], *, with_checkpoint: bool
    ) -> dict[str, Any]:
        out: dict[str, Any] = {"digest": recorded.digest}
        if options.get("showInput"):
            out["transaction"] = {"data": recorded.input_json, "txSignatures": recorded.signatures}
        if options.get("showRawInput") and recorded.raw_transaction:
            out["rawTransaction"] = base64.b64encode(recorded.raw_transaction).decode()
        if options.get("showEffects"):
            out["effects"] = recorded.effects
        if options.get("showBalanceChanges"):
            out["balanceChanges"] = recorded.balance_changes
        if options.get("showEvents"):
            out["events"] = recorded.events
        if with_checkpoint and recorded.checkpoint is not None:
            out["checkpoint"] = str(recorded.checkpoint)
            out["timestampMs"] = str(recorded.timestamp_ms)
        return out

    # --- write methods ---

    def _decode(self, tx_b64: object) -> tuple[bytes, TransactionData]:
        try:
            tx_bytes = base64.b64decode(tx_b64, validate=True)  # type: ignore[arg-type]
            data = decode_transaction_data(tx_bytes, move_calls=True)
        except (TypeError, binascii.Error, ValueError) as exc:
            raise RpcFailure(INVALID_PARAMS, f"Invalid params: {exc}") from exc
        if encode_transaction_data(data) != tx_bytes:
            raise RpcFailure(INVALID_PARAMS, "Deserialization error: non-canonical BCS")
        return tx_bytes, data

    @staticmethod
    def _input_error(message: str) -> RpcFailure:
        return RpcFailure(
            EXECUTION_CLIENT_ERROR,
            "Transaction execution failed due to issues with transaction inputs, "
            f"please review the errors and try again: {message}.",
        )

    def _size_limit(self, limit: str, value: int) -> RpcFailure:
        # UserInputError::SizeLimitExceeded, "Size limit exceeded: {limit} is {value}".
        return self._input_error(f"Size limit exceeded: {limit} is {value}")

    def check_shape(self, data: TransactionData) -> None:
        """The programmable transaction's limits (validity_check_no_gas_check: dry runs too)."""
        commands = data.kind.commands
        if len(commands) >= MAX_PROGRAMMABLE_TX_COMMANDS:
            raise self._size_limit(
                "maximum commands in a programmable transaction", MAX_PROGRAMMABLE_TX_COMMANDS
            )
        for arg in data.kind.inputs:
            if isinstance(arg, Pure) and len(arg.value) >= MAX_PURE_ARGUMENT_SIZE:
                raise self._size_limit("maximum pure argument size", MAX_PURE_ARGUMENT_SIZE)
        for command in commands:
            match command:
                case TransferObjects(args, _) | SplitCoins(_, args) | MergeCoins(_, args):
                    if not args:
                        raise self._input_error(
                            "TransferObjects, MergeCoin, and Publish cannot have empty arguments."
                            " If MakeMoveVec has empty arguments, it must have a type specified"
                        )
                case MoveCall(arguments=args):
                    pass
            if len(args) >= MAX_ARGUMENTS:
                raise self._size_limit(
                    "maximum arguments in a programmable transaction command", MAX_ARGUMENTS
                )
        objects = len(data.gas_data.payment) + sum(
            isinstance(arg, ImmOrOwnedObject | SharedObject | Receiving) for arg in data.kind.inputs
        )
        if objects > MAX_INPUT_OBJECTS:
            raise self._size_limit(
                "maximum input + receiving objects in a transaction", MAX_INPUT_OBJECTS
            )

    def check_size(self, tx_bytes: bytes, signatures: list[str]) -> None:
        """The signed transaction's size (SenderSignedData::validity_check; not on dry runs)."""
        size = len(sender_signed_data(tx_bytes, signatures))
        if size > MAX_TX_SIZE_BYTES:
            raise RpcFailure(
                EXECUTION_CLIENT_ERROR,
                "Size limit exceeded: serialized transaction size exceeded maximum of "
                f"{MAX_TX_SIZE_BYTES} is {size}",
            )

    def _verify_signature(self, tx_bytes: bytes, data: TransactionData, signatures: object) -> None:
        if not isinstance(signatures, list) or len(signatures) != 1:
            raise RpcFailure(
                EXECUTION_CLIENT_ERROR,
                "Invalid user signature: Expect 1 signer signatures but got "
                f"{len(signatures) if isinstance(signatures, list) else 0}",
            )
        try:
            raw = base64.b64decode(signatures[0], validate=True)
        except (TypeError, binascii.Error, ValueError) as exc:
            raise RpcFailure(INVALID_PARAMS, "Invalid params: signature is not base64") from exc
        if len(raw) != 97 or raw[0] != 0x00:
            raise RpcFailure(EXECUTION_CLIENT_ERROR, "Invalid user signature: not Ed25519")
        signature, public_key = raw[1:65], raw[65:]
        message = _blake2b(b"\x00\x00\x00" + tx_bytes)
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
        except (InvalidSignature, ValueError) as exc:
            raise RpcFailure(
                EXECUTION_CLIENT_ERROR,
                "Invalid user signature: Signature is not valid: Ed25519 verification failed",
            ) from exc
        if "0x" + _blake2b(public_key).hex() != data.sender:
            raise RpcFailure(
                EXECUTION_CLIENT_ERROR,
                "Invalid user signature: Transaction was not signed by the correct sender",
            )

    def _check_inputs(self, data: TransactionData) -> None:
        self.check_gas(data)
        gas = data.gas_data
        refs = list(gas.payment) + [
            arg.ref for arg in data.kind.inputs if isinstance(arg, ImmOrOwnedObject)
        ]
        if any(not isinstance(arg, Pure | ImmOrOwnedObject) for arg in data.kind.inputs):
            raise self._input_error("this stand-in holds only owned coins")
        self._check_owned_coins(data, refs)

    def check_gas(self, data: TransactionData) -> None:
        """Gas price and budget rules (for coin transfers and Move calls alike)."""
        gas = data.gas_data
        rgp = self.reference_gas_price
        if gas.owner != data.sender:
            raise self._input_error("this stand-in does not do sponsored transactions")
        if gas.price < rgp:
            raise self._input_error(f"Gas price {gas.price} under reference gas price (RGP) {rgp}")
        if gas.price > MAX_GAS_PRICE:
            raise self._input_error(f"Gas price cannot exceed {MAX_GAS_PRICE} nanos")
        if gas.budget > MAX_TX_GAS:
            raise self._input_error(f"Gas budget: {gas.budget} is higher than max: {MAX_TX_GAS}")
        if gas.budget < BASE_TX_COST_FIXED_UNITS * rgp:
            raise self._input_error(
                f"Gas budget: {gas.budget} is lower than min: {BASE_TX_COST_FIXED_UNITS * rgp}"
            )
        if not gas.payment:
            raise self._input_error("Transaction gas payment missing")
        if len(gas.payment) >= MAX_GAS_PAYMENT_OBJECTS:
            raise self._size_limit("maximum number of gas payment objects", MAX_GAS_PAYMENT_OBJECTS)
        if data.expiration_epoch is not None and data.expiration_epoch < self.epoch:
            raise self._input_error("Transaction Expired")

    def check_gas_coins(self, data: TransactionData) -> None:
        """The payment coins exist, are current, are the sender's and cover the budget."""
        if any(ref.object_id in self.move.objects for ref in data.gas_data.payment):
            raise self._input_error("only coins pay for gas")
        self._check_owned_coins(data, list(data.gas_data.payment))

    def _check_owned_coins(self, data: TransactionData, refs: list[Any]) -> None:
        gas = data.gas_data
        if len({ref.object_id for ref in refs}) != len(refs):
            raise self._input_error("The transaction inputs contain duplicated ObjectRef's")
        for ref in refs:
            coin = self.objects.get(ref.object_id)
            if coin is None:
                if ref.object_id in self.deleted:
                    version = self.deleted[ref.object_id][0]
                    raise self._input_error(
                        f"Object ({ref.object_id}, SequenceNumber({ref.version}), "
                        f"o#{ref.digest_base58}) is not available for consumption, "
                        f"its current version: SequenceNumber({version})"
                    )
                raise self._input_error(f"Could not find the referenced object {ref.object_id}")
            if coin.version != ref.version:
                raise self._input_error(
                    f"Object ({ref.object_id}, SequenceNumber({ref.version}), "
                    f"o#{ref.digest_base58}) is not available for consumption, "
                    f"its current version: SequenceNumber({coin.version})"
                )
            if coin.digest != ref.digest:
                raise self._input_error(
                    f"Invalid Object digest for object {ref.object_id}. "
                    f"Expected digest : o#{_b58(coin.digest)}"
                )
            if coin.owner != data.sender:
                raise self._input_error(
                    f"Object {ref.object_id} is owned by {coin.owner}, not by the sender"
                )
        gas_balance = sum(self.objects[ref.object_id].balance for ref in gas.payment)
        if gas_balance < gas.budget:
            raise self._input_error(
                f"Balance of gas object {gas_balance} is lower than the needed amount: {gas.budget}"
            )

    def _run(self, data: TransactionData, digest: str) -> _Outcome:
        """Execute on copies; nothing in ``self.objects`` changes until the caller commits."""
        gas = data.gas_data
        price = gas.price
        payment = [copy.copy(self.objects[ref.object_id]) for ref in gas.payment]
        inputs = {
            i: copy.copy(self.objects[arg.ref.object_id])
            for i, arg in enumerate(data.kind.inputs)
            if isinstance(arg, ImmOrOwnedObject)
        }
        touched_before = [
            (c.object_id, c.owner, c.balance, c.version, c.storage_rebate)
            for c in [*payment, *inputs.values()]
        ]
        lamport = max(v for _, _, _, v, _ in touched_before) + 1
        digest_raw = base58.b58decode(digest)

        # Gas smashing: every payment coin is merged into the first one.
        gas_coin = payment[0]
        smashed = sum(c.balance for c in payment)
        smash_deleted = {c.object_id: (lamport, OBJECT_DIGEST_DELETED) for c in payment[1:]}
        deleted: dict[str, tuple[int, bytes]] = dict(smash_deleted)
        gas_coin.balance = smashed - gas.budget  # the budget is reserved while commands run

        def revert() -> None:
            # A failed transaction keeps only the gas smash; inputs keep balances and owners.
            gas_coin.balance = smashed - gas.budget
            gas_coin.owner = data.sender
            for coin in inputs.values():
                original = self.objects[coin.object_id]
                coin.balance, coin.owner = original.balance, original.owner
            created.clear()
            deleted.clear()
            deleted.update(smash_deleted)

        status: dict[str, Any] = {"status": "success"}
        created: dict[str, CoinObject] = {}
        try:
            self._run_commands(data, digest_raw, gas_coin, inputs, created, deleted, lamport)
        except _ExecutionFailure as failure:
            status = {"status": "failure", "error": str(failure)}
            revert()

        computation = COMPUTATION_UNITS * price
        rebate = sum(r for *_, r in touched_before)

        def written_now() -> list[CoinObject]:
            kept = [c for c in inputs.values() if c.object_id not in deleted]
            return [gas_coin, *kept, *created.values()]

        storage_cost = STORAGE_COST_PER_OBJECT * len(written_now())
        if computation + storage_cost > gas.budget:
            # Out of gas: the transaction fails and the whole budget is charged.
            status = {"status": "failure", "error": "InsufficientGas"}
            revert()
            computation, storage_cost, rebate = gas.budget, 0, 0
            net = gas.budget
        else:
            net = computation + storage_cost - rebate
        gas_coin.balance += gas.budget - net
        written = written_now()
        mutated = [c for c in written if c.object_id not in created]

        for coin in written:
            coin.version = lamport
            coin.digest = _blake2b(
                b"object"
                + bytes.fromhex(coin.object_id[2:])
                + struct.pack("<Q", lamport)
                + digest_raw
            )
            coin.previous_transaction = digest
            coin.storage_rebate = STORAGE_COST_PER_OBJECT

        balances_before: dict[str, int] = {}
        for _, owner, balance, _, _ in touched_before:
            balances_before[owner] = balances_before.get(owner, 0) + balance
        balances_after: dict[str, int] = {}
        for coin in written:
            balances_after[coin.owner] = balances_after.get(coin.owner, 0) + coin.balance
        balance_changes = [
            {
                "owner": {"AddressOwner": owner},
                "coinType": IOTA_COIN_TYPE,
                "amount": str(balances_after.get(owner, 0) - balances_before.get(owner, 0)),
            }
            for owner in sorted(set(balances_before) | set(balances_after))
            if balances_after.get(owner, 0) != balances_before.get(owner, 0)
        ]

        def owned(coin: CoinObject) -> dict[str, Any]:
            return {"owner": {"AddressOwner": coin.owner}, "reference": coin.ref_json()}

        effects = {
            "messageVersion": "v1",
            "status": status,
            "executedEpoch": str(self.epoch),
            "gasUsed": {
                "computationCost": str(computation),
                "computationCostBurned": str(computation),
                "storageCost": str(storage_cost),
                "storageRebate": str(rebate),
                "nonRefundableStorageFee": "0",
            },
            "modifiedAtVersions": [
                {"objectId": oid, "sequenceNumber": str(version)}
                for oid, _, _, version, _ in touched_before
            ],
            "transactionDigest": digest,
            "created": [owned(c) for c in created.values()],
            "mutated": [owned(c) for c in mutated],
            "deleted": [
                {"objectId": oid, "version": version, "digest": _b58(d)}
                for oid, (version, d) in deleted.items()
            ],
            "gasObject": owned(gas_coin),
            "dependencies": sorted(
                {self.objects[oid].previous_transaction for oid, *_ in touched_before}
            ),
        }
        return _Outcome(
            effects=effects,
            balance_changes=balance_changes,
            written={c.object_id: c for c in written},
            deleted=deleted,
        )

    def _run_commands(
        self,
        data: TransactionData,
        digest_raw: bytes,
        gas_coin: CoinObject,
        inputs: dict[int, CoinObject],
        created: dict[str, CoinObject],
        deleted: dict[str, tuple[int, bytes]],
        lamport: int,
    ) -> None:
        results: dict[int, list[str]] = {}
        unused: set[str] = set()  # split results not yet moved anywhere
        creation = itertools.count()

        def coin_arg(arg: object, k: int) -> CoinObject:
            match arg:
                case GasCoin():
                    return gas_coin
                case Input(index) if index in inputs:
                    coin = inputs[index]
                case NestedResult(index, j) if index in results and j < len(results[index]):
                    coin = created[results[index][j]]
                case Result(index) if index in results and len(results[index]) == 1:
                    coin = created[results[index][0]]
                case _:
                    raise _ExecutionFailure(f"InvalidArgument in command {k}")
            if coin.object_id in deleted:
                raise _ExecutionFailure(f"InvalidValueUsage in command {k}")
            return coin

        def pure_arg(arg: object, k: int) -> bytes:
            if isinstance(arg, Input) and isinstance(
                pure := data.kind.inputs[arg.index] if arg.index < len(data.kind.inputs) else None,
                Pure,
            ):
                return pure.value
            raise _ExecutionFailure(f"InvalidArgument in command {k}")

        for k, command in enumerate(data.kind.commands):
            match command:
                case SplitCoins(coin, amounts):
                    source = coin_arg(coin, k)
                    values = []
                    for amount_arg in amounts:
                        raw = pure_arg(amount_arg, k)
                        if len(raw) != 8:
                            raise _ExecutionFailure(f"InvalidBCSBytes in command {k}")
                        values.append(struct.unpack("<Q", raw)[0])
                    if sum(values) > source.balance:
                        raise _ExecutionFailure(f"InsufficientCoinBalance in command {k}")
                    source.balance -= sum(values)
                    new_ids = []
                    for value in values:
                        n = next(creation)
                        object_id = "0x" + _blake2b(digest_raw + struct.pack("<Q", n)).hex()
                        created[object_id] = CoinObject(
                            object_id=object_id,
                            version=lamport,
                            digest=b"\x00" * 32,
                            owner=data.sender,
                            balance=value,
                            previous_transaction="",
                        )
                        new_ids.append(object_id)
                        unused.add(object_id)
                    results[k] = new_ids
                case MergeCoins(destination, sources):
                    target = coin_arg(destination, k)
                    for source_arg in sources:
                        if isinstance(source_arg, GasCoin):
                            raise _ExecutionFailure(f"InvalidGasCoinUsage in command {k}")
                        source = coin_arg(source_arg, k)
                        if source is target:
                            raise _ExecutionFailure(f"InvalidValueUsage in command {k}")
                        target.balance += source.balance
                        source.balance = 0
                        unused.discard(source.object_id)
                        if source.object_id in created:
                            del created[source.object_id]
                        else:
                            deleted[source.object_id] = (lamport, OBJECT_DIGEST_DELETED)
                    results[k] = []
                case TransferObjects(objects, address):
                    raw = pure_arg(address, k)
                    if len(raw) != 32:
                        raise _ExecutionFailure(f"InvalidBCSBytes in command {k}")
                    recipient = "0x" + raw.hex()
                    for object_arg in objects:
                        coin = coin_arg(object_arg, k)
                        coin.owner = recipient
                        unused.discard(coin.object_id)
                    results[k] = []
        if unused:
            raise _ExecutionFailure("UnusedValueWithoutDrop")

    def _input_json(self, data: TransactionData) -> dict[str, Any]:
        def argument(arg: object) -> Any:
            match arg:
                case GasCoin():
                    return "GasCoin"
                case Input(index):
                    return {"Input": index}
                case Result(index):
                    return {"Result": index}
                case NestedResult(index, j):
                    return {"NestedResult": [index, j]}
            raise AssertionError(arg)

        inputs: list[dict[str, Any]] = []
        for arg in data.kind.inputs:
            if isinstance(arg, Pure) and len(arg.value) == 8:
                value = str(struct.unpack("<Q", arg.value)[0])
                inputs.append({"type": "pure", "valueType": "u64", "value": value})
            elif isinstance(arg, Pure) and len(arg.value) == 32:
                address = "0x" + arg.value.hex()
                inputs.append({"type": "pure", "valueType": "address", "value": address})
            elif isinstance(arg, Pure):
                inputs.append({"type": "pure", "value": list(arg.value)})
            elif isinstance(arg, ImmOrOwnedObject):
                inputs.append(
                    {
                        "type": "object",
                        "objectType": "immOrOwnedObject",
                        "objectId": arg.ref.object_id,
                        "version": str(arg.ref.version),
                        "digest": arg.ref.digest_base58,
                    }
                )
        commands: list[dict[str, Any]] = []
        for command in data.kind.commands:
            match command:
                case SplitCoins(coin, amounts):
                    commands.append(
                        {"SplitCoins": [argument(coin), [argument(a) for a in amounts]]}
                    )
                case MergeCoins(destination, sources):
                    commands.append(
                        {"MergeCoins": [argument(destination), [argument(s) for s in sources]]}
                    )
                case TransferObjects(objects, address):
                    commands.append(
                        {"TransferObjects": [[argument(o) for o in objects], argument(address)]}
                    )
        gas = data.gas_data
        return {
            "messageVersion": "v1",
            "transaction": {
                "kind": "ProgrammableTransaction",
                "inputs": inputs,
                "transactions": commands,
            },
            "sender": data.sender,
            "gasData": {
                "payment": [
                    {"objectId": r.object_id, "version": r.version, "digest": r.digest_base58}
                    for r in gas.payment
                ],
                "owner": gas.owner,
                "price": str(gas.price),
                "budget": str(gas.budget),
            },
        }

    @staticmethod
    def _digest(tx_bytes: bytes) -> str:
        return _b58(_blake2b(b"TransactionData::" + tx_bytes))

    def _check_move(self, data: TransactionData) -> None:
        try:
            self.move.check_inputs(data)
        except MoveInputError as exc:
            raise self._input_error(str(exc)) from exc

    def _dry_run(self, params: list[Any]) -> dict[str, Any]:
        tx_bytes, data = self._decode(self._param(params, 0))
        self.check_shape(data)
        if self.before_dry_run is not None:
            self.before_dry_run(data)
        if has_move_calls(data):
            self._check_move(data)
            moved = self.move.run(data, self._digest(tx_bytes))
            return {
                "effects": moved.effects,
                "events": moved.events,
                "objectChanges": [],
                "balanceChanges": moved.balance_changes,
                "input": self.move.input_json(data),
            }
        self._check_inputs(data)
        digest = self._digest(tx_bytes)
        outcome = self._run(data, digest)
        return {
            "effects": outcome.effects,
            "events": [],
            "objectChanges": [],
            "balanceChanges": outcome.balance_changes,
            "input": self._input_json(data),
        }

    def _execute(self, params: list[Any]) -> dict[str, Any]:
        tx_bytes, data = self._decode(self._param(params, 0))
        signatures = self._param(params, 1)
        options = self._param(params, 2) or {}
        request_type = self._param(params, 3)
        if request_type not in (None, "WaitForEffectsCert", "WaitForLocalExecution"):
            raise RpcFailure(INVALID_PARAMS, f"Invalid params: unknown request type {request_type}")
        self._verify_signature(tx_bytes, data, signatures)
        assert isinstance(signatures, list)  # checked with the signature
        self.check_size(tx_bytes, signatures)
        self.check_shape(data)
        digest = self._digest(tx_bytes)
        raw_transaction = sender_signed_data(tx_bytes, signatures)
        recorded = self.transactions.get(digest)
        if recorded is None:
            if self.before_execute is not None:
                self.before_execute(data)
            if has_move_calls(data):
                self._check_move(data)
                moved = self.move.run(data, digest)
                self.move.commit(moved)
                recorded = RecordedTransaction(
                    digest=digest,
                    signatures=list(signatures),  # type: ignore[arg-type]
                    input_json=self.move.input_json(data),
                    effects=moved.effects,
                    balance_changes=moved.balance_changes,
                    events=moved.events,
                    raw_transaction=raw_transaction,
                )
                self.transactions[digest] = recorded
                self._schedule_checkpoint(digest)
                response = self._response(recorded, options, with_checkpoint=False)
                response["confirmedLocalExecution"] = True
                return response
            self._check_inputs(data)
            outcome = self._run(data, digest)
            for object_id in outcome.deleted:
                self.deleted[object_id] = outcome.deleted[object_id]
                self.objects.pop(object_id, None)
            self.objects.update(outcome.written)
            recorded = RecordedTransaction(
                digest=digest,
                signatures=list(signatures),  # type: ignore[arg-type]
                input_json=self._input_json(data),
                effects=outcome.effects,
                balance_changes=outcome.balance_changes,
                raw_transaction=raw_transaction,
            )
            self.transactions[digest] = recorded
            self._schedule_checkpoint(digest)
        response = self._response(recorded, options, with_checkpoint=False)
        response["confirmedLocalExecution"] = True
        return response

    # --- checkpoints ---

    def _schedule_checkpoint(self, digest: str) -> None:
        if self._held:
            self._pending_checkpoints.append(digest)
        elif self.checkpoint_delay > 0:
            asyncio.get_running_loop().call_later(
                self.checkpoint_delay, self._assign_checkpoint, digest
            )
        else:
            self._assign_checkpoint(digest)

    def _assign_checkpoint(self, digest: str) -> None:
        if self._held:
            self._pending_checkpoints.append(digest)
            return
        recorded = self.transactions[digest]
        if recorded.checkpoint is None:
            self._checkpoint_seq += 1
            recorded.checkpoint = self._checkpoint_seq
            recorded.timestamp_ms = int(time.time() * 1000)

    def all_coins(self) -> Iterator[CoinObject]:
        return iter(self.objects.values())


@pytest.fixture
async def iota_node(socket_enabled: None) -> AsyncIterator[StandInIotaNode]:
    """A running stand-in node on 127.0.0.1.

    Home Assistant's pytest plugin blocks sockets; ``socket_enabled`` lifts
    that for the test while connections stay limited to 127.0.0.1.
    """
    async with StandInIotaNode(hang_seconds=3.0) as node:
        yield node
