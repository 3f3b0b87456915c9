"""Checking stored envelopes again, fast enough for a whole year's log (worker side).

:func:`open_stored_envelope` is :func:`p2p_energy_client.protocol.open_envelope`
with one shortcut: the canonical JSON that was signed is produced by orjson
with sorted keys whenever that provably equals RFC 8785 (only ASCII, no
escapes, no fractions or exponents, integers of at most 15 digits; true of
every payload households send), and by the RFC 8785 implementation otherwise. The shortcut only
changes speed: a signature that verifies over bytes verifies over the same
bytes, and anything outside the safe subset takes the reference path. A
test checks both paths agree.

:func:`check_envelopes` runs in worker processes (``p2p-grid audit verify``
uses both cores): it verifies each envelope's signature, key and payload
rules, and that it names this grid.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final

import orjson

from p2p_energy_client.crypto import (
    PUBLIC_KEY_BYTES,
    SIGNATURE_BYTES,
    CryptoError,
    address_from_public_key,
    b64decode_exact,
    verify,
)
from p2p_energy_client.protocol import (
    Envelope,
    ErrorCode,
    Payload,
    ProtocolError,
    canonical_json,
    invalid,
)

# In compact JSON a number follows ":", "[" or ","; one with a fraction, an
# exponent or 16+ digits (beyond 2^53 maybe) is not written alike by orjson
# and RFC 8785. A string that merely looks like that only costs the slow path.
_UNSAFE_NUMBER: Final = re.compile(rb"[:\[,]-?[0-9]+[.eE]|[:\[,]-?[0-9]{16}")


def signed_bytes(payload: dict[str, Any]) -> bytes:
    """The RFC 8785 canonical JSON of ``payload`` (fast when it is plain ASCII)."""
    fast = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    if fast.isascii() and b"\\" not in fast and _UNSAFE_NUMBER.search(fast) is None:
        return fast
    return canonical_json(payload)


def open_stored_envelope(raw: bytes) -> Envelope:
    """Parse and check stored envelope bytes exactly as ``protocol.open_envelope`` does."""
    try:
        wire = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(ErrorCode.MALFORMED, "the stored body is not JSON", None) from exc
    if not isinstance(wire, dict):
        raise invalid("envelope", "must be a JSON object")
    extra = sorted(set(wire) - {"payload", "public_key", "signature"})
    if extra:
        raise ProtocolError(ErrorCode.MALFORMED, f"envelope.{extra[0]}: unexpected", extra[0])
    for key in ("payload", "public_key", "signature"):
        if key not in wire:
            raise ProtocolError(ErrorCode.MALFORMED, f"{key}: is required", key)
    try:
        public_key = b64decode_exact(wire["public_key"], PUBLIC_KEY_BYTES, "public_key")
        signature = b64decode_exact(wire["signature"], SIGNATURE_BYTES, "signature")
    except CryptoError as exc:
        raise invalid("public_key", str(exc)) from exc
    raw_payload = wire["payload"]
    if not isinstance(raw_payload, dict):
        raise invalid("payload", "must be a JSON object")
    if not verify(public_key, signed_bytes(raw_payload), signature):
        raise ProtocolError(
            ErrorCode.BAD_SIGNATURE,
            "signature does not verify over the canonical JSON of payload",
            "signature",
        )
    payload = Payload.from_wire(raw_payload)
    if payload.header.sender != address_from_public_key(public_key):
        raise ProtocolError(
            ErrorCode.KEY_MISMATCH,
            "payload.sender is not the address of public_key",
            "payload.sender",
        )
    return Envelope(payload, public_key, signature, wire)


def check_envelopes(grid: str, items: Sequence[tuple[int, bytes]]) -> list[tuple[int, str]]:
    """``(log seq, problem)`` for every stored envelope in ``items`` that does not check out."""
    problems: list[tuple[int, str]] = []
    for seq, raw in items:
        try:
            envelope = open_stored_envelope(raw)
        except ProtocolError as exc:
            problems.append((seq, f"{exc.code}: {exc.message}"))
            continue
        if envelope.payload.header.grid != grid:
            problems.append((seq, f"the envelope is for grid {envelope.payload.header.grid!r}"))
    return problems


__all__ = ["check_envelopes", "open_stored_envelope", "signed_bytes"]
