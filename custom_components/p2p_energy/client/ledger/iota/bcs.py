"""The slice of IOTA Rebased's BCS that a coin payment needs, in both directions.

BCS (Binary Canonical Serialization) is what IOTA signs and hashes, so the
bytes must be exactly the node's: little-endian fixed-width integers, ULEB128
lengths and enum tags, 32-byte addresses and object ids without a length,
digests as length-prefixed byte strings. The layouts follow
``iotaledger/iota`` ``crates/iota-types/src/transaction.rs`` (``TransactionData``
→ ``TransactionDataV1`` → ``TransactionKind::ProgrammableTransaction`` …);
enum tags are the variant positions there.

What a coin transfer uses is modelled: pure and owned/shared/receiving
object inputs, the ``TransferObjects``, ``SplitCoins`` and ``MergeCoins``
commands, and the four argument kinds. ``MoveCall`` commands (with their
``TypeTag`` type arguments, ``move-core-types`` ``language_storage.rs``) are
modelled for the audit trail's IOTA Notarization calls; decoding them is
opt-in (``decode_transaction_data(..., move_calls=True)``), so code that
judges payments never accepts a transaction that calls Move. Anything else
(publish, upgrade, make-vector, system transactions) is refused with
:class:`BcsError` rather than skipped, because a decoder that skips what it
does not understand could misreport what a signed transaction does.

Decoding is strict: non-minimal ULEB128, booleans other than 0/1 and
trailing bytes are errors, so every accepted byte string has exactly one
meaning and ``encode(decode(b)) == b``.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import base58

ADDRESS_LENGTH = 32
DIGEST_LENGTH = 32
U64_MAX = 2**64 - 1
# BCS caps sequence lengths (and ULEB128 values generally) at 2^31 - 1.
_MAX_ULEB = 2**31 - 1
_HEX_ADDRESS_RE = re.compile(r"^0x[0-9a-fA-F]{1,64}$")

# Enum tags, as positioned in iota-types (transaction.rs).
_TX_DATA_V1 = 0
_KIND_PROGRAMMABLE = 0
_CALL_ARG_PURE = 0
_CALL_ARG_OBJECT = 1
_OBJ_IMM_OR_OWNED = 0
_OBJ_SHARED = 1
_OBJ_RECEIVING = 2
_CMD_MOVE_CALL = 0
_CMD_TRANSFER_OBJECTS = 1
_CMD_SPLIT_COINS = 2
_CMD_MERGE_COINS = 3
_ARG_GAS_COIN = 0
_ARG_INPUT = 1
_ARG_RESULT = 2
_ARG_NESTED_RESULT = 3
_EXPIRATION_NONE = 0
_EXPIRATION_EPOCH = 1


class BcsError(ValueError):
    """Bytes that are not a (supported) canonical BCS value, or a value that cannot be encoded."""


def normalize_address(text: str) -> str:
    """``0x`` + 64 lowercase hex digits; short forms such as ``0x2`` are zero-padded."""
    if not isinstance(text, str) or _HEX_ADDRESS_RE.match(text) is None:
        raise BcsError(f"{text!r} is not a hex address or object id")
    return "0x" + text[2:].lower().rjust(64, "0")


def digest_to_base58(raw: bytes) -> str:
    return base58.b58encode(raw).decode("ascii")


def digest_from_base58(text: str) -> bytes:
    """Decode a base58 digest (transaction or object), refusing anything but 32 bytes."""
    if not isinstance(text, str) or not text:
        raise BcsError("a digest must be a non-empty base58 string")
    try:
        raw = base58.b58decode(text)
    except ValueError as exc:
        raise BcsError(f"{text!r} is not base58") from exc
    if len(raw) != DIGEST_LENGTH or digest_to_base58(raw) != text:
        raise BcsError(f"{text!r} is not a canonical base58 32-byte digest")
    return raw


# --- the data model -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """(object id, version, digest): names one version of an object."""

    object_id: str
    version: int
    digest: bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "object_id", normalize_address(self.object_id))
        _check_u64(self.version, "object version")
        if len(self.digest) != DIGEST_LENGTH:
            raise BcsError(f"an object digest has {DIGEST_LENGTH} bytes")

    @property
    def digest_base58(self) -> str:
        return digest_to_base58(self.digest)


@dataclass(frozen=True, slots=True)
class Pure:
    """A pure input: the BCS bytes of a plain value (u64 amount, address …)."""

    value: bytes


@dataclass(frozen=True, slots=True)
class ImmOrOwnedObject:
    ref: ObjectRef


@dataclass(frozen=True, slots=True)
class SharedObject:
    object_id: str
    initial_shared_version: int
    mutable: bool

    def __post_init__(self) -> None:
        object.__setattr__(self, "object_id", normalize_address(self.object_id))
        _check_u64(self.initial_shared_version, "initial shared version")


@dataclass(frozen=True, slots=True)
class Receiving:
    ref: ObjectRef


type CallArg = Pure | ImmOrOwnedObject | SharedObject | Receiving


@dataclass(frozen=True, slots=True)
class GasCoin:
    """The gas coin (all gas payment coins, merged by the node before execution)."""


@dataclass(frozen=True, slots=True)
class Input:
    index: int

    def __post_init__(self) -> None:
        _check_u16(self.index)


@dataclass(frozen=True, slots=True)
class Result:
    index: int

    def __post_init__(self) -> None:
        _check_u16(self.index)


@dataclass(frozen=True, slots=True)
class NestedResult:
    index: int
    result: int

    def __post_init__(self) -> None:
        _check_u16(self.index)
        _check_u16(self.result)


type Argument = GasCoin | Input | Result | NestedResult


@dataclass(frozen=True, slots=True)
class TransferObjects:
    objects: tuple[Argument, ...]
    address: Argument


@dataclass(frozen=True, slots=True)
class SplitCoins:
    coin: Argument
    amounts: tuple[Argument, ...]


@dataclass(frozen=True, slots=True)
class MergeCoins:
    destination: Argument
    sources: tuple[Argument, ...]


# TypeTag variants (move-core-types language_storage.rs; u16/u32/u256 were appended).
_PRIMITIVE_TAGS = {
    "bool": 0,
    "u8": 1,
    "u64": 2,
    "u128": 3,
    "address": 4,
    "signer": 5,
    "u16": 8,
    "u32": 9,
    "u256": 10,
}
_TAG_VECTOR = 6
_TAG_STRUCT = 7
_PRIMITIVE_NAMES = {tag: name for name, tag in _PRIMITIVE_TAGS.items()}
_IDENTIFIER_RE = re.compile(r"^(?:[A-Za-z][A-Za-z0-9_]*|_[A-Za-z0-9_]+)$")


def check_identifier(name: str) -> str:
    """A Move identifier (module, function, struct name)."""
    if not isinstance(name, str) or _IDENTIFIER_RE.match(name) is None or len(name) > 128:
        raise BcsError(f"{name!r} is not a Move identifier")
    return name


@dataclass(frozen=True, slots=True)
class PrimitiveType:
    name: str  # bool, u8, u16, u32, u64, u128, u256, address, signer

    def __post_init__(self) -> None:
        if self.name not in _PRIMITIVE_TAGS:
            raise BcsError(f"{self.name!r} is not a primitive Move type")


@dataclass(frozen=True, slots=True)
class VectorType:
    element: TypeTag


@dataclass(frozen=True, slots=True)
class StructType:
    address: str
    module: str
    name: str
    type_params: tuple[TypeTag, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", normalize_address(self.address))
        check_identifier(self.module)
        check_identifier(self.name)


type TypeTag = PrimitiveType | VectorType | StructType


def format_type_tag(tag: TypeTag) -> str:
    """The canonical text of a type (``vector<u8>``, ``0x…::module::Name<…>``)."""
    match tag:
        case PrimitiveType(name):
            return name
        case VectorType(element):
            return f"vector<{format_type_tag(element)}>"
        case StructType(address, module, name, params):
            args = f"<{', '.join(format_type_tag(p) for p in params)}>" if params else ""
            return f"{address}::{module}::{name}{args}"
    raise BcsError(f"not a type tag: {tag!r}")


def parse_type_tag(text: str) -> TypeTag:
    """Parse ``u8``, ``vector<T>``, ``0xADDR::module::Name<T, …>``."""
    tag, rest = _parse_type(text.replace(" ", ""))
    if rest:
        raise BcsError(f"unexpected {rest!r} after a type in {text!r}")
    return tag


def _parse_type(text: str) -> tuple[TypeTag, str]:
    if text.startswith("vector<"):
        element, rest = _parse_type(text[len("vector<") :])
        if not rest.startswith(">"):
            raise BcsError("vector<…> is not closed")
        return VectorType(element), rest[1:]
    end = len(text)
    for stop in ("<", ">", ","):
        index = text.find(stop)
        if index != -1:
            end = min(end, index)
    head, rest = text[:end], text[end:]
    if head in _PRIMITIVE_TAGS:
        return PrimitiveType(head), rest
    parts = head.split("::")
    if len(parts) != 3:
        raise BcsError(f"{head!r} is not a Move type")
    params: list[TypeTag] = []
    if rest.startswith("<"):
        rest = rest[1:]
        while True:
            param, rest = _parse_type(rest)
            params.append(param)
            if rest.startswith(","):
                rest = rest[1:]
                continue
            if not rest.startswith(">"):
                raise BcsError("type arguments are not closed")
            rest = rest[1:]
            break
    return StructType(parts[0], parts[1], parts[2], tuple(params)), rest


@dataclass(frozen=True, slots=True)
class MoveCall:
    """``Command::MoveCall(ProgrammableMoveCall)``: call a public Move function."""

    package: str
    module: str
    function: str
    type_arguments: tuple[TypeTag, ...] = ()
    arguments: tuple[Argument, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "package", normalize_address(self.package))
        check_identifier(self.module)
        check_identifier(self.function)

    @property
    def target(self) -> str:
        return f"{self.package}::{self.module}::{self.function}"


type Command = TransferObjects | SplitCoins | MergeCoins | MoveCall


@dataclass(frozen=True, slots=True)
class ProgrammableTransaction:
    inputs: tuple[CallArg, ...]
    commands: tuple[Command, ...]


@dataclass(frozen=True, slots=True)
class GasData:
    payment: tuple[ObjectRef, ...]
    owner: str
    price: int
    budget: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "owner", normalize_address(self.owner))
        _check_u64(self.price, "gas price")
        _check_u64(self.budget, "gas budget")


@dataclass(frozen=True, slots=True)
class TransactionData:
    """``TransactionData::V1``: the only version IOTA Rebased defines."""

    kind: ProgrammableTransaction
    sender: str
    gas_data: GasData
    expiration_epoch: int | None = None  # TransactionExpiration::None when None

    def __post_init__(self) -> None:
        object.__setattr__(self, "sender", normalize_address(self.sender))
        if self.expiration_epoch is not None:
            _check_u64(self.expiration_epoch, "expiration epoch")


def _check_u64(value: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= U64_MAX:
        raise BcsError(f"{what} must be an integer in [0, 2^64)")


def _check_u16(value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFF:
        raise BcsError("an argument index must be an integer in [0, 65535]")


# --- encoding -------------------------------------------------------------------------


class _Writer:
    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def uleb128(self, value: int) -> None:
        if not 0 <= value <= _MAX_ULEB:
            raise BcsError("length or tag out of the BCS range")
        out = bytearray()
        while True:
            byte = value & 0x7F
            value >>= 7
            if value:
                out.append(byte | 0x80)
            else:
                out.append(byte)
                break
        self._parts.append(bytes(out))

    def u8(self, value: int) -> None:
        self._parts.append(struct.pack("<B", value))

    def u16(self, value: int) -> None:
        self._parts.append(struct.pack("<H", value))

    def u64(self, value: int) -> None:
        _check_u64(value, "u64")
        self._parts.append(struct.pack("<Q", value))

    def boolean(self, value: bool) -> None:
        self._parts.append(b"\x01" if value else b"\x00")

    def fixed(self, raw: bytes) -> None:
        self._parts.append(raw)

    def byte_string(self, raw: bytes) -> None:
        self.uleb128(len(raw))
        self._parts.append(raw)

    def address(self, text: str) -> None:
        self._parts.append(bytes.fromhex(normalize_address(text)[2:]))

    def getvalue(self) -> bytes:
        return b"".join(self._parts)


def _encode_object_ref(w: _Writer, ref: ObjectRef) -> None:
    w.address(ref.object_id)
    w.u64(ref.version)
    w.byte_string(ref.digest)


def _encode_call_arg(w: _Writer, arg: CallArg) -> None:
    match arg:
        case Pure(value):
            w.uleb128(_CALL_ARG_PURE)
            w.byte_string(value)
        case ImmOrOwnedObject(ref):
            w.uleb128(_CALL_ARG_OBJECT)
            w.uleb128(_OBJ_IMM_OR_OWNED)
            _encode_object_ref(w, ref)
        case SharedObject(object_id, initial_shared_version, mutable):
            w.uleb128(_CALL_ARG_OBJECT)
            w.uleb128(_OBJ_SHARED)
            w.address(object_id)
            w.u64(initial_shared_version)
            w.boolean(mutable)
        case Receiving(ref):
            w.uleb128(_CALL_ARG_OBJECT)
            w.uleb128(_OBJ_RECEIVING)
            _encode_object_ref(w, ref)


def _encode_argument(w: _Writer, arg: Argument) -> None:
    match arg:
        case GasCoin():
            w.uleb128(_ARG_GAS_COIN)
        case Input(index):
            w.uleb128(_ARG_INPUT)
            w.u16(index)
        case Result(index):
            w.uleb128(_ARG_RESULT)
            w.u16(index)
        case NestedResult(index, result):
            w.uleb128(_ARG_NESTED_RESULT)
            w.u16(index)
            w.u16(result)


def _encode_arguments(w: _Writer, args: Sequence[Argument]) -> None:
    w.uleb128(len(args))
    for arg in args:
        _encode_argument(w, arg)


def _encode_type_tag(w: _Writer, tag: TypeTag) -> None:
    match tag:
        case PrimitiveType(name):
            w.uleb128(_PRIMITIVE_TAGS[name])
        case VectorType(element):
            w.uleb128(_TAG_VECTOR)
            _encode_type_tag(w, element)
        case StructType(address, module, name, params):
            w.uleb128(_TAG_STRUCT)
            w.address(address)
            w.byte_string(module.encode())
            w.byte_string(name.encode())
            w.uleb128(len(params))
            for param in params:
                _encode_type_tag(w, param)


def _encode_command(w: _Writer, command: Command) -> None:
    match command:
        case MoveCall(package, module, function, type_arguments, arguments):
            w.uleb128(_CMD_MOVE_CALL)
            w.address(package)
            w.byte_string(module.encode())
            w.byte_string(function.encode())
            w.uleb128(len(type_arguments))
            for tag in type_arguments:
                _encode_type_tag(w, tag)
            _encode_arguments(w, arguments)
        case TransferObjects(objects, address):
            w.uleb128(_CMD_TRANSFER_OBJECTS)
            _encode_arguments(w, objects)
            _encode_argument(w, address)
        case SplitCoins(coin, amounts):
            w.uleb128(_CMD_SPLIT_COINS)
            _encode_argument(w, coin)
            _encode_arguments(w, amounts)
        case MergeCoins(destination, sources):
            w.uleb128(_CMD_MERGE_COINS)
            _encode_argument(w, destination)
            _encode_arguments(w, sources)


def encode_transaction_data(tx: TransactionData) -> bytes:
    """The BCS bytes of ``tx``: what is signed, hashed into the digest and sent to the node."""
    w = _Writer()
    w.uleb128(_TX_DATA_V1)
    w.uleb128(_KIND_PROGRAMMABLE)
    w.uleb128(len(tx.kind.inputs))
    for arg in tx.kind.inputs:
        _encode_call_arg(w, arg)
    w.uleb128(len(tx.kind.commands))
    for command in tx.kind.commands:
        _encode_command(w, command)
    w.address(tx.sender)
    gas = tx.gas_data
    w.uleb128(len(gas.payment))
    for ref in gas.payment:
        _encode_object_ref(w, ref)
    w.address(gas.owner)
    w.u64(gas.price)
    w.u64(gas.budget)
    if tx.expiration_epoch is None:
        w.uleb128(_EXPIRATION_NONE)
    else:
        w.uleb128(_EXPIRATION_EPOCH)
        w.u64(tx.expiration_epoch)
    return w.getvalue()


def pure_u64(value: int) -> Pure:
    _check_u64(value, "u64")
    return Pure(struct.pack("<Q", value))


def pure_address(address: str) -> Pure:
    return Pure(bytes.fromhex(normalize_address(address)[2:]))


def pure_vector_u8(data: bytes) -> Pure:
    """A pure ``vector<u8>``: ULEB128 length, then the bytes."""
    w = _Writer()
    w.byte_string(bytes(data))
    return Pure(w.getvalue())


def pure_option_string(text: str | None) -> Pure:
    """A pure ``Option<String>`` (``std::string::String`` is UTF-8 bytes in BCS)."""
    if text is None:
        return Pure(b"\x00")
    w = _Writer()
    w.u8(1)
    w.byte_string(text.encode())
    return Pure(w.getvalue())


def pure_as_vector_u8(arg: Pure) -> bytes:
    """Read a pure input as ``vector<u8>`` (nothing may follow the bytes)."""
    r = _Reader(arg.value)
    data = r.byte_string()
    r.finish()
    return data


def pure_as_option_string(arg: Pure) -> str | None:
    r = _Reader(arg.value)
    tag = r.u8()
    if tag == 0:
        r.finish()
        return None
    if tag != 1:
        raise BcsError("an Option tag must be 0 or 1")
    raw = r.byte_string()
    r.finish()
    try:
        return raw.decode()
    except UnicodeDecodeError as exc:
        raise BcsError("a String must be UTF-8") from exc


def pure_as_u64(arg: Pure) -> int:
    """Read a pure input as a u64 (it must be exactly 8 bytes)."""
    if len(arg.value) != 8:
        raise BcsError("a pure u64 has 8 bytes")
    value: int = struct.unpack("<Q", arg.value)[0]
    return value


def pure_as_address(arg: Pure) -> str:
    """Read a pure input as an address (it must be exactly 32 bytes)."""
    if len(arg.value) != ADDRESS_LENGTH:
        raise BcsError("a pure address has 32 bytes")
    return "0x" + arg.value.hex()


# --- decoding -------------------------------------------------------------------------


class _Reader:
    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def _take(self, n: int) -> bytes:
        end = self._pos + n
        if end > len(self._data):
            raise BcsError("unexpected end of BCS input")
        chunk = self._data[self._pos : end]
        self._pos = end
        return chunk

    def uleb128(self) -> int:
        value = 0
        shift = 0
        while True:
            byte = self._take(1)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                # A zero final byte after the first means a non-minimal encoding.
                if byte == 0 and shift:
                    raise BcsError("non-canonical ULEB128")
                break
            shift += 7
            if shift > 28:
                raise BcsError("ULEB128 value too large")
        if value > _MAX_ULEB:
            raise BcsError("ULEB128 value too large")
        return value

    def length(self) -> int:
        n = self.uleb128()
        # Every element takes at least one byte: refuse lengths the input cannot hold.
        if n > len(self._data) - self._pos:
            raise BcsError("sequence length exceeds the remaining input")
        return n

    @property
    def position(self) -> int:
        return self._pos

    def fixed(self, n: int) -> bytes:
        return self._take(n)

    def u8(self) -> int:
        return self._take(1)[0]

    def u16(self) -> int:
        value: int = struct.unpack("<H", self._take(2))[0]
        return value

    def u64(self) -> int:
        value: int = struct.unpack("<Q", self._take(8))[0]
        return value

    def boolean(self) -> bool:
        byte = self.u8()
        if byte > 1:
            raise BcsError("a bool must be 0 or 1")
        return byte == 1

    def byte_string(self) -> bytes:
        return self._take(self.length())

    def address(self) -> str:
        return "0x" + self._take(ADDRESS_LENGTH).hex()

    def finish(self) -> None:
        if self._pos != len(self._data):
            raise BcsError(f"{len(self._data) - self._pos} trailing bytes after the value")


def _decode_object_ref(r: _Reader) -> ObjectRef:
    object_id = r.address()
    version = r.u64()
    digest = r.byte_string()
    if len(digest) != DIGEST_LENGTH:
        raise BcsError("an object digest has 32 bytes")
    return ObjectRef(object_id, version, digest)


def _decode_call_arg(r: _Reader) -> CallArg:
    tag = r.uleb128()
    if tag == _CALL_ARG_PURE:
        return Pure(r.byte_string())
    if tag != _CALL_ARG_OBJECT:
        raise BcsError(f"unknown CallArg variant {tag}")
    obj_tag = r.uleb128()
    if obj_tag == _OBJ_IMM_OR_OWNED:
        return ImmOrOwnedObject(_decode_object_ref(r))
    if obj_tag == _OBJ_SHARED:
        return SharedObject(r.address(), r.u64(), r.boolean())
    if obj_tag == _OBJ_RECEIVING:
        return Receiving(_decode_object_ref(r))
    raise BcsError(f"unknown ObjectArg variant {obj_tag}")


def _decode_argument(r: _Reader) -> Argument:
    tag = r.uleb128()
    if tag == _ARG_GAS_COIN:
        return GasCoin()
    if tag == _ARG_INPUT:
        return Input(r.u16())
    if tag == _ARG_RESULT:
        return Result(r.u16())
    if tag == _ARG_NESTED_RESULT:
        return NestedResult(r.u16(), r.u16())
    raise BcsError(f"unknown Argument variant {tag}")


def _decode_seq[T](r: _Reader, item: Callable[[_Reader], T]) -> tuple[T, ...]:
    return tuple(item(r) for _ in range(r.length()))


def _decode_identifier(r: _Reader) -> str:
    raw = r.byte_string()
    try:
        return check_identifier(raw.decode("ascii"))
    except UnicodeDecodeError as exc:
        raise BcsError("a Move identifier is ASCII") from exc


def _decode_type_tag(r: _Reader, depth: int = 0) -> TypeTag:
    if depth > 16:
        raise BcsError("type arguments nest too deep")
    tag = r.uleb128()
    if tag in _PRIMITIVE_NAMES:
        return PrimitiveType(_PRIMITIVE_NAMES[tag])
    if tag == _TAG_VECTOR:
        return VectorType(_decode_type_tag(r, depth + 1))
    if tag == _TAG_STRUCT:
        address = r.address()
        module = _decode_identifier(r)
        name = _decode_identifier(r)
        params = tuple(_decode_type_tag(r, depth + 1) for _ in range(r.length()))
        return StructType(address, module, name, params)
    raise BcsError(f"unknown TypeTag variant {tag}")


def _decode_move_call(r: _Reader) -> MoveCall:
    package = r.address()
    module = _decode_identifier(r)
    function = _decode_identifier(r)
    type_arguments = tuple(_decode_type_tag(r) for _ in range(r.length()))
    return MoveCall(package, module, function, type_arguments, _decode_seq(r, _decode_argument))


def _decode_command(r: _Reader, *, move_calls: bool = False) -> Command:
    tag = r.uleb128()
    if tag == _CMD_TRANSFER_OBJECTS:
        objects = _decode_seq(r, _decode_argument)
        return TransferObjects(objects, _decode_argument(r))
    if tag == _CMD_SPLIT_COINS:
        coin = _decode_argument(r)
        return SplitCoins(coin, _decode_seq(r, _decode_argument))
    if tag == _CMD_MERGE_COINS:
        destination = _decode_argument(r)
        return MergeCoins(destination, _decode_seq(r, _decode_argument))
    if tag == _CMD_MOVE_CALL:
        if not move_calls:
            raise BcsError("Move calls are not supported by this decoder (move_calls=False)")
        return _decode_move_call(r)
    raise BcsError(f"unsupported Command variant {tag}")


def decode_transaction_data(data: bytes, *, move_calls: bool = False) -> TransactionData:
    """Parse BCS ``TransactionData`` bytes; the exact inverse of :func:`encode_transaction_data`.

    Move calls are refused unless ``move_calls`` is True (see the module doc).
    """
    r = _Reader(bytes(data))
    tx = _decode_transaction_data(r, move_calls=move_calls)
    r.finish()
    return tx


def split_sender_signed_data(data: bytes) -> tuple[bytes, tuple[bytes, ...]]:
    """(``TransactionData`` bytes, signatures) of BCS ``SenderSignedData``.

    That is what a node's ``rawTransaction`` holds (iota-types transaction.rs:
    a one-element vector of ``SenderSignedTransaction { intent_message:
    IntentMessage<TransactionData>, tx_signatures: Vec<GenericSignature> }``,
    each signature as length-prefixed bytes). The transaction's own bytes
    come back unchanged, so their digest can be checked against the id the
    node answered for.
    """
    raw = bytes(data)
    r = _Reader(raw)
    if r.uleb128() != 1:
        raise BcsError("SenderSignedData holds exactly one signed transaction")
    if r.fixed(3) != b"\x00\x00\x00":
        raise BcsError("not a transaction intent (scope, version and app id must be 0)")
    start = r.position
    _decode_transaction_data(r, move_calls=True)
    tx_bytes = raw[start : r.position]
    signatures = _decode_seq(r, lambda reader: reader.byte_string())
    r.finish()
    return tx_bytes, signatures


def _decode_transaction_data(r: _Reader, *, move_calls: bool) -> TransactionData:
    version = r.uleb128()
    if version != _TX_DATA_V1:
        raise BcsError(f"unknown TransactionData version {version}")
    kind = r.uleb128()
    if kind != _KIND_PROGRAMMABLE:
        raise BcsError(f"unsupported TransactionKind variant {kind}")
    inputs = _decode_seq(r, _decode_call_arg)
    commands = tuple(_decode_command(r, move_calls=move_calls) for _ in range(r.length()))
    sender = r.address()
    payment = _decode_seq(r, _decode_object_ref)
    owner = r.address()
    price = r.u64()
    budget = r.u64()
    expiration_tag = r.uleb128()
    if expiration_tag == _EXPIRATION_NONE:
        expiration: int | None = None
    elif expiration_tag == _EXPIRATION_EPOCH:
        expiration = r.u64()
    else:
        raise BcsError(f"unknown TransactionExpiration variant {expiration_tag}")
    return TransactionData(
        kind=ProgrammableTransaction(inputs, commands),
        sender=sender,
        gas_data=GasData(payment, owner, price, budget),
        expiration_epoch=expiration,
    )
