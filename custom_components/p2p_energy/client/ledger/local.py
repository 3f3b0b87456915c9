"""The grid's embedded local ledger: the one definition of its records.

Accounts are IOTA Rebased addresses (``0x`` + hex(blake2b-256(public key))),
amounts are integer micro-units of the grid's currency, transaction ids are
base58 of a 32-byte digest — the same shapes as on IOTA.

Records
-------
A *transfer record* is the JSON object::

    {"type": "p2p-ledger-transfer", "v": 1, "grid": <grid id>,
     "sender": <address>, "recipient": <address>, "amount": <int >= 1>,
     "seq": <int >= 1>, "memo": <optional text>}

signed with Ed25519 by the sender's key over its RFC 8785 canonical JSON
(the same canonical form as protocol envelopes; ``type`` is not a payload
type, so a transfer signature can never pass for an envelope's). ``seq`` is
the sender's *ledger* sequence number: the grid applies a transfer only if
``seq`` is above the last one it applied for that sender, so of two
transfers signed with the same ``seq`` at most one is ever applied. Minting
(operator only) is the record ``{"type": "p2p-ledger-mint", "v": 1, "grid",
"recipient", "amount", "seq", "memo"}`` (``seq`` counts the grid's mints),
unsigned.

* Transaction id: ``base58(blake2b-256(b"p2p-ledger-tx::" ‖ canonical JSON
  of the record))`` — computable by the signer before sending, so a retry
  of the same transfer has the same id.
* Ledger entries are numbered ``index`` = 1, 2, …; each entry's hash is
  ``blake2b-256(b"p2p-ledger-entry::" ‖ prev_hash ‖ u64be(index) ‖ tx
  digest ‖ u16be(len(signature)) ‖ signature ‖ u64be(time in Unix ms))``
  with ``prev_hash`` 32 zero bytes for the first entry. Altering, removing
  or reordering an entry changes every later hash.

:mod:`.local_client` is a household's :class:`~.base.Ledger` over the
grid's HTTP API; this module is the format both sides share (no I/O).
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal

import base58

from ..crypto import (
    PUBLIC_KEY_BYTES,
    SIGNATURE_BYTES,
    CryptoError,
    KeyPair,
    address_from_public_key,
    b64decode_exact,
    b64encode,
    blake2b256,
    is_address,
    verify,
)
from ..protocol import (
    MAX_SEQ,
    ErrorCode,
    ProtocolError,
    canonical_json,
    check_id,
    check_int,
    check_visible_text,
)
from .base import LedgerError

if TYPE_CHECKING:
    from ..models import LedgerEntry

TRANSFER_TYPE: Final = "p2p-ledger-transfer"
MINT_TYPE: Final = "p2p-ledger-mint"
FORMAT_VERSION: Final = 1
MAX_AMOUNT: Final = MAX_SEQ  # every JSON reader keeps it exact
MAX_MEMO_LENGTH: Final = 128
TX_DOMAIN: Final = b"p2p-ledger-tx::"
ENTRY_DOMAIN: Final = b"p2p-ledger-entry::"
GENESIS_HASH: Final = bytes(32)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

RecordKind = Literal["transfer", "mint"]


def _invalid(path: str, reason: str) -> ProtocolError:
    return ProtocolError(ErrorCode.INVALID_FIELD, f"{path}: {reason}", path)


def check_memo(value: object, path: str) -> str:
    """Memos: 1-128 characters of visible text."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_MEMO_LENGTH:
        raise _invalid(path, f"must be a string of 1-{MAX_MEMO_LENGTH} characters")
    return check_visible_text(value, path)


def _address(value: object, path: str) -> str:
    if not is_address(value):
        raise _invalid(path, "must be an address: 0x and 64 lowercase hex digits")
    assert isinstance(value, str)
    return value


