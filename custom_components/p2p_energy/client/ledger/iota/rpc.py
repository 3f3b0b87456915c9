"""A small JSON-RPC client for an IOTA Rebased node, limited to what payments need.

Method names and shapes follow ``iotaledger/iota`` ``crates/iota-json-rpc-api``
(``iota_`` for the read/write API, ``iotax_`` for the coin and governance
API — Sui's ``sui_``/``suix_`` renamed) and ``crates/iota-json-rpc-types``
(camelCase fields; u64/u128 amounts, checkpoints and timestamps as decimal
strings; digests in base58). Responses are parsed into small frozen
dataclasses, and anything that does not have the documented shape is an
error rather than a default: a payment must never be accepted because a
field was missing.

Errors: :class:`RpcError` when the node answered with a JSON-RPC error
(it refused; for ``executeTransactionBlock`` except the transient code,
nothing was executed), :class:`NodeUnavailable` when there was no usable
answer (timeout, connection failure, HTTP error, malformed body) — for an
execute call that means *the outcome is unknown*.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import itertools
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from ...lifecycle import AsyncCloseable
from ..base import LedgerError
from .bcs import BcsError, ObjectRef, digest_from_base58, normalize_address

IOTA_COIN_TYPE = "0x2::iota::IOTA"
# iota-json-rpc-api: TRANSIENT_ERROR_CODE (timeout before finality, overload):
# the node may or may not have had the transaction finalised.
TRANSIENT_ERROR_CODE = -32050
TRANSACTION_EXECUTION_CLIENT_ERROR_CODE = -32002
INVALID_PARAMS_CODE = -32602
# iota-types error.rs: TRANSACTION_NOT_FOUND_MSG_PREFIX
_TX_NOT_FOUND_PREFIX = "Could not find the referenced transaction"
# iotax_getCoins pages hold at most 50 coins (QUERY_MAX_RESULT_LIMIT).
COINS_PAGE_LIMIT = 50
_MAX_COIN_PAGES = 200
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_COIN_TYPE_RE = re.compile(rf"^(0x[0-9a-fA-F]{{1,64}})::({_IDENT})::({_IDENT})$")


class RpcError(LedgerError):
    """The node answered with a JSON-RPC error object."""

    def __init__(self, method: str, rpc_code: int, message: str, data: object = None) -> None:
        super().__init__("rpc_error", f"{method}: {message} (code {rpc_code})")
        self.method = method
        self.rpc_code = rpc_code
        self.rpc_message = message
        self.data = data

    @property
    def transient(self) -> bool:
        """True when the node could not tell whether a transaction was finalised."""
        return self.rpc_code == TRANSIENT_ERROR_CODE


class NodeUnavailable(LedgerError):
    """No usable answer from the node: timeout, connection error, HTTP error, bad JSON."""

    def __init__(self, method: str, message: str) -> None:
        super().__init__("node_unavailable", f"{method}: {message}")
        self.method = method


class MalformedResponse(NodeUnavailable):
    """The node answered, but not in the shape the IOTA JSON-RPC types define."""


def normalize_coin_type(coin_type: str) -> str:
    """``0x2::iota::IOTA`` and ``0x000…002::iota::IOTA`` name the same type."""
    match = _COIN_TYPE_RE.match(coin_type)
    if match is None:
        return coin_type
    return f"{normalize_address(match[1])}::{match[2]}::{match[3]}"


_IOTA_TYPE_NORMALIZED = normalize_coin_type(IOTA_COIN_TYPE)


def is_iota_coin_type(coin_type: str) -> bool:
    return normalize_coin_type(coin_type) == _IOTA_TYPE_NORMALIZED


# --- parsed shapes ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Coin:
    object_id: str
    version: int
    digest: bytes
    balance: int
    coin_type: str

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef(self.object_id, self.version, self.digest)


@dataclass(frozen=True, slots=True)
class CoinPage:
    coins: tuple[Coin, ...]
    next_cursor: str | None
    has_next_page: bool


@dataclass(frozen=True, slots=True)
class BalanceChange:
    """One entry of ``balanceChanges``; ``address`` is set for ``AddressOwner`` owners."""

    address: str | None
    coin_type: str
    amount: int


@dataclass(frozen=True, slots=True)
class GasCost:
    """``effects.gasUsed`` (``GasCostSummary``), in nanos."""

    computation_cost: int
    computation_cost_burned: int
    storage_cost: int
    storage_rebate: int
    non_refundable_storage_fee: int

    @property
    def net(self) -> int:
        """What the sender is charged: computation + storage − rebate."""
        return self.computation_cost + self.storage_cost - self.storage_rebate


@dataclass(frozen=True, slots=True)
class TransactionBlock:
    """The parts of ``TransactionBlockResponse`` (or a dry run) a payment is judged by.

    Fields are ``None`` when the corresponding ``show*`` option was not
    requested (or the node has not got there yet: ``checkpoint``).
    """

    digest: str
    sender: str | None
    status: str | None  # "success" | "failure"
    error: str | None
    gas_used: GasCost | None
    balance_changes: tuple[BalanceChange, ...] | None
    checkpoint: int | None
    timestamp_ms: int | None
    raw: Mapping[str, Any] = field(compare=False, repr=False)
    # BCS SenderSignedData (``rawTransaction``), when ``showRawInput`` was requested.
    raw_transaction: bytes | None = field(default=None, compare=False, repr=False)

    @property
    def succeeded(self) -> bool:
        return self.status == "success"

    def net_change(self, address: str, coin_type: str = IOTA_COIN_TYPE) -> int:
        """Net balance change of ``address`` in ``coin_type`` (0 when absent)."""
        if self.balance_changes is None:
            raise MalformedResponse("balanceChanges", "balance changes were not requested")
        wanted = normalize_coin_type(coin_type)
        return sum(
            change.amount
            for change in self.balance_changes
            if change.address == address and normalize_coin_type(change.coin_type) == wanted
        )


@dataclass(frozen=True, slots=True)
class ObjectState:
    """Current version of an object (``IotaObjectData``), or the version that deleted it."""

    object_id: str
    version: int
    digest: bytes
    previous_transaction: str | None
    deleted: bool = False


# --- JSON helpers ------------------------------------------------------------------------


def _req(obj: object, key: str, method: str) -> Any:
    if not isinstance(obj, Mapping) or key not in obj:
        raise MalformedResponse(method, f"missing field {key!r}")
    return obj[key]


def _int_field(value: object, what: str, method: str, *, signed: bool = False) -> int:
    # The node sends BigInt<u64>/<u128>/i128 as decimal strings, some small
    # counts as JSON numbers; accept both, nothing else.
    if isinstance(value, bool):
        raise MalformedResponse(method, f"{what} is not an integer")
    if isinstance(value, int):
        result = value
    elif isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,40}", value):
        result = int(value)
    else:
        raise MalformedResponse(method, f"{what} is not an integer: {value!r}")
    if result < 0 and not signed:
        raise MalformedResponse(method, f"{what} is negative")
    return result


def _str_field(value: object, what: str, method: str) -> str:
    if not isinstance(value, str):
        raise MalformedResponse(method, f"{what} is not a string")
    return value


def _address_field(value: object, what: str, method: str) -> str:
    try:
        return normalize_address(_str_field(value, what, method))
    except BcsError as exc:
        raise MalformedResponse(method, f"{what}: {exc}") from exc


def _digest_field(value: object, what: str, method: str) -> bytes:
    try:
        return digest_from_base58(_str_field(value, what, method))
    except BcsError as exc:
        raise MalformedResponse(method, f"{what}: {exc}") from exc


def _parse_coin(obj: object, method: str) -> Coin:
    return Coin(
        object_id=_address_field(_req(obj, "coinObjectId", method), "coinObjectId", method),
        version=_int_field(_req(obj, "version", method), "version", method),
        digest=_digest_field(_req(obj, "digest", method), "digest", method),
        balance=_int_field(_req(obj, "balance", method), "balance", method),
        coin_type=_str_field(_req(obj, "coinType", method), "coinType", method),
    )


def _parse_owner(owner: object) -> str | None:
    # Owner serialises as {"AddressOwner": "0x…"}, {"ObjectOwner": "0x…"},
    # {"Shared": {…}} or "Immutable"; only an address owner holds spendable coins.
    if isinstance(owner, Mapping) and isinstance(owner.get("AddressOwner"), str):
        try:
            return normalize_address(owner["AddressOwner"])
        except BcsError:
            return None
    return None


def _parse_balance_changes(value: object, method: str) -> tuple[BalanceChange, ...]:
    if not isinstance(value, list):
        raise MalformedResponse(method, "balanceChanges is not a list")
    return tuple(
        BalanceChange(
            address=_parse_owner(_req(item, "owner", method)),
            coin_type=_str_field(_req(item, "coinType", method), "coinType", method),
            amount=_int_field(_req(item, "amount", method), "amount", method, signed=True),
        )
        for item in value
    )


def _parse_gas(value: object, method: str) -> GasCost:
    return GasCost(
        **{
            name: _int_field(_req(value, key, method), key, method)
            for name, key in (
                ("computation_cost", "computationCost"),
                ("computation_cost_burned", "computationCostBurned"),
                ("storage_cost", "storageCost"),
                ("storage_rebate", "storageRebate"),
                ("non_refundable_storage_fee", "nonRefundableStorageFee"),
            )
        }
    )


def parse_transaction_block(obj: object, method: str) -> TransactionBlock:
    """Parse a ``TransactionBlockResponse`` (the shape of execute and getTransactionBlock)."""
    if not isinstance(obj, Mapping):
        raise MalformedResponse(method, "result is not an object")
    digest = _str_field(_req(obj, "digest", method), "digest", method)
    _digest_field(digest, "digest", method)
    sender = None
    if obj.get("transaction") is not None:
        data = _req(_req(obj, "transaction", method), "data", method)
        sender = _address_field(_req(data, "sender", method), "sender", method)
    status = error = None
    gas_used = None
    effects = obj.get("effects")
    if effects is not None:
        status_obj = _req(effects, "status", method)
        status = _str_field(_req(status_obj, "status", method), "status", method)
        if status not in ("success", "failure"):
            raise MalformedResponse(method, f"unknown execution status {status!r}")
        if status == "failure":
            error = str(status_obj.get("error", "unknown error"))
        gas_used = _parse_gas(_req(effects, "gasUsed", method), method)
        effects_digest = effects.get("transactionDigest")
        if effects_digest is not None and effects_digest != digest:
            raise MalformedResponse(method, "effects belong to another transaction")
    balance_changes = None
    if obj.get("balanceChanges") is not None:
        balance_changes = _parse_balance_changes(obj["balanceChanges"], method)
    checkpoint = obj.get("checkpoint")
    timestamp = obj.get("timestampMs")
    raw_transaction = None
    if obj.get("rawTransaction") is not None:
        try:
            raw_transaction = base64.b64decode(
                _str_field(obj["rawTransaction"], "rawTransaction", method), validate=True
            )
        except (binascii.Error, ValueError) as exc:
            raise MalformedResponse(method, "rawTransaction is not base64") from exc
    return TransactionBlock(
        digest=digest,
        sender=sender,
        status=status,
        error=error,
        gas_used=gas_used,
        balance_changes=balance_changes,
        checkpoint=None if checkpoint is None else _int_field(checkpoint, "checkpoint", method),
        timestamp_ms=None if timestamp is None else _int_field(timestamp, "timestampMs", method),
        raw=obj,
        raw_transaction=raw_transaction,
    )


def parse_dry_run(obj: object, method: str) -> TransactionBlock:
    """Parse a ``DryRunTransactionBlockResponse`` (effects, balanceChanges, input)."""
    effects = _req(obj, "effects", method)
    digest = _req(effects, "transactionDigest", method)
    input_data = _req(obj, "input", method)
    return parse_transaction_block(
        {
            "digest": digest,
            "effects": effects,
            "balanceChanges": _req(obj, "balanceChanges", method),
            "transaction": {"data": input_data},
        },
        method,
    )


# --- the client -------------------------------------------------------------------------


class IotaRpcClient(AsyncCloseable):
    """JSON-RPC over HTTP to one IOTA node.

    Pass Home Assistant's shared ``aiohttp.ClientSession`` as ``session``
    inside Home Assistant; without one the client opens (and closes) its own.
    """

    def __init__(
        self,
        url: str,
        *,
        session: aiohttp.ClientSession | None = None,
        request_timeout: float = 10.0,
        execute_timeout: float = 30.0,
    ) -> None:
        self.url = url
        self._session = session
        self._own_session = session is None
        self.request_timeout = request_timeout
        self.execute_timeout = execute_timeout
        self._ids = itertools.count(1)

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def call(
        self, method: str, params: Sequence[object], *, time_limit: float | None = None
    ) -> Any:
        """One JSON-RPC call: its ``result``, or :class:`RpcError` / :class:`NodeUnavailable`."""
        request_id = next(self._ids)
        body = orjson.dumps(
            {"jsonrpc": "2.0", "id": request_id, "method": method, "params": list(params)}
        )
        client_timeout = aiohttp.ClientTimeout(total=time_limit or self.request_timeout)
        try:
            async with self._get_session().post(
                self.url,
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=client_timeout,
            ) as response:
                text = await response.read()
                if response.status >= 400 and not text.startswith(b"{"):
                    raise NodeUnavailable(method, f"HTTP {response.status}")
        except TimeoutError as exc:
            raise NodeUnavailable(method, "timed out") from exc
        except aiohttp.ClientError as exc:
            raise NodeUnavailable(method, f"connection failed: {exc}") from exc
        try:
            reply = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise MalformedResponse(method, "the answer is not JSON") from exc
        if not isinstance(reply, dict) or reply.get("id") != request_id:
            raise MalformedResponse(method, "the answer is not a reply to this request")
        error = reply.get("error")
        if error is not None:
            if not isinstance(error, dict) or not isinstance(error.get("code"), int):
                raise MalformedResponse(method, "malformed JSON-RPC error")
            raise RpcError(method, error["code"], str(error.get("message", "")), error.get("data"))
        if "result" not in reply:
            raise MalformedResponse(method, "neither result nor error")
        return reply["result"]

    # --- methods ---

    async def get_reference_gas_price(self) -> int:
        method = "iotax_getReferenceGasPrice"
        return _int_field(await self.call(method, []), "reference gas price", method)

    async def get_coins(
        self,
        owner: str,
        *,
        coin_type: str = IOTA_COIN_TYPE,
        cursor: str | None = None,
        limit: int = COINS_PAGE_LIMIT,
    ) -> CoinPage:
        method = "iotax_getCoins"
        result = await self.call(method, [owner, coin_type, cursor, limit])
        data = _req(result, "data", method)
        if not isinstance(data, list):
            raise MalformedResponse(method, "data is not a list")
        next_cursor = result.get("nextCursor")
        if next_cursor is not None and not isinstance(next_cursor, str):
            raise MalformedResponse(method, "nextCursor is not a string")
        has_next = _req(result, "hasNextPage", method)
        if not isinstance(has_next, bool):
            raise MalformedResponse(method, "hasNextPage is not a bool")
        return CoinPage(tuple(_parse_coin(item, method) for item in data), next_cursor, has_next)

    async def get_all_coins(self, owner: str, *, coin_type: str = IOTA_COIN_TYPE) -> list[Coin]:
        """Every coin of ``coin_type`` that ``owner`` holds, following the pages."""
        coins: list[Coin] = []
        cursor: str | None = None
        seen: set[str] = set()
        for _ in range(_MAX_COIN_PAGES):
            page = await self.get_coins(owner, coin_type=coin_type, cursor=cursor)
            coins.extend(page.coins)
            if not page.has_next_page or page.next_cursor is None:
                return coins
            if page.next_cursor in seen:
                raise MalformedResponse("iotax_getCoins", "the node repeated a page cursor")
            seen.add(page.next_cursor)
            cursor = page.next_cursor
        raise LedgerError(
            "too_many_coins", f"{owner} holds more than {_MAX_COIN_PAGES * COINS_PAGE_LIMIT} coins"
        )

    async def get_balance(self, owner: str, *, coin_type: str = IOTA_COIN_TYPE) -> int:
        method = "iotax_getBalance"
        result = await self.call(method, [owner, coin_type])
        return _int_field(_req(result, "totalBalance", method), "totalBalance", method)

    async def dry_run(self, tx_bytes_b64: str) -> TransactionBlock:
        method = "iota_dryRunTransactionBlock"
        return parse_dry_run(await self.call(method, [tx_bytes_b64]), method)

    async def execute(self, tx_bytes_b64: str, signatures: Sequence[str]) -> TransactionBlock:
        """Submit signed bytes; waits for effects (and for this node to have executed them)."""
        method = "iota_executeTransactionBlock"
        options = {"showEffects": True, "showBalanceChanges": True, "showInput": True}
        # requestType is deprecated upstream ("will be ignored") but still
        # accepted; WaitForLocalExecution makes this node answer reads about
        # the transaction right after, which the checkpoint wait relies on.
        result = await self.call(
            method,
            [tx_bytes_b64, list(signatures), options, "WaitForLocalExecution"],
            time_limit=self.execute_timeout,
        )
        return parse_transaction_block(result, method)

    async def get_transaction_block(self, digest: str) -> TransactionBlock | None:
        """The transaction with effects, balance changes and input; ``None`` if unknown.

        The raw input (the signed bytes) comes along so that a caller can read
        exactly what was signed, checked against the digest, rather than the
        node's JSON rendering of it.
        """
        method = "iota_getTransactionBlock"
        options = {
            "showInput": True,
            "showRawInput": True,
            "showEffects": True,
            "showBalanceChanges": True,
        }
        try:
            result = await self.call(method, [digest, options])
        except RpcError as exc:
            if exc.rpc_message.startswith(_TX_NOT_FOUND_PREFIX):
                return None
            raise
        return parse_transaction_block(result, method)

    async def multi_get_objects(self, object_ids: Sequence[str]) -> list[ObjectState | None]:
        """Current version of each object (``deleted`` set when it is gone); ``None`` if unknown."""
        method = "iota_multiGetObjects"
        result = await self.call(method, [list(object_ids), {"showPreviousTransaction": True}])
        if not isinstance(result, list) or len(result) != len(object_ids):
            raise MalformedResponse(method, "expected one entry per object id")
        states: list[ObjectState | None] = []
        for item in result:
            if not isinstance(item, Mapping):
                raise MalformedResponse(method, "an entry is not an object")
            data = item.get("data")
            if data is None:
                states.append(self._deleted_state(item.get("error"), method))
                continue
            previous = data.get("previousTransaction")
            states.append(
                ObjectState(
                    object_id=_address_field(_req(data, "objectId", method), "objectId", method),
                    version=_int_field(_req(data, "version", method), "version", method),
                    digest=_digest_field(_req(data, "digest", method), "digest", method),
                    previous_transaction=previous if isinstance(previous, str) else None,
                )
            )
        return states

    @staticmethod
    def _deleted_state(error: object, method: str) -> ObjectState | None:
        # ObjectResponseError {"code": "deleted", "object_id", "version", "digest"};
        # "notExists" (and anything else) says nothing about versions.
        if not isinstance(error, Mapping) or error.get("code") != "deleted":
            return None
        return ObjectState(
            object_id=_address_field(_req(error, "object_id", method), "object_id", method),
            version=_int_field(_req(error, "version", method), "version", method),
            digest=_digest_field(_req(error, "digest", method), "digest", method),
            previous_transaction=None,
            deleted=True,
        )

    async def wait_for_checkpoint(
        self, digest: str, *, max_wait: float, poll_interval: float = 0.25
    ) -> TransactionBlock | None:
        """Poll until the transaction is in a checkpoint; ``None`` if that takes over ``max_wait``.

        Unknown-transaction answers and unavailable-node errors count as
        "not yet": right after execution another node behind a load
        balancer may not have seen the transaction.
        """
        deadline = time.monotonic() + max_wait
        delay = poll_interval
        while True:
            try:
                block = await self.get_transaction_block(digest)
            except NodeUnavailable:
                block = None
            if block is not None and block.checkpoint is not None:
                return block
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, 2.0)
