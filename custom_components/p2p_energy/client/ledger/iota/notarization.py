"""Anchoring bytes on IOTA Rebased with IOTA Notarization (dynamic notarizations).

The grid keeps one *dynamic* ``Notarization<vector<u8>>`` object, owned by
its key: the first anchor creates it, every later one replaces its state.
The state (``data``: the anchored bytes, ``metadata``: a readable label) is
public on chain, so anyone can read what the grid anchored, and rewriting the
grid's history would need rewriting IOTA.

Published material, from ``iotaledger/notarization`` (commit 335ac0d7,
``notarization-move/Move.lock`` and ``Move.history.json``):

* package ``IotaNotarization`` on mainnet ``0x909ce9dc…4cf3``, testnet
  ``0x00412bd4…d25f``, devnet ``0x72c8433b…fdca`` (:data:`PACKAGES`);
* ``notarization::new_state_from_bytes(data: vector<u8>, metadata:
  Option<String>): State<vector<u8>>``;
* ``timelock::none(): TimeLock``;
* ``dynamic_notarization::create<D>(state: State<D>, immutable_description:
  Option<String>, updatable_metadata: Option<String>, transfer_lock:
  TimeLock, clock: &Clock, ctx: &mut TxContext)`` — transfers the new object
  to the sender and emits ``DynamicNotarizationCreated { notarization_id }``;
* ``notarization::update_state<D>(self: &mut Notarization<D>, new_state:
  State<D>, clock: &Clock)`` — bumps ``state_version_count`` and emits
  ``NotarizationUpdated { notarization_id, state_version_count,
  updated_state }``;
* the clock is the shared object ``0x6`` (initial shared version 1), passed
  immutably.

The programmable transactions have the layout the official notarization SDK
builds (``notarization-rs`` ``core/operations.rs`` ``new_dynamic`` and
``update_state``, with iota-types' ``ProgrammableTransactionBuilder``, which
reuses an input for equal pure values); the test vectors were produced with
``@iota/iota-sdk`` 1.15.1 (``tests/audit/vectors``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from ...crypto import KeyPair, b64encode
from ..base import InsufficientFunds, LedgerError
from .bcs import (
    Argument,
    BcsError,
    CallArg,
    Command,
    GasData,
    ImmOrOwnedObject,
    Input,
    MoveCall,
    ObjectRef,
    ProgrammableTransaction,
    Pure,
    Result,
    SharedObject,
    TransactionData,
    decode_transaction_data,
    encode_transaction_data,
    normalize_address,
    parse_type_tag,
    pure_as_option_string,
    pure_as_vector_u8,
    pure_option_string,
    pure_vector_u8,
)
from .ledger import (
    BASE_TX_COST_FIXED_UNITS,
    DRY_RUN_BUDGET_UNITS,
    MAX_TX_GAS,
    IotaNetwork,
    gas_budget_from_dry_run,
    select_coins,
)
from .rpc import (
    IotaRpcClient,
    MalformedResponse,
    NodeUnavailable,
    RpcError,
    TransactionBlock,
    is_iota_coin_type,
    parse_transaction_block,
)
from .transactions import SignedTransaction, signer_of, transaction_digest

PACKAGES: Final[Mapping[IotaNetwork, str]] = {
    IotaNetwork.MAINNET: "0x909ce9dcd9a5e97b7b8884fac8e018fad9dece348bf73837379b8694ff684cf3",
    IotaNetwork.TESTNET: "0x00412bd469b7f980227c6c574090348239852e43aa07818b315854fdd8a2d25f",
    IotaNetwork.DEVNET: "0x72c8433b88e6bdee0eb02a257fdebd0ec2b6c990043f35b155cb4c5cf727fdca",
}
CLOCK: Final = SharedObject("0x6", 1, False)
BYTES: Final = parse_type_tag("vector<u8>")


class NotarizationError(LedgerError):
    """The node refused, or the chain does not show what an anchor claims."""


# --- building ----------------------------------------------------------------------


class _Builder:
    """Inputs and commands, with equal pure values and objects sharing one input."""

    def __init__(self) -> None:
        self.inputs: list[CallArg] = []
        self.commands: list[Command] = []
        self._pure: dict[bytes, int] = {}
        self._objects: dict[str, int] = {}

    def pure(self, arg: Pure) -> Argument:
        index = self._pure.get(arg.value)
        if index is None:
            index = self._pure[arg.value] = len(self.inputs)
            self.inputs.append(arg)
        return Input(index)

    def obj(self, arg: SharedObject | ImmOrOwnedObject) -> Argument:
        object_id = arg.object_id if isinstance(arg, SharedObject) else arg.ref.object_id
        index = self._objects.get(object_id)
        if index is None:
            index = self._objects[object_id] = len(self.inputs)
            self.inputs.append(arg)
        return Input(index)

    def call(
        self,
        package: str,
        module: str,
        function: str,
        arguments: Sequence[Argument] = (),
        *,
        typed: bool = False,
    ) -> Argument:
        self.commands.append(
            MoveCall(package, module, function, (BYTES,) if typed else (), tuple(arguments))
        )
        return Result(len(self.commands) - 1)

    def state(self, package: str, data: bytes, metadata: str | None) -> Argument:
        args = (self.pure(pure_vector_u8(data)), self.pure(pure_option_string(metadata)))
        return self.call(package, "notarization", "new_state_from_bytes", args)

    def finish(self) -> ProgrammableTransaction:
        return ProgrammableTransaction(tuple(self.inputs), tuple(self.commands))


def create_programme(
    package: str, data: bytes, metadata: str | None, description: str | None
) -> ProgrammableTransaction:
    """Create a dynamic notarization of ``data`` (no transfer lock) owned by the sender."""
    b = _Builder()
    clock = b.obj(CLOCK)
    state = b.state(package, data, metadata)
    immutable_description = b.pure(pure_option_string(description))
    updatable_metadata = b.pure(pure_option_string(None))
    lock = b.call(package, "timelock", "none")
    b.call(
        package,
        "dynamic_notarization",
        "create",
        (state, immutable_description, updatable_metadata, lock, clock),
        typed=True,
    )
    return b.finish()


def update_programme(
    package: str, notarization: ObjectRef, data: bytes, metadata: str | None
) -> ProgrammableTransaction:
    """Replace the state of the sender's notarization object with ``data``."""
    b = _Builder()
    target = b.obj(ImmOrOwnedObject(notarization))
    state = b.state(package, data, metadata)
    clock = b.obj(CLOCK)
    b.call(package, "notarization", "update_state", (target, state, clock), typed=True)
    return b.finish()


