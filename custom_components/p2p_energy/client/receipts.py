"""Receipts: proof that the grid logged what a household sent, checkable offline.

The grid appends every accepted envelope, byte for byte as received, to a
hash chain, and closes the chain's entries of each delivery interval with a
Merkle root. A *receipt* for one envelope holds the log entry's header, the
Merkle path from the entry to its interval's root, the root, and (with the
IOTA ledger) where that root is anchored on chain. :func:`verify_receipt`
checks a receipt against the household's **own copy of the bytes it sent**,
with no server involved.

Formats (the one definition; the grid's log appends with these functions)::

    body_hash   = SHA-256(body)              body: the envelope's request bytes
    entry_hash  = SHA-256(prev_hash ‖ u64be(seq) ‖ u16be(len kind) ‖ kind
                          ‖ u16be(len ref) ‖ ref ‖ body_hash)
    leaf        = SHA-256(0x00 ‖ entry_hash)          (RFC 6962 leaf)
    node        = SHA-256(0x01 ‖ left ‖ right)        (RFC 6962 interior node)
    root        = RFC 6962 Merkle tree hash of the leaves of entries
                  first_seq … last_seq (SHA-256 of nothing when there are none)

An envelope's entry has kind ``envelope`` and ref ``"<sender>/<payload seq>"``.
An interval's root is itself a log entry (kind ``root``, ref its
``interval_from``, body the canonical JSON of :meth:`AuditRoot.record`).

Anchoring (IOTA Notarization): roots are anchored in batches. A batch's
tree has one leaf per root, ``SHA-256(0x00 ‖ u64be(root seq) ‖
u64be(first_seq) ‖ u64be(last_seq) ‖ root)``, and the notarized bytes are
``0x01 ‖ batch root ‖ u64be(seq of the batch's last root entry) ‖ that
entry's hash`` (the last part commits to the whole chain before it).

Nothing here needs Home Assistant or a network; :mod:`.receipt_keeper`
fetches receipts for the envelopes a household sent and checks them here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Self

from .protocol import canonical_json
from .units import format_utc, parse_utc

_LOGGER = logging.getLogger(__name__)

HASH_BYTES: Final = 32
# The previous hash of the log's first entry.
GENESIS_HASH: Final = bytes(HASH_BYTES)
EMPTY_ROOT: Final = hashlib.sha256(b"").digest()
ANCHOR_PAYLOAD_VERSION: Final = 1
ANCHOR_PAYLOAD_BYTES: Final = 1 + HASH_BYTES + 8 + HASH_BYTES
# A Merkle path longer than this cannot belong to a tree the grid can hold.
MAX_PATH: Final = 64


class ReceiptError(Exception):
    """The receipt does not prove what it claims (or does not fit the envelope)."""


class ReceiptPending(ReceiptError):
    """The entry is logged, but its interval is not closed yet: ask again later."""


# --- hashing -------------------------------------------------------------------------


def body_hash(body: bytes) -> bytes:
    """SHA-256 of a log entry's bytes (what the chain hash commits to)."""
    return hashlib.sha256(body).digest()