@dataclass(frozen=True, slots=True)
class LedgerRecord:
    """What one local-ledger transaction says (a transfer or a mint)."""

    kind: RecordKind
    grid: str
    sender: str | None  # None for a mint
    recipient: str
    amount: int
    seq: int
    memo: str | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": TRANSFER_TYPE if self.kind == "transfer" else MINT_TYPE,
            "v": FORMAT_VERSION,
            "grid": self.grid,
        }
        if self.kind == "transfer":
            out["sender"] = self.sender
        out.update(recipient=self.recipient, amount=self.amount, seq=self.seq)
        if self.memo is not None:
            out["memo"] = self.memo
        return out

    @classmethod
    def from_wire(cls, value: object, path: str = "record") -> LedgerRecord:
        if not isinstance(value, dict):
            raise _invalid(path, "must be a JSON object")
        kind_text = value.get("type")
        if kind_text == TRANSFER_TYPE:
            kind: RecordKind = "transfer"
            allowed = {"type", "v", "grid", "sender", "recipient", "amount", "seq", "memo"}
        elif kind_text == MINT_TYPE:
            kind = "mint"
            allowed = {"type", "v", "grid", "recipient", "amount", "seq", "memo"}
        else:
            raise _invalid(f"{path}.type", f"must be {TRANSFER_TYPE!r} or {MINT_TYPE!r}")
        extra = sorted(set(value) - allowed)
        if extra:
            raise _invalid(f"{path}.{extra[0]}", "is not a field of this record")
        for key in allowed - {"memo"}:
            if key not in value:
                raise _invalid(f"{path}.{key}", "is required")
        if value["v"] != FORMAT_VERSION or isinstance(value["v"], bool):
            raise _invalid(f"{path}.v", f"must be {FORMAT_VERSION}")
        memo = value.get("memo")
        return cls(
            kind,
            check_id(value["grid"], f"{path}.grid"),
            _address(value["sender"], f"{path}.sender") if kind == "transfer" else None,
            _address(value["recipient"], f"{path}.recipient"),
            check_int(value["amount"], f"{path}.amount", 1, MAX_AMOUNT),
            check_int(value["seq"], f"{path}.seq", 1, MAX_SEQ),
            None if memo is None else check_memo(memo, f"{path}.memo"),
        )

    @property
    def canonical_bytes(self) -> bytes:
        """The bytes a transfer's signature covers (RFC 8785 JSON of :meth:`to_wire`)."""
        return canonical_json(self.to_wire())

    @property
    def tx_digest(self) -> bytes:
        return _tx_digest(self)

    @property
    def tx_id(self) -> str:
        return _tx_id(self)


# A record's digest and id are asked for several times while it is checked, applied
# and recorded (base58 alone costs tens of microseconds): remembered for the records
# in use (a writer batch, a payout batch). Records are immutable, so this is only speed.
@functools.lru_cache(maxsize=8192)
def _tx_digest(record: LedgerRecord) -> bytes:
    return blake2b256(TX_DOMAIN + record.canonical_bytes)


@functools.lru_cache(maxsize=8192)
def _tx_id(record: LedgerRecord) -> str:
    return base58.b58encode(_tx_digest(record)).decode("ascii")


def transfer_record(
    grid: str,
    sender: str,
    *,
    recipient: str,
    amount: int,
    seq: int,
    memo: str | None = None,
) -> LedgerRecord:
    """A transfer record, validated as the grid will validate it."""
    record = LedgerRecord("transfer", grid, sender, recipient, amount, seq, memo)
    return LedgerRecord.from_wire(record.to_wire())


@dataclass(frozen=True, slots=True)
class SignedTransfer:
    """A transfer record with its sender's public key and Ed25519 signature.

    Wire form (``transfer`` in ``payment`` and ``transfer`` envelopes)::

        {"record": {...}, "public_key": "<base64>", "signature": "<base64>"}
    """

    record: LedgerRecord
    public_key: bytes
    signature: bytes

    @classmethod
    def sign(
        cls,
        keys: KeyPair,
        *,
        grid: str,
        recipient: str,
        amount: int,
        seq: int,
        memo: str | None = None,
    ) -> SignedTransfer:
        record = transfer_record(
            grid, keys.address, recipient=recipient, amount=amount, seq=seq, memo=memo
        )
        return cls(record, keys.public_key, keys.sign(record.canonical_bytes))

    @property
    def tx_id(self) -> str:
        return self.record.tx_id

    @property
    def sender(self) -> str:
        assert self.record.sender is not None
        return self.record.sender

    def verify(self) -> bool:
        """True when the key is the sender's and the signature covers the record."""
        return (
            self.record.kind == "transfer"
            and address_from_public_key(self.public_key) == self.record.sender
            and verify(self.public_key, self.record.canonical_bytes, self.signature)
        )

    def to_wire(self) -> dict[str, Any]:
        return {
            "record": self.record.to_wire(),
            "public_key": b64encode(self.public_key),
            "signature": b64encode(self.signature),
        }

    @classmethod
    def from_wire(cls, value: object, path: str = "transfer") -> SignedTransfer:
        """Parse (not verify) a signed transfer; shape errors name the field."""
        if not isinstance(value, dict):
            raise _invalid(path, "must be a JSON object")
        extra = sorted(set(value) - {"record", "public_key", "signature"})
        if extra:
            raise _invalid(f"{path}.{extra[0]}", "is not a field of a signed transfer")
        for key in ("record", "public_key", "signature"):
            if key not in value:
                raise _invalid(f"{path}.{key}", "is required")
        record = LedgerRecord.from_wire(value["record"], f"{path}.record")
        if record.kind != "transfer":
            raise _invalid(f"{path}.record.type", f"must be {TRANSFER_TYPE!r}")
        try:
            public_key = b64decode_exact(value["public_key"], PUBLIC_KEY_BYTES, "public_key")
            signature = b64decode_exact(value["signature"], SIGNATURE_BYTES, "signature")
        except CryptoError as exc:
            raise _invalid(path, str(exc)) from exc
        return cls(record, public_key, signature)