def with_gas(
    programme: ProgrammableTransaction,
    *,
    sender: str,
    gas_payment: Sequence[ObjectRef],
    gas_price: int,
    gas_budget: int,
) -> TransactionData:
    return TransactionData(
        programme, sender, GasData(tuple(gas_payment), sender, gas_price, gas_budget)
    )


@dataclass(frozen=True, slots=True)
class NotarizationCall:
    """What a notarization transaction does, read back from its bytes."""

    kind: str  # "create" or "update"
    package: str
    data: bytes
    metadata: str | None
    object_id: str | None  # the notarization updated


def read_programme(tx: TransactionData) -> NotarizationCall:
    """Read a transaction built by :func:`create_programme` / :func:`update_programme`.

    Raises :class:`BcsError` for any other shape.
    """
    inputs, commands = tx.kind.inputs, tx.kind.commands
    calls = [c for c in commands if isinstance(c, MoveCall)]
    if len(calls) != len(commands) or not 2 <= len(calls) <= 3:
        raise BcsError("not a notarization transaction")
    new_state = calls[0]
    package = new_state.package
    if (new_state.module, new_state.function) != ("notarization", "new_state_from_bytes"):
        raise BcsError("not a notarization transaction")

    def pure(arg: Argument) -> Pure:
        if isinstance(arg, Input) and arg.index < len(inputs):
            value = inputs[arg.index]
            if isinstance(value, Pure):
                return value
        raise BcsError("not a notarization transaction")

    data = pure_as_vector_u8(pure(new_state.arguments[0]))
    metadata = pure_as_option_string(pure(new_state.arguments[1]))
    last = calls[-1]
    if any(c.package != package for c in calls) or last.type_arguments != (BYTES,):
        raise BcsError("not a notarization transaction")
    if (last.module, last.function) == ("dynamic_notarization", "create") and len(calls) == 3:
        return NotarizationCall("create", package, data, metadata, None)
    if (last.module, last.function) == ("notarization", "update_state") and len(calls) == 2:
        target = last.arguments[0]
        if isinstance(target, Input) and isinstance(inputs[target.index], ImmOrOwnedObject):
            owned = inputs[target.index]
            assert isinstance(owned, ImmOrOwnedObject)
            return NotarizationCall("update", package, data, metadata, owned.ref.object_id)
    raise BcsError("not a notarization transaction")


