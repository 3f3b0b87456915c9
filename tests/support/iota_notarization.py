"""The stand-in node's IOTA Notarization: the Move calls the audit trail makes.

``StandInIotaNode`` hands transactions with ``MoveCall`` commands here. Only
the published ``IotaNotarization`` package's dynamic notarizations are
simulated, following its Move sources (``iotaledger/notarization``,
``notarization-move/sources``): ``notarization::new_state_from_bytes``,
``timelock::none``, ``dynamic_notarization::create<vector<u8>>`` (the new
``Notarization`` object goes to the sender, event
``DynamicNotarizationCreated``) and ``notarization::update_state<vector<u8>>``
(a mutable reference to an owned object; ``state_version_count`` + 1, event
``NotarizationUpdated``). The rules a real node enforces are enforced:

* inputs: the clock ``0x6`` only as an immutable shared object at initial
  version 1; an owned notarization at its current version and digest and
  owned by the sender; pure arguments of exactly the parameter's BCS type;
* arguments of the right kind in the right place (a ``State`` result, a
  ``TimeLock`` result, the clock), type argument ``vector<u8>`` matching the
  object's; a ``TimeLock`` (no ``drop``) left unused fails the transaction;
* gas as for coin transfers (price, budget, payment coins), charged for
  computation and for storing the objects written (a notarization's storage
  grows with its data), minus the rebate of what it replaces;
* every written object gets the Lamport version max(input versions) + 1;
  past versions stay readable (``iota_tryGetPastObject``).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import struct
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import base58

from p2p_energy_client.ledger.iota.bcs import (
    BcsError,
    GasCoin,
    ImmOrOwnedObject,
    Input,
    MoveCall,
    NestedResult,
    Pure,
    Result,
    SharedObject,
    TransactionData,
    format_type_tag,
    pure_as_option_string,
    pure_as_vector_u8,
)
from p2p_energy_client.ledger.iota.notarization import PACKAGES

if TYPE_CHECKING:
    from .iota_node import CoinObject, StandInIotaNode

COMPUTATION_UNITS_PER_CALL = 1_000
STORAGE_NOTARIZATION_BASE = 2_500_000
STORAGE_PER_BYTE = 7_600
CLOCK_ID = "0x" + "0" * 63 + "6"
TEST_PACKAGE = "0x" + "5a" * 32


class MoveFailure(Exception):
    """The transaction executes and fails (only gas is charged)."""


class MoveInputError(Exception):
    """The node refuses the transaction before executing it."""


def _blake2b(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=32).digest()


def _b58(raw: bytes) -> str:
    return base58.b58encode(raw).decode()


@dataclass
class NotarizationObject:
    object_id: str
    version: int
    digest: bytes
    owner: str
    package: str
    data: bytes
    metadata: str | None
    description: str | None
    updatable_metadata: str | None
    created_at: int
    last_change: int
    state_version: int
    previous_transaction: str
    storage_rebate: int
    history: dict[int, NotarizationObject] = field(default_factory=dict, repr=False)

    @property
    def type(self) -> str:
        return f"{self.package}::notarization::Notarization<vector<u8>>"

    def snapshot(self) -> NotarizationObject:
        copied = copy.copy(self)
        copied.history = {}
        return copied

    def object_json(self, options: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "objectId": self.object_id,
            "version": str(self.version),
            "digest": _b58(self.digest),
        }
        if options.get("showType"):
            out["type"] = self.type
        if options.get("showOwner"):
            out["owner"] = {"AddressOwner": self.owner}
        if options.get("showPreviousTransaction"):
            out["previousTransaction"] = self.previous_transaction
        if options.get("showContent"):
            out["content"] = {
                "dataType": "moveObject",
                "type": self.type,
                "hasPublicTransfer": False,
                "fields": {
                    "id": {"id": self.object_id},
                    "state": {
                        "type": f"{self.package}::notarization::State<vector<u8>>",
                        "fields": {"data": list(self.data), "metadata": self.metadata},
                    },
                    "immutable_metadata": {
                        "type": f"{self.package}::notarization::ImmutableMetadata",
                        "fields": {
                            "created_at": str(self.created_at),
                            "description": self.description,
                            "locking": None,
                        },
                    },
                    "updatable_metadata": self.updatable_metadata,
                    "last_state_change_at": str(self.last_change),
                    "state_version_count": str(self.state_version),
                    "method": {
                        "type": f"{self.package}::method::NotarizationMethod",
                        "variant": "Dynamic",
                        "fields": {},
                    },
                },
            }
        return out


@dataclass
class MoveOutcome:
    effects: dict[str, Any]
    events: list[dict[str, Any]]
    balance_changes: list[dict[str, Any]]
    coins: dict[str, CoinObject]
    deleted_coins: dict[str, tuple[int, bytes]]
    notarizations: dict[str, NotarizationObject]


def has_move_calls(data: TransactionData) -> bool:
    return any(isinstance(c, MoveCall) for c in data.kind.commands)


class MoveRuntime:
    """Notarization objects and the execution of notarization transactions."""

    def __init__(self, node: StandInIotaNode, packages: set[str] | None = None) -> None:
        self.node = node
        self.packages = packages or {*PACKAGES.values(), TEST_PACKAGE}
        self.objects: dict[str, NotarizationObject] = {}
        self._ids = itertools.count(1)

    # --- reads ---

    def get_object(self, object_id: str, options: dict[str, Any]) -> dict[str, Any] | None:
        found = self.objects.get(object_id)
        return None if found is None else {"data": found.object_json(options)}

    def past_object(self, object_id: str, version: int, options: dict[str, Any]) -> dict[str, Any]:
        found = self.objects.get(object_id)
        if found is None:
            return {"status": "ObjectNotExists", "details": object_id}
        at = found if found.version == version else found.history.get(version)
        if at is None:
            return {"status": "VersionNotFound", "details": [object_id, str(version)]}
        return {"status": "VersionFound", "details": at.object_json(options)}

    # --- checks before execution ---

    def check_inputs(self, data: TransactionData) -> None:
        node = self.node
        owned: list[str] = []
        for arg in data.kind.inputs:
            match arg:
                case SharedObject(object_id, version, mutable):
                    if object_id != CLOCK_ID:
                        raise MoveInputError(f"shared object {object_id} does not exist here")
                    if version != 1:
                        raise MoveInputError("the clock's initial shared version is 1")
                    if mutable:
                        raise MoveInputError("the clock can only be read (immutable)")
                case ImmOrOwnedObject(ref):
                    found = self.objects.get(ref.object_id)
                    if found is None:
                        raise MoveInputError(
                            f"Could not find the referenced object {ref.object_id}"
                        )
                    if found.version != ref.version:
                        raise MoveInputError(
                            f"Object ({ref.object_id}, SequenceNumber({ref.version}), "
                            f"o#{ref.digest_base58}) is not available for consumption, its "
                            f"current version: SequenceNumber({found.version})"
                        )
                    if found.digest != ref.digest:
                        raise MoveInputError(f"Invalid Object digest for object {ref.object_id}")
                    if found.owner != data.sender:
                        raise MoveInputError(f"Object {ref.object_id} is not owned by the sender")
                    owned.append(ref.object_id)
                case Pure():
                    pass
                case _:
                    raise MoveInputError("this stand-in does not take that kind of input")
        if len(set(owned)) != len(owned):
            raise MoveInputError("The transaction inputs contain duplicated ObjectRef's")
        for command in data.kind.commands:
            if not isinstance(command, MoveCall):
                raise MoveInputError("this stand-in runs Move calls or coin commands, not both")
            if command.package not in self.packages:
                raise MoveInputError(f"Package object does not exist with ID {command.package}")
        node.check_gas(data)
        node.check_gas_coins(data)

    # --- execution (on copies) ---

    def run(self, data: TransactionData, digest: str) -> MoveOutcome:
        node = self.node
        gas = data.gas_data
        price = gas.price
        digest_raw = base58.b58decode(digest)
        payment = [copy.copy(node.objects[ref.object_id]) for ref in gas.payment]
        gas_coin = payment[0]
        smashed = sum(c.balance for c in payment)
        inputs = {
            i: self.objects[arg.ref.object_id].snapshot()
            for i, arg in enumerate(data.kind.inputs)
            if isinstance(arg, ImmOrOwnedObject)
        }
        versions = [c.version for c in payment] + [n.version for n in inputs.values()]
        lamport = max(versions) + 1
        now_ms = int(time.time() * 1000)
        created: dict[str, NotarizationObject] = {}
        mutated: dict[str, NotarizationObject] = {}
        events: list[dict[str, Any]] = []
        status: dict[str, Any] = {"status": "success"}
        try:
            self._commands(data, digest_raw, inputs, created, mutated, events, lamport, now_ms)
        except MoveFailure as failure:
            status = {"status": "failure", "error": str(failure)}
            created.clear()
            mutated.clear()
            events.clear()
        rebate_before = sum(c.storage_rebate for c in payment) + sum(
            self.objects[n.object_id].storage_rebate for n in mutated.values()
        )
        written_notarizations = {**mutated, **created}
        storage = node.storage_per_coin + sum(
            STORAGE_NOTARIZATION_BASE + STORAGE_PER_BYTE * len(n.data)
            for n in written_notarizations.values()
        )
        computation = COMPUTATION_UNITS_PER_CALL * price * max(1, len(data.kind.commands))
        if computation + storage > gas.budget:
            status = {"status": "failure", "error": "InsufficientGas"}
            written_notarizations, created, mutated, events = {}, {}, {}, []
            computation, storage, rebate_before = gas.budget, 0, 0
            net = gas.budget
        else:
            net = computation + storage - rebate_before
        gas_coin.balance = smashed - net
        deleted_coins = {c.object_id: (lamport, node.deleted_digest) for c in payment[1:]}
        gas_coin.version = lamport
        gas_coin.digest = _blake2b(
            b"object"
            + bytes.fromhex(gas_coin.object_id[2:])
            + struct.pack("<Q", lamport)
            + digest_raw
        )
        gas_coin.previous_transaction = digest
        gas_coin.storage_rebate = node.storage_per_coin
        for n in written_notarizations.values():
            n.version = lamport
            n.digest = _blake2b(
                b"object" + bytes.fromhex(n.object_id[2:]) + struct.pack("<Q", lamport) + digest_raw
            )
            n.previous_transaction = digest
            n.storage_rebate = STORAGE_NOTARIZATION_BASE + STORAGE_PER_BYTE * len(n.data)

        def owned(ref_object_id: str, version: int, digest_bytes: bytes) -> dict[str, Any]:
            return {
                "owner": {"AddressOwner": data.sender},
                "reference": {
                    "objectId": ref_object_id,
                    "version": version,
                    "digest": _b58(digest_bytes),
                },
            }

        effects = {
            "messageVersion": "v1",
            "status": status,
            "executedEpoch": str(node.epoch),
            "gasUsed": {
                "computationCost": str(computation),
                "computationCostBurned": str(computation),
                "storageCost": str(storage),
                "storageRebate": str(rebate_before),
                "nonRefundableStorageFee": "0",
            },
            "transactionDigest": digest,
            "created": [owned(n.object_id, n.version, n.digest) for n in created.values()],
            "mutated": [owned(gas_coin.object_id, gas_coin.version, gas_coin.digest)]
            + [owned(n.object_id, n.version, n.digest) for n in mutated.values()],
            "deleted": [
                {"objectId": oid, "version": v, "digest": _b58(d)}
                for oid, (v, d) in deleted_coins.items()
            ],
            "gasObject": owned(gas_coin.object_id, gas_coin.version, gas_coin.digest),
            "sharedObjects": [
                {"objectId": CLOCK_ID, "version": 1, "digest": _b58(bytes(32))}
                for arg in data.kind.inputs
                if isinstance(arg, SharedObject)
            ],
        }
        balance_changes = []
        if net:
            balance_changes.append(
                {
                    "owner": {"AddressOwner": data.sender},
                    "coinType": "0x2::iota::IOTA",
                    "amount": str(-net),
                }
            )
        for event in events:
            event["id"] = {"txDigest": digest, "eventSeq": str(events.index(event))}
        return MoveOutcome(
            effects,
            events,
            balance_changes,
            {gas_coin.object_id: gas_coin},
            deleted_coins,
            written_notarizations,
        )

    def commit(self, outcome: MoveOutcome) -> None:
        node = self.node
        for object_id, gone in outcome.deleted_coins.items():
            node.deleted[object_id] = gone
            node.objects.pop(object_id, None)
        node.objects.update(outcome.coins)
        for object_id, new in outcome.notarizations.items():
            old = self.objects.get(object_id)
            if old is not None:
                new.history = old.history
                new.history[old.version] = old.snapshot()
            self.objects[object_id] = new

    def _commands(
        self,
        data: TransactionData,
        digest_raw: bytes,
        inputs: dict[int, NotarizationObject],
        created: dict[str, NotarizationObject],
        mutated: dict[str, NotarizationObject],
        events: list[dict[str, Any]],
        lamport: int,
        now_ms: int,
    ) -> None:
        results: dict[int, tuple[str, Any]] = {}
        used: set[int] = set()
        args = data.kind.inputs

        def pure(arg: object, k: int) -> Pure:
            if (
                isinstance(arg, Input)
                and arg.index < len(args)
                and isinstance(args[arg.index], Pure)
            ):
                value = args[arg.index]
                assert isinstance(value, Pure)
                return value
            raise MoveFailure(f"InvalidArgument in command {k}")

        def result(arg: object, kind: str, k: int) -> Any:
            if isinstance(arg, NestedResult) and arg.result == 0:
                arg = Result(arg.index)
            if isinstance(arg, Result) and arg.index in results and results[arg.index][0] == kind:
                if arg.index in used and kind == "timelock":
                    raise MoveFailure(f"InvalidValueUsage in command {k}")
                used.add(arg.index)
                return results[arg.index][1]
            raise MoveFailure(f"TypeMismatch in command {k}")

        def clock(arg: object, k: int) -> None:
            if not (
                isinstance(arg, Input)
                and arg.index < len(args)
                and isinstance(args[arg.index], SharedObject)
            ):
                raise MoveFailure(f"TypeMismatch in command {k} (expected &Clock)")

        for k, command in enumerate(data.kind.commands):
            assert isinstance(command, MoveCall)
            name = (command.module, command.function)
            types = [format_type_tag(t) for t in command.type_arguments]
            a = command.arguments
            try:
                if name == ("notarization", "new_state_from_bytes"):
                    if types or len(a) != 2:
                        raise MoveFailure(f"ArityMismatch in command {k}")
                    results[k] = (
                        "state",
                        (pure_as_vector_u8(pure(a[0], k)), pure_as_option_string(pure(a[1], k))),
                    )
                elif name == ("timelock", "none"):
                    if types or a:
                        raise MoveFailure(f"ArityMismatch in command {k}")
                    results[k] = ("timelock", "none")
                elif name == ("dynamic_notarization", "create"):
                    if types != ["vector<u8>"] or len(a) != 5:
                        raise MoveFailure(f"ArityMismatch in command {k}")
                    state = result(a[0], "state", k)
                    description = pure_as_option_string(pure(a[1], k))
                    updatable = pure_as_option_string(pure(a[2], k))
                    result(a[3], "timelock", k)
                    clock(a[4], k)
                    n = next(self._ids)
                    object_id = (
                        "0x" + _blake2b(digest_raw + b"notarization" + struct.pack("<Q", n)).hex()
                    )
                    created[object_id] = NotarizationObject(
                        object_id,
                        lamport,
                        bytes(32),
                        data.sender,
                        command.package,
                        state[0],
                        state[1],
                        description,
                        updatable,
                        now_ms,
                        now_ms,
                        0,
                        "",
                        0,
                    )
                    events.append(
                        self._event(
                            command.package,
                            "dynamic_notarization::DynamicNotarizationCreated",
                            data.sender,
                            {"notarization_id": object_id},
                        )
                    )
                    results[k] = ("unit", None)
                elif name == ("notarization", "update_state"):
                    if types != ["vector<u8>"] or len(a) != 3:
                        raise MoveFailure(f"ArityMismatch in command {k}")
                    target = a[0]
                    if not (isinstance(target, Input) and target.index in inputs):
                        raise MoveFailure(
                            f"TypeMismatch in command {k} (expected &mut Notarization)"
                        )
                    obj = mutated.get(inputs[target.index].object_id) or inputs[target.index]
                    if obj.package != command.package:
                        raise MoveFailure(f"TypeMismatch in command {k} (another package's type)")
                    state = result(a[1], "state", k)
                    clock(a[2], k)
                    obj.data, obj.metadata = state
                    obj.state_version += 1
                    obj.last_change = now_ms
                    mutated[obj.object_id] = obj
                    events.append(
                        self._event(
                            command.package,
                            "notarization::NotarizationUpdated<vector<u8>>",
                            data.sender,
                            {
                                "notarization_id": obj.object_id,
                                "state_version_count": str(obj.state_version),
                                "updated_state": {"data": list(obj.data), "metadata": obj.metadata},
                            },
                        )
                    )
                    results[k] = ("unit", None)
                else:
                    raise MoveFailure(
                        f"FunctionNotFound: {command.module}::{command.function} in command {k}"
                    )
            except BcsError as exc:
                raise MoveFailure(f"InvalidBCSBytes in command {k}: {exc}") from exc
        unused = [i for i, (kind, _) in results.items() if kind == "timelock" and i not in used]
        if unused:
            raise MoveFailure("UnusedValueWithoutDrop")

    @staticmethod
    def _event(package: str, name: str, sender: str, parsed: dict[str, Any]) -> dict[str, Any]:
        module = name.split("::", maxsplit=1)[0]
        return {
            "packageId": package,
            "transactionModule": module,
            "sender": sender,
            "type": f"{package}::{name}",
            "parsedJson": parsed,
        }

    def input_json(self, data: TransactionData) -> dict[str, Any]:
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
            match arg:
                case Pure(value):
                    inputs.append({"type": "pure", "value": list(value)})
                case SharedObject(object_id, version, mutable):
                    inputs.append(
                        {
                            "type": "object",
                            "objectType": "sharedObject",
                            "objectId": object_id,
                            "initialSharedVersion": str(version),
                            "mutable": mutable,
                        }
                    )
                case ImmOrOwnedObject(ref):
                    inputs.append(
                        {
                            "type": "object",
                            "objectType": "immOrOwnedObject",
                            "objectId": ref.object_id,
                            "version": str(ref.version),
                            "digest": ref.digest_base58,
                        }
                    )
        commands = [
            {
                "MoveCall": {
                    "package": c.package,
                    "module": c.module,
                    "function": c.function,
                    "type_arguments": [format_type_tag(t) for t in c.type_arguments],
                    "arguments": [argument(x) for x in c.arguments],
                }
            }
            for c in data.kind.commands
            if isinstance(c, MoveCall)
        ]
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