def mint_record(grid: str, recipient: str, amount: int, seq: int, memo: str | None) -> LedgerRecord:
    record = LedgerRecord("mint", grid, None, recipient, amount, seq, memo)
    return LedgerRecord.from_wire(record.to_wire())


def time_ms(moment: datetime) -> int:
    """Whole Unix milliseconds of a UTC time (exact: no float arithmetic)."""
    return (moment.astimezone(UTC) - _EPOCH) // timedelta(milliseconds=1)


def ledger_entry_hash(
    prev_hash: bytes, index: int, tx_digest: bytes, signature: bytes, time_ms: int
) -> bytes:
    """The hash of ledger entry ``index`` (see the module docstring)."""
    if len(prev_hash) != 32 or len(tx_digest) != 32:
        raise ValueError("hashes and digests have 32 bytes")
    return blake2b256(
        ENTRY_DOMAIN
        + prev_hash
        + struct.pack(">Q", index)
        + tx_digest
        + struct.pack(">H", len(signature))
        + signature
        + struct.pack(">Q", time_ms)
    )


def tx_digest_of(tx_id: str) -> bytes:
    """The 32 bytes behind a base58 transaction id (``LedgerError`` if it is not one)."""
    try:
        raw = base58.b58decode(tx_id)
    except ValueError as exc:
        raise LedgerError("invalid_tx_id", f"{tx_id!r} is not base58") from exc
    if len(raw) != 32 or base58.b58encode(raw).decode("ascii") != tx_id:
        raise LedgerError("invalid_tx_id", f"{tx_id!r} is not a 32-byte base58 digest")
    return raw


def is_tx_id(text: object) -> bool:
    if not isinstance(text, str) or not 30 <= len(text) <= 50:
        return False
    try:
        tx_digest_of(text)
    except LedgerError:
        return False
    return True


def check_entry(entry: LedgerEntry, grid: str, prev_hash: bytes) -> str | None:
    """What is wrong with a ledger entry as the grid published it, or ``None``.

    Recomputes the record, its transaction id, the signature (transfers) and
    the entry hash from ``prev_hash`` — what a household can check on its own.
    """
    record = LedgerRecord(
        "mint" if entry.kind == "mint" else "transfer",
        grid,
        entry.sender,
        entry.recipient,
        entry.amount,
        entry.seq,
        entry.memo,
    )
    if record.tx_id != entry.tx_id:
        return "the transaction id is not the digest of the record"
    signature = b""
    if record.kind == "transfer":
        if entry.signature is None or entry.public_key is None:
            return "a transfer without signature"
        try:
            signature = b64decode_exact(entry.signature, SIGNATURE_BYTES, "signature")
            public_key = b64decode_exact(entry.public_key, PUBLIC_KEY_BYTES, "public_key")
        except CryptoError as exc:
            return str(exc)
        if not SignedTransfer(record, public_key, signature).verify():
            return "the signature is not the sender's over the record"
    if bytes.fromhex(entry.prev_hash) != prev_hash:
        return "the entry does not follow the previous one"
    expected = ledger_entry_hash(
        prev_hash, entry.index, record.tx_digest, signature, time_ms(entry.time)
    )
    if expected.hex() != entry.hash:
        return "the entry hash does not match its content"
    return None


__all__ = [
    "ENTRY_DOMAIN",
    "FORMAT_VERSION",
    "GENESIS_HASH",
    "MAX_AMOUNT",
    "MINT_TYPE",
    "TRANSFER_TYPE",
    "TX_DOMAIN",
    "LedgerRecord",
    "SignedTransfer",
    "check_entry",
    "is_tx_id",
    "ledger_entry_hash",
    "mint_record",
    "time_ms",
    "transfer_record",
    "tx_digest_of",
]