# --- reading the chain ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NotarizedState:
    """A notarization object as the node shows it (``iota_getObject`` with content)."""

    object_id: str
    version: int
    digest: str
    owner: str | None
    type: str
    data: bytes
    metadata: str | None
    state_version: int  # state_version_count

    @property
    def ref(self) -> ObjectRef:
        from .bcs import digest_from_base58  # noqa: PLC0415

        return ObjectRef(self.object_id, self.version, digest_from_base58(self.digest))


def _bytes_field(value: object, what: str) -> bytes:
    # vector<u8> is shown as a list of numbers; accept base64 text too.
    if isinstance(value, list) and all(
        isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 256 for x in value
    ):
        return bytes(value)
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            pass
    raise MalformedResponse(what, "not a vector<u8>")


def _int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise MalformedResponse(what, "not an integer")
    try:
        return int(value)
    except ValueError as exc:
        raise MalformedResponse(what, "not an integer") from exc


def parse_notarization(data: Mapping[str, Any], method: str) -> NotarizedState:
    try:
        content = data["content"]
        fields = content["fields"]
        state = fields["state"]
        state_fields = state.get("fields", state)
        owner = data.get("owner")
        address = owner.get("AddressOwner") if isinstance(owner, Mapping) else None
        object_type = str(data.get("type") or content.get("type"))
        return NotarizedState(
            object_id=normalize_address(data["objectId"]),
            version=_int(data["version"], method),
            digest=str(data["digest"]),
            owner=None if address is None else normalize_address(address),
            type=object_type,
            data=_bytes_field(state_fields["data"], method),
            metadata=state_fields.get("metadata"),
            state_version=_int(fields["state_version_count"], method),
        )
    except (KeyError, TypeError, AttributeError, BcsError) as exc:
        raise MalformedResponse(method, f"not a notarization object: {exc!r}") from exc


async def read_state(rpc: IotaRpcClient, object_id: str) -> NotarizedState:
    """The current state of a notarization object."""
    method = "iota_getObject"
    result = await rpc.call(
        method, [object_id, {"showContent": True, "showType": True, "showOwner": True}]
    )
    data = result.get("data") if isinstance(result, Mapping) else None
    if not isinstance(data, Mapping):
        raise NotarizationError("not_found", f"the node does not show object {object_id}")
    return parse_notarization(data, method)


async def read_past_state(rpc: IotaRpcClient, object_id: str, version: int) -> NotarizedState:
    """A notarization object as it was at ``version`` (``iota_tryGetPastObject``)."""
    method = "iota_tryGetPastObject"
    result = await rpc.call(
        method,
        [object_id, version, {"showContent": True, "showType": True, "showOwner": True}],
    )
    if not isinstance(result, Mapping) or result.get("status") != "VersionFound":
        status = result.get("status") if isinstance(result, Mapping) else None
        raise NotarizationError(
            "not_found", f"the node does not show {object_id} at version {version} ({status})"
        )
    return parse_notarization(result["details"], method)


async def read_anchored_payload(
    rpc: IotaRpcClient, digest: str, object_id: str, object_version: int
) -> bytes:
    """The bytes an anchoring transaction left in the notarization object.

    Checks that the transaction succeeded and wrote ``object_id`` at
    ``object_version``, then reads that version's state (an update's event
    carries the state too; both must agree).
    """
    block = await rpc.call(
        "iota_getTransactionBlock",
        [digest, {"showEffects": True, "showEvents": True}],
    )
    parsed = parse_transaction_block(block, "iota_getTransactionBlock")
    if not parsed.succeeded:
        raise NotarizationError("tx_failed", f"{digest} did not succeed")
    effects = block.get("effects", {})
    written = [
        item.get("reference", {})
        for key in ("created", "mutated")
        for item in effects.get(key, ())
        if isinstance(item, Mapping)
    ]
    if not any(
        normalize_address(str(ref.get("objectId", "0x0"))) == normalize_address(object_id)
        and _int(ref.get("version"), "version") == object_version
        for ref in written
    ):
        raise NotarizationError(
            "wrong_object", f"{digest} did not write {object_id} at version {object_version}"
        )
    state = await read_past_state(rpc, object_id, object_version)
    for event in block.get("events", ()):
        if str(event.get("type", "")).split("<")[0].endswith("::notarization::NotarizationUpdated"):
            updated = event.get("parsedJson", {}).get("updated_state", {})
            if _bytes_field(updated.get("data"), "event") != state.data:
                raise NotarizationError("mismatch", f"{digest}'s event and object disagree")
    return state.data