def entry_hash(prev_hash: bytes, seq: int, kind: str, ref: str, body_hash: bytes) -> bytes:
    """The chain hash of an entry, from :func:`body_hash` of its bytes (see the module doc).

    The one definition of the log's chain, used by the grid to append and by
    verifiers (the grid's ``audit verify``, households' receipts) to check.
    """
    kind_b = kind.encode()
    ref_b = ref.encode()
    return hashlib.sha256(
        b"".join(
            (
                prev_hash,
                struct.pack(">QH", seq, len(kind_b)),
                kind_b,
                struct.pack(">H", len(ref_b)),
                ref_b,
                body_hash,
            )
        )
    ).digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_path(leaf: bytes, index: int, size: int, path: Sequence[bytes]) -> bytes:
    """The root an RFC 6962 audit path leads to (RFC 9162 §2.1.3.2).

    Raises :class:`ReceiptError` when the path cannot belong to a tree of
    ``size`` leaves with the leaf at ``index``.
    """
    if not 0 <= index < size or len(path) > MAX_PATH:
        raise ReceiptError(f"leaf {index} is not in a tree of {size} leaves")
    fn, sn = index, size - 1
    r = leaf
    for p in path:
        if sn == 0:
            raise ReceiptError("the Merkle path is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ReceiptError("the Merkle path is shorter than the tree is deep")
    return r


def batch_leaf_data(root_seq: int, first_seq: int, last_seq: int, root: bytes) -> bytes:
    """What one interval root contributes to an anchored batch (before leaf hashing)."""
    return struct.pack(">QQQ", root_seq, first_seq, last_seq) + root


def anchor_payload(batch_root: bytes, last_root_seq: int, last_root_entry_hash: bytes) -> bytes:
    """The bytes notarized on chain for a batch of roots."""
    if len(batch_root) != HASH_BYTES or len(last_root_entry_hash) != HASH_BYTES:
        raise ValueError("hashes have 32 bytes")
    return (
        bytes([ANCHOR_PAYLOAD_VERSION])
        + batch_root
        + struct.pack(">Q", last_root_seq)
        + last_root_entry_hash
    )


def parse_anchor_payload(payload: bytes) -> tuple[bytes, int, bytes]:
    """``(batch root, last root entry seq, last root entry hash)`` of notarized bytes."""
    if len(payload) != ANCHOR_PAYLOAD_BYTES or payload[0] != ANCHOR_PAYLOAD_VERSION:
        raise ReceiptError("the anchored bytes are not a p2p_energy anchor (version 1)")
    seq: int = struct.unpack(">Q", payload[33:41])[0]
    return payload[1:33], seq, payload[41:]


# --- wire shapes ----------------------------------------------------------------------


def _hex(value: object, what: str, length: int = HASH_BYTES) -> bytes:
    if not isinstance(value, str):
        raise ReceiptError(f"{what} must be a hex string")
    try:
        raw = bytes.fromhex(value)
    except ValueError as exc:
        raise ReceiptError(f"{what} is not hex") from exc
    if length and len(raw) != length:
        raise ReceiptError(f"{what} must have {length} bytes")
    return raw


def _int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ReceiptError(f"{what} must be a non-negative integer")
    return value


@dataclass(frozen=True, slots=True)
class AnchorRef:
    """Where a root is anchored: an IOTA Notarization update and the batch it was in."""

    ledger: str  # "iota"
    network: str | None
    package: str  # the notarization package id
    object_id: str  # the grid's dynamic notarization object
    digest: str  # the transaction that wrote ``payload``
    object_version: int  # the object's version after that transaction
    state_version: int  # its state_version_count after that transaction
    first_root_seq: int
    last_root_seq: int
    batch_root: bytes
    payload: bytes
    batch_index: int  # this root's leaf in the batch
    batch_size: int
    batch_path: tuple[bytes, ...]

    def to_wire(self) -> dict[str, Any]:
        return {
            "ledger": self.ledger,
            "network": self.network,
            "package": self.package,
            "object_id": self.object_id,
            "digest": self.digest,
            "object_version": self.object_version,
            "state_version": self.state_version,
            "first_root_seq": self.first_root_seq,
            "last_root_seq": self.last_root_seq,
            "batch_root": self.batch_root.hex(),
            "payload": self.payload.hex(),
            "batch_index": self.batch_index,
            "batch_size": self.batch_size,
            "batch_path": [p.hex() for p in self.batch_path],
        }

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Self:
        try:
            return cls(
                str(d["ledger"]),
                d.get("network"),
                str(d["package"]),
                str(d["object_id"]),
                str(d["digest"]),
                _int(d["object_version"], "anchor.object_version"),
                _int(d["state_version"], "anchor.state_version"),
                _int(d["first_root_seq"], "anchor.first_root_seq"),
                _int(d["last_root_seq"], "anchor.last_root_seq"),
                _hex(d["batch_root"], "anchor.batch_root"),
                _hex(d["payload"], "anchor.payload", 0),
                _int(d["batch_index"], "anchor.batch_index"),
                _int(d["batch_size"], "anchor.batch_size"),
                tuple(_hex(p, "anchor.batch_path") for p in d["batch_path"]),
            )
        except (KeyError, TypeError) as exc:
            raise ReceiptError(f"malformed anchor: {exc!r}") from exc


@dataclass(frozen=True, slots=True)
class AuditRoot:
    """One interval's Merkle root, as the grid publishes it (``GET /api/v1/audit/roots``).

    ``seq`` is the root's own log entry; it covers entries ``first_seq`` …
    ``last_seq`` (none when ``last_seq < first_seq``): every entry appended
    after the previous root's range, up to when the grid closed the
    intervals ``[interval_from, interval_to)`` (shortly after they ended).
    """

    seq: int
    interval_from: datetime
    interval_to: datetime
    first_seq: int
    last_seq: int
    root: bytes
    prev_hash: bytes
    entry_hash: bytes
    anchor: AnchorRef | None = None

    @property
    def size(self) -> int:
        return max(0, self.last_seq - self.first_seq + 1)

    def record(self) -> dict[str, Any]:
        """The body of the root's log entry (canonical JSON of this)."""
        return root_record(
            self.interval_from, self.interval_to, self.first_seq, self.last_seq, self.root
        )

    def computed_entry_hash(self) -> bytes:
        body = canonical_json(self.record())
        return entry_hash(
            self.prev_hash, self.seq, "root", format_utc(self.interval_from), body_hash(body)
        )

    def batch_leaf(self) -> bytes:
        return leaf_hash(batch_leaf_data(self.seq, self.first_seq, self.last_seq, self.root))

    def to_wire(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "interval_from": format_utc(self.interval_from),
            "interval_to": format_utc(self.interval_to),
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "root": self.root.hex(),
            "prev_hash": self.prev_hash.hex(),
            "entry_hash": self.entry_hash.hex(),
            "anchor": None if self.anchor is None else self.anchor.to_wire(),
        }

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Self:
        try:
            anchor = d.get("anchor")
            return cls(
                _int(d["seq"], "root.seq"),
                parse_utc(d["interval_from"]),
                parse_utc(d["interval_to"]),
                _int(d["first_seq"], "root.first_seq"),
                _int(d["last_seq"], "root.last_seq"),
                _hex(d["root"], "root.root"),
                _hex(d["prev_hash"], "root.prev_hash"),
                _hex(d["entry_hash"], "root.entry_hash"),
                None if anchor is None else AnchorRef.from_wire(anchor),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ReceiptError):
                raise
            raise ReceiptError(f"malformed root: {exc!r}") from exc


def root_record(
    interval_from: datetime, interval_to: datetime, first_seq: int, last_seq: int, root: bytes
) -> dict[str, Any]:
    return {
        "interval_from": format_utc(interval_from),
        "interval_to": format_utc(interval_to),
        "first_seq": first_seq,
        "last_seq": last_seq,
        "root": root.hex(),
    }


@dataclass(frozen=True, slots=True)
class LoggedEntry:
    """A log entry's header: everything of it but the body, plus the body's SHA-256."""

    seq: int
    kind: str
    ref: str
    prev_hash: bytes
    body_hash: bytes
    hash: bytes
    created_at: datetime

    def to_wire(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "kind": self.kind,
            "ref": self.ref,
            "prev_hash": self.prev_hash.hex(),
            "body_hash": self.body_hash.hex(),
            "hash": self.hash.hex(),
            "created_at": format_utc(self.created_at),
        }

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Self:
        try:
            return cls(
                _int(d["seq"], "entry.seq"),
                str(d["kind"]),
                str(d["ref"]),
                _hex(d["prev_hash"], "entry.prev_hash"),
                _hex(d["body_hash"], "entry.body_hash"),
                _hex(d["hash"], "entry.hash"),
                parse_utc(d["created_at"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ReceiptError):
                raise
            raise ReceiptError(f"malformed entry: {exc!r}") from exc


@dataclass(frozen=True, slots=True)
class InclusionProof:
    leaf_index: int
    tree_size: int
    path: tuple[bytes, ...]

    def to_wire(self) -> dict[str, Any]:
        return {
            "leaf_index": self.leaf_index,
            "tree_size": self.tree_size,
            "path": [p.hex() for p in self.path],
        }

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Self:
        try:
            return cls(
                _int(d["leaf_index"], "proof.leaf_index"),
                _int(d["tree_size"], "proof.tree_size"),
                tuple(_hex(p, "proof.path") for p in d["path"]),
            )
        except (KeyError, TypeError) as exc:
            raise ReceiptError(f"malformed proof: {exc!r}") from exc


@dataclass(frozen=True, slots=True)
class Receipt:
    """``GET /api/v1/receipts/…``: an entry, its path to the interval root, the root's anchor.

    ``state`` is ``rooted`` (``proof`` and ``root`` set) or ``pending`` (the
    entry's interval is not closed yet).
    """

    grid: str
    state: str
    entry: LoggedEntry
    root: AuditRoot | None
    proof: InclusionProof | None

    @property
    def anchor(self) -> AnchorRef | None:
        return None if self.root is None else self.root.anchor

    def to_wire(self) -> dict[str, Any]:
        return {
            "grid": self.grid,
            "state": self.state,
            "entry": self.entry.to_wire(),
            "root": None if self.root is None else self.root.to_wire(),
            "proof": None if self.proof is None else self.proof.to_wire(),
        }

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Self:
        try:
            root, proof = d.get("root"), d.get("proof")
            return cls(
                str(d["grid"]),
                str(d["state"]),
                LoggedEntry.from_wire(d["entry"]),
                None if root is None else AuditRoot.from_wire(root),
                None if proof is None else InclusionProof.from_wire(proof),
            )
        except (KeyError, TypeError) as exc:
            raise ReceiptError(f"malformed receipt: {exc!r}") from exc


@dataclass(frozen=True, slots=True)
class VerifiedReceipt:
    """What :func:`verify_receipt` established."""

    seq: int  # the entry in the grid's log
    ref: str  # "<sender>/<payload seq>"
    envelope_type: str
    root_seq: int
    root: bytes
    interval_from: datetime
    interval_to: datetime
    anchored: bool  # the root is in an anchored batch (the receipt says where)
    anchor_digest: str | None
    anchor_checked: bool  # the anchored bytes themselves were given and match

    def to_state(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ref": self.ref,
            "envelope_type": self.envelope_type,
            "root_seq": self.root_seq,
            "root": self.root.hex(),
            "interval_from": format_utc(self.interval_from),
            "interval_to": format_utc(self.interval_to),
            "anchored": self.anchored,
            "anchor_digest": self.anchor_digest,
            "anchor_checked": self.anchor_checked,
        }

    @classmethod
    def from_state(cls, d: Mapping[str, Any]) -> Self:
        return cls(
            int(d["seq"]),
            str(d["ref"]),
            str(d["envelope_type"]),
            int(d["root_seq"]),
            bytes.fromhex(d["root"]),
            parse_utc(d["interval_from"]),
            parse_utc(d["interval_to"]),
            bool(d["anchored"]),
            d.get("anchor_digest"),
            bool(d.get("anchor_checked", False)),
        )


# --- verification ---------------------------------------------------------------------


def _own_envelope(wire: bytes) -> tuple[str, int, str]:
    try:
        parsed = json.loads(wire)
        payload = parsed["payload"]
        sender, seq, kind = payload["sender"], payload["seq"], payload["type"]
    except (ValueError, TypeError, KeyError) as exc:
        raise ReceiptError("the given bytes are not an envelope") from exc
    if not isinstance(sender, str) or isinstance(seq, bool) or not isinstance(seq, int):
        raise ReceiptError("the given bytes are not an envelope")
    return sender, seq, str(kind)


def verify_receipt(
    receipt: Receipt,
    my_envelope_wire: bytes,
    *,
    trusted_root: bytes | AuditRoot | None = None,
    anchored_payload: bytes | None = None,
) -> VerifiedReceipt:
    """Check that ``receipt`` proves the grid logged ``my_envelope_wire`` unaltered.

    ``my_envelope_wire`` is the household's own copy of the request body it
    sent (``GridClient`` keeps recent ones). Checked, with no server:

    1. the entry is the envelope's (kind ``envelope``, ref ``sender/seq`` of
       the payload) and its chain hash is recomputed from *these* bytes;
    2. the Merkle path leads from that entry to the receipt's root, at the
       entry's position in the root's range;
    3. the root's own log entry hash matches its fields;
    4. optionally, the root equals ``trusted_root`` (from the grid's public
       roots list kept earlier, or another household's copy);
    5. when the root is anchored: its path into the anchored batch, and that
       the anchored bytes name that batch; with ``anchored_payload`` (the
       bytes read from the chain, e.g. by :func:`..ledger.iota.notarization.
       read_anchored_payload`) also that the chain holds exactly them.

    Returns a :class:`VerifiedReceipt`; raises :class:`ReceiptPending` when
    the interval is not closed yet and :class:`ReceiptError` otherwise.
    """
    entry = receipt.entry
    envelope_type = _check_entry_holds_my_bytes(entry, my_envelope_wire)
    if receipt.state == "pending" or receipt.root is None or receipt.proof is None:
        raise ReceiptPending(f"entry {entry.seq} is logged; its interval is not closed yet")
    root = receipt.root
    _check_path_to_root(entry, root, receipt.proof)
    _check_root_entry(root)
    if trusted_root is not None:
        _check_trusted_root(root, trusted_root)
    anchor_checked = _check_root_anchor(root, anchored_payload)
    anchor = root.anchor
    return VerifiedReceipt(
        entry.seq,
        entry.ref,
        envelope_type,
        root.seq,
        root.root,
        root.interval_from,
        root.interval_to,
        anchor is not None,
        None if anchor is None else anchor.digest,
        anchor_checked,
    )


def _check_entry_holds_my_bytes(entry: LoggedEntry, my_envelope_wire: bytes) -> str:
    """Check 1: the entry is this envelope's, hashed from the household's own bytes.

    The chain hash is recomputed from *these* bytes rather than trusted from
    the receipt, so a grid that logged anything else cannot produce a match.
    Returns the envelope's payload type.
    """
    sender, seq, envelope_type = _own_envelope(my_envelope_wire)
    expected_ref = f"{sender}/{seq}"
    if entry.kind != "envelope" or entry.ref != expected_ref:
        raise ReceiptError(
            f"the receipt is for {entry.kind} {entry.ref!r}, not envelope {expected_ref!r}"
        )
    digest = body_hash(my_envelope_wire)
    if digest != entry.body_hash:
        raise ReceiptError("the grid logged different bytes than the ones given")
    computed = entry_hash(entry.prev_hash, entry.seq, entry.kind, entry.ref, digest)
    if computed != entry.hash:
        raise ReceiptError("the entry's chain hash does not match its fields")
    return envelope_type


def _check_path_to_root(entry: LoggedEntry, root: AuditRoot, proof: InclusionProof) -> None:
    """Check 2: the Merkle path leads from the entry to the root, from the entry's own place.

    The position is pinned to the entry's seq within the root's range, so a
    valid path for some *other* leaf of the same tree does not pass.
    """
    if not root.first_seq <= entry.seq <= root.last_seq:
        raise ReceiptError(f"entry {entry.seq} is outside root {root.seq}'s range")
    if proof.leaf_index != entry.seq - root.first_seq or proof.tree_size != root.size:
        raise ReceiptError("the proof's position does not match the entry and the root's range")
    reached = root_from_path(leaf_hash(entry.hash), proof.leaf_index, proof.tree_size, proof.path)
    if reached != root.root:
        raise ReceiptError("the Merkle path does not lead to the root")


def _check_root_entry(root: AuditRoot) -> None:
    """Check 3: the root's own log entry commits to its fields (so it sits in the chain)."""
    if root.computed_entry_hash() != root.entry_hash:
        raise ReceiptError("the root's log entry hash does not match its fields")


def _check_trusted_root(root: AuditRoot, trusted_root: bytes | AuditRoot) -> None:
    """Check 4: the root equals a copy the household trusts (kept earlier, or a neighbour's).

    A whole :class:`AuditRoot` also pins which root it is, not only its hash.
    """
    if isinstance(trusted_root, AuditRoot):
        if trusted_root.seq != root.seq:
            raise ReceiptError(f"the trusted root is root {trusted_root.seq}, not {root.seq}")
        expected = trusted_root.root
    else:
        expected = trusted_root
    if expected != root.root:
        raise ReceiptError("the root differs from the trusted copy")


def _check_root_anchor(root: AuditRoot, anchored_payload: bytes | None) -> bool:
    """Check 5: an anchored root is in its anchored batch; given chain bytes must be the anchor's.

    Returns whether the anchored bytes themselves were checked (only when the
    caller read them from the chain). Bytes given for an unanchored root are
    refused rather than ignored: the caller believes in an anchor that the
    receipt does not have.
    """
    anchor = root.anchor
    if anchor is None:
        if anchored_payload is not None:
            raise ReceiptError("an anchored payload was given, but the root is not anchored")
        return False
    check_anchor(root, anchor)
    if anchored_payload is None:
        return False
    if anchored_payload != anchor.payload:
        raise ReceiptError("the chain holds other bytes than the receipt's anchor")
    return True


def check_anchor(root: AuditRoot, anchor: AnchorRef) -> None:
    """Check that ``anchor`` really commits to ``root`` (its path into the batch, the payload)."""
    if not anchor.first_root_seq <= root.seq <= anchor.last_root_seq:
        raise ReceiptError(f"root {root.seq} is outside the anchored batch")
    batch_root = root_from_path(
        root.batch_leaf(), anchor.batch_index, anchor.batch_size, anchor.batch_path
    )
    if batch_root != anchor.batch_root:
        raise ReceiptError("the root is not in the anchored batch")
    anchored_root, anchored_seq, _chain = parse_anchor_payload(anchor.payload)
    if anchored_root != batch_root or anchored_seq != anchor.last_root_seq:
        raise ReceiptError("the anchored bytes name another batch")


__all__ = [
    "EMPTY_ROOT",
    "GENESIS_HASH",
    "AnchorRef",
    "AuditRoot",
    "InclusionProof",
    "LoggedEntry",
    "Receipt",
    "ReceiptError",
    "ReceiptPending",
    "VerifiedReceipt",
    "anchor_payload",
    "batch_leaf_data",
    "body_hash",
    "check_anchor",
    "entry_hash",
    "leaf_hash",
    "node_hash",
    "parse_anchor_payload",
    "root_from_path",
    "verify_receipt",
]