# --- writing -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Anchored:
    """An anchoring transaction on chain."""

    digest: str
    object_id: str
    object_version: int
    state_version: int
    checkpoint: int | None


def signed_to_json(signed: SignedTransaction) -> str:
    return orjson.dumps(signed.to_json()).decode()


def signed_from_json(text: str) -> SignedTransaction:
    """Restore stored signed notarization bytes, re-checking digest and signature."""
    obj = orjson.loads(text)
    tx_bytes = base64.b64decode(obj["tx_bytes"], validate=True)
    tx = decode_transaction_data(tx_bytes, move_calls=True)
    if transaction_digest(tx_bytes) != obj["digest"] or signer_of(tx_bytes, obj["signature"]) != (
        tx.sender
    ):
        raise NotarizationError("corrupt", "stored anchoring transaction does not check out")
    read_programme(tx)
    return SignedTransaction(tx_bytes, obj["signature"], obj["digest"])


class Notarizer:
    """Creates and updates the grid's dynamic notarization, paying gas from ``keys``.

    Retries never write twice: after an unknown outcome the same signed bytes
    are looked up and re-submitted (one digest, at most one execution); new
    bytes are built only by a new :meth:`prepare`.
    """

    def __init__(
        self,
        rpc: IotaRpcClient,
        keys: KeyPair,
        package: str,
        *,
        gas_margin_percent: int = 20,
        submit_deadline: float = 120.0,
        checkpoint_timeout: float = 60.0,
        poll_interval: float = 0.25,
    ) -> None:
        self.rpc = rpc
        self.keys = keys
        self.package = normalize_address(package)
        self.gas_margin_percent = gas_margin_percent
        self.submit_deadline = submit_deadline
        self.checkpoint_timeout = checkpoint_timeout
        self.poll_interval = poll_interval

    async def prepare(
        self,
        data: bytes,
        metadata: str | None,
        *,
        object_id: str | None,
        description: str | None = None,
    ) -> SignedTransaction:
        """Sign a create (``object_id`` None) or an update, with gas from a dry run."""
        if object_id is None:
            programme = create_programme(self.package, data, metadata, description)
        else:
            current = await read_state(self.rpc, object_id)
            if current.owner != self.keys.address:
                raise NotarizationError(
                    "not_owner", f"{object_id} is owned by {current.owner}, not the grid's key"
                )
            programme = update_programme(self.package, current.ref, data, metadata)
        price = await self.rpc.get_reference_gas_price()
        coins = [
            c
            for c in await self.rpc.get_all_coins(self.keys.address)
            if is_iota_coin_type(c.coin_type)
        ]
        total = sum(c.balance for c in coins)
        minimum = BASE_TX_COST_FIXED_UNITS * price
        if total < minimum:
            raise InsufficientFunds(f"{self.keys.address} holds {total} nanos; gas needs more")
        dry_budget = min(total, DRY_RUN_BUDGET_UNITS * price, MAX_TX_GAS)
        payment, _ = select_coins(coins, amount=0, budget=dry_budget)
        draft = with_gas(
            programme,
            sender=self.keys.address,
            gas_payment=payment,
            gas_price=price,
            gas_budget=dry_budget,
        )
        dry = await self.rpc.dry_run(b64encode(encode_transaction_data(draft)))
        if not dry.succeeded or dry.gas_used is None:
            raise NotarizationError("dry_run_failed", f"the dry run failed: {dry.error}")
        budget = gas_budget_from_dry_run(
            dry.gas_used, price=price, margin_percent=self.gas_margin_percent
        )
        payment, _ = select_coins(coins, amount=0, budget=budget)
        tx = with_gas(
            programme,
            sender=self.keys.address,
            gas_payment=payment,
            gas_price=price,
            gas_budget=budget,
        )
        return SignedTransaction.sign(self.keys, tx)

    async def submit(self, signed: SignedTransaction) -> Anchored:
        """Execute until the outcome is known, check the effects, wait for the checkpoint."""
        call = read_programme(decode_transaction_data(signed.tx_bytes, move_calls=True))
        raw = await self._execute_until_known(signed)
        block = parse_transaction_block(raw, "iota_executeTransactionBlock")
        if block.digest != signed.digest:
            raise NotarizationError("mismatch", f"the node answered for {block.digest}")
        if not block.succeeded:
            raise NotarizationError("tx_failed", f"{signed.digest} failed: {block.error}")
        anchored = self._anchored(raw, call, block)
        if block.checkpoint is None:
            final = await self.rpc.wait_for_checkpoint(
                signed.digest, max_wait=self.checkpoint_timeout, poll_interval=self.poll_interval
            )
            if final is None:
                raise NotarizationError(
                    "not_checkpointed", f"{signed.digest} is not in a checkpoint yet"
                )
            anchored = Anchored(
                anchored.digest,
                anchored.object_id,
                anchored.object_version,
                anchored.state_version,
                final.checkpoint,
            )
        return anchored

    def _anchored(
        self, raw: Mapping[str, Any], call: NotarizationCall, block: TransactionBlock
    ) -> Anchored:
        effects = raw.get("effects") or {}
        if call.kind == "create":
            refs = [c.get("reference", {}) for c in effects.get("created", ())]
            if len(refs) != 1:
                raise NotarizationError("mismatch", "a create must create exactly one object")
            ref = refs[0]
        else:
            wanted = call.object_id
            ref = next(
                (
                    m.get("reference", {})
                    for m in effects.get("mutated", ())
                    if normalize_address(str(m.get("reference", {}).get("objectId", "0x0")))
                    == wanted
                ),
                {},
            )
            if not ref:
                raise NotarizationError("mismatch", f"{block.digest} did not update {wanted}")
        state_version = 0
        for event in raw.get("events") or ():
            parsed = event.get("parsedJson", {}) if isinstance(event, Mapping) else {}
            if "state_version_count" in parsed:
                state_version = _int(parsed["state_version_count"], "event")
        return Anchored(
            block.digest,
            normalize_address(str(ref.get("objectId"))),
            _int(ref.get("version"), "version"),
            state_version,
            block.checkpoint,
        )

    async def _execute(self, signed: SignedTransaction) -> Any:
        options = {"showEffects": True, "showEvents": True, "showInput": True}
        return await self.rpc.call(
            "iota_executeTransactionBlock",
            [signed.tx_bytes_b64, [signed.signature], options, "WaitForLocalExecution"],
            time_limit=self.rpc.execute_timeout,
        )

    async def _lookup(self, digest: str) -> Any | None:
        try:
            return await self.rpc.call(
                "iota_getTransactionBlock",
                [digest, {"showEffects": True, "showEvents": True, "showInput": True}],
            )
        except (NodeUnavailable, RpcError):
            return None

    async def _execute_until_known(self, signed: SignedTransaction) -> Any:
        deadline = time.monotonic() + self.submit_deadline
        delay = self.poll_interval
        while True:
            try:
                return await self._execute(signed)
            except RpcError as exc:
                if not exc.transient:
                    known = await self._lookup(signed.digest)
                    if known is not None:
                        return known
                    raise NotarizationError(
                        "rejected", f"{signed.digest} refused: {exc.rpc_message}"
                    ) from exc
            except NodeUnavailable:
                pass
            known = await self._lookup(signed.digest)
            if known is not None:
                return known
            if time.monotonic() >= deadline:
                raise NotarizationError(
                    "outcome_unknown", f"no answer about {signed.digest} in time"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


__all__ = [
    "CLOCK",
    "PACKAGES",
    "Anchored",
    "NotarizationCall",
    "NotarizationError",
    "NotarizedState",
    "Notarizer",
    "create_programme",
    "read_anchored_payload",
    "read_past_state",
    "read_programme",
    "read_state",
    "signed_from_json",
    "signed_to_json",
    "update_programme",
    "with_gas",
]
