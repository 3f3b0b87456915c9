"""The p2p_energy wire protocol, version 1: the one definition of every message.

Every participant write is a signed *envelope*::

    {"payload": {...}, "public_key": "<base64, 32 bytes>", "signature": "<base64, 64 bytes>"}

The signature is Ed25519 over the RFC 8785 canonical JSON of ``payload``.
Every payload carries ``type``, ``grid`` (the grid's id), ``sender`` (the
address of ``public_key``), ``seq`` (strictly increasing per key) and ``ts``
(UTC, within ``MAX_CLOCK_SKEW_SECONDS`` of the grid's clock). The grid stores
envelopes byte for byte as received, so anyone can verify them later.

This module builds, signs, parses and validates envelopes and payloads. The
grid server validates with exactly these functions, so a household and the
grid can never disagree about what a message means. Validation errors name
the offending field with a path such as ``payload.readings[3].energy_wh``.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, Final, Literal, Self

import orjson
import rfc8785

from .crypto import (
    PUBLIC_KEY_BYTES,
    SIGNATURE_BYTES,
    CryptoError,
    KeyPair,
    address_from_public_key,
    b64decode_exact,
    b64encode,
    is_address,
    public_key_problem,
    verify,
)
from .units import UnitError, format_utc, parse_price, parse_utc

PROTOCOL_VERSION: Final = 1
API_PREFIX: Final = "/api/v1"
MAX_CLOCK_SKEW_SECONDS: Final = 300
MAX_SEQ: Final = 2**53 - 1  # the largest integer every JSON reader keeps exact
MAX_ENERGY_WH: Final = 10**12
MAX_BODY_BYTES: Final = 1_048_576
# A day of 1-minute readings for one source (or of 15-minute readings for 15):
# a household catching up after a day offline sends one envelope per day and
# source at most, and what the grid canonicalises and verifies stays small (~120 kB).
MAX_READINGS_PER_ENVELOPE: Final = 1_440
MAX_ORDERS_PER_ENVELOPE: Final = 200
MAX_ASSETS: Final = 100
MAX_NAME_LENGTH: Final = 64
MAX_ID_LENGTH: Final = 64


# --- errors -----------------------------------------------------------------


class ErrorCode(StrEnum):
    """Stable, documented error codes returned in ``{"error": {"code": ...}}``."""

    MALFORMED = "malformed"
    INVALID_FIELD = "invalid_field"
    BAD_SIGNATURE = "bad_signature"
    KEY_MISMATCH = "key_mismatch"
    WRONG_GRID = "wrong_grid"
    STALE_TIMESTAMP = "stale_timestamp"
    REPLAY = "replay"
    UNAUTHENTICATED = "unauthenticated"
    NOT_MEMBER = "not_member"
    SUSPENDED = "suspended"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    INVITATION_UNKNOWN = "invitation_unknown"
    INVITATION_USED = "invitation_used"
    INVITATION_EXPIRED = "invitation_expired"
    INVITATION_REVOKED = "invitation_revoked"
    ALREADY_REGISTERED = "already_registered"
    UNKNOWN_ASSET = "unknown_asset"
    READING_CONFLICT = "reading_conflict"
    WINDOW_CLOSED = "window_closed"
    GATE_CLOSED = "gate_closed"
    BEYOND_HORIZON = "beyond_horizon"
    NO_SOURCES = "no_sources"
    OVER_CAPACITY = "over_capacity"
    ASSET_NOT_APPROVED = "asset_not_approved"
    PAYMENT_INVALID = "payment_invalid"
    PAYMENT_REUSED = "payment_reused"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    PAYMENT_PENDING = "payment_pending"
    OVERDUE = "overdue"
    TOO_LARGE = "too_large"
    BODY_TIMEOUT = "body_timeout"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"


# HTTP status and a one-line meaning for each code; the grid's OpenAPI
# document and docs/developers/error-codes.md are generated from this table.
ERRORS: Final[dict[ErrorCode, tuple[int, str]]] = {
    ErrorCode.MALFORMED: (400, "The body is not a JSON object of the expected shape."),
    ErrorCode.INVALID_FIELD: (422, "A field has a wrong type or a value out of range."),
    ErrorCode.BAD_SIGNATURE: (401, "The signature does not verify for this payload and key."),
    ErrorCode.KEY_MISMATCH: (401, "payload.sender is not the address of public_key."),
    ErrorCode.WRONG_GRID: (403, "payload.grid names another grid."),
    ErrorCode.STALE_TIMESTAMP: (422, "payload.ts is too far from the grid's clock."),
    ErrorCode.REPLAY: (409, "payload.seq is not above the last sequence accepted for this key."),
    ErrorCode.UNAUTHENTICATED: (401, "A read needs a valid session token."),
    ErrorCode.NOT_MEMBER: (403, "The key is not a member of this grid."),
    ErrorCode.SUSPENDED: (403, "The participant is suspended or removed by the operator."),
    ErrorCode.FORBIDDEN: (403, "The participant may not do this (role, or another's data)."),
    ErrorCode.NOT_FOUND: (404, "No such object."),
    ErrorCode.INVITATION_UNKNOWN: (404, "No invitation has this code."),
    ErrorCode.INVITATION_USED: (409, "The invitation has already been used."),
    ErrorCode.INVITATION_EXPIRED: (409, "The invitation has expired."),
    ErrorCode.INVITATION_REVOKED: (409, "The operator revoked the invitation."),
    ErrorCode.ALREADY_REGISTERED: (409, "This key is already a member of the grid."),
    ErrorCode.UNKNOWN_ASSET: (422, "A reading names an asset not declared at that time."),
    ErrorCode.READING_CONFLICT: (
        409,
        "A different value is already recorded; send it with correction=true to replace it.",
    ),
    ErrorCode.WINDOW_CLOSED: (409, "The settlement window for that interval has closed."),
    ErrorCode.GATE_CLOSED: (409, "Gate closure for that interval has passed."),
    ErrorCode.BEYOND_HORIZON: (422, "The interval is further ahead than the grid accepts."),
    ErrorCode.NO_SOURCES: (403, "Sell orders need at least one declared source."),
    ErrorCode.OVER_CAPACITY: (422, "More energy than the declared power can deliver."),
    ErrorCode.ASSET_NOT_APPROVED: (
        403,
        "The asset is declared above what the grid approves without the operator and waits "
        "for the operator's approval, or the operator refused it; its readings and orders are "
        "refused until it is approved (field and message name the asset and the limit).",
    ),
    ErrorCode.PAYMENT_INVALID: (422, "The payment does not match the statement or the ledger."),
    ErrorCode.PAYMENT_REUSED: (409, "This transaction already settled a statement."),
    ErrorCode.INSUFFICIENT_FUNDS: (409, "The sender's balance does not cover the transfer."),
    ErrorCode.PAYMENT_PENDING: (
        409,
        "The ledger does not show the transaction as final yet (or cannot be reached); "
        "send the payment again later.",
    ),
    ErrorCode.OVERDUE: (
        403,
        "Buy orders are refused while the participant has overdue statements "
        "(it buys at the retail price meanwhile).",
    ),
    ErrorCode.TOO_LARGE: (413, "The body is larger than the grid accepts."),
    ErrorCode.BODY_TIMEOUT: (408, "The body did not arrive in time; send it again."),
    ErrorCode.RATE_LIMITED: (429, "Too many requests from this key or address; retry later."),
    ErrorCode.UNAVAILABLE: (503, "The grid is starting or shutting down; retry later."),
}


class ProtocolError(Exception):
    """A message was refused; ``code`` and ``field`` are machine-readable."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        field: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        # Optional machine-readable extras, e.g. ``{"last_seq": n}`` with REPLAY
        # (only ever sent to the holder of the key, whose signature verified).
        self.details = details
        # The code as the grid wrote it: a newer grid may send codes this
        # client does not know (``code`` is then MALFORMED).
        self.wire_code = str(code)

    @property
    def status(self) -> int:
        return ERRORS[self.code][0]

    def to_wire(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "code": str(self.code),
            "field": self.field,
            "message": self.message,
        }
        if self.details:
            error["details"] = self.details
        return {"error": error}

    @classmethod
    def from_wire(cls, body: object, status: int | None = None) -> ProtocolError:
        """Rebuild an error from a grid response body (for clients)."""
        try:
            err = body["error"]  # type: ignore[index]
            wire_code = str(err["code"])
            known = wire_code in ErrorCode._value2member_map_
            details = err.get("details")
            error = cls(
                ErrorCode(wire_code) if known else ErrorCode.MALFORMED,
                str(err.get("message", "")),
                err.get("field"),
                details if isinstance(details, dict) else None,
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            return cls(ErrorCode.MALFORMED, f"unexpected error response (HTTP {status}): {body!r}")
        error.wire_code = wire_code
        return error

    def __repr__(self) -> str:
        return f"ProtocolError({self.code}, {self.message!r}, field={self.field!r})"


def invalid(path: str, reason: str, code: ErrorCode = ErrorCode.INVALID_FIELD) -> ProtocolError:
    return ProtocolError(code, f"{path}: {reason}", path)


# --- field validation -------------------------------------------------------


def _obj(value: object, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid(path, "must be a JSON object")
    return value


def _get(obj: dict[str, Any], key: str, path: str) -> Any:
    if key not in obj:
        raise invalid(f"{path}.{key}", "is required")
    return obj[key]


def _no_extra(obj: dict[str, Any], allowed: frozenset[str], path: str) -> None:
    extra = sorted(set(obj) - allowed)
    if extra:
        raise invalid(f"{path}.{extra[0]}", "is not a field of this message")


def check_int(value: object, path: str, lo: int, hi: int) -> int:
    # bool is an int in Python but never in our protocol; floats (even 3.0) are refused.
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(path, "must be an integer")
    if not lo <= value <= hi:
        raise invalid(path, f"must be between {lo} and {hi}, not {value}")
    return value


def check_bool(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise invalid(path, "must be true or false")
    return value


# One regex, not a loop over the characters: every envelope has several ids, and
# ``audit verify`` opens millions of them again.
_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")


def check_id(value: object, path: str) -> str:
    """Client-chosen identifiers: 1-64 of ``A-Z a-z 0-9 . _ : -``, starting alphanumeric."""
    if not isinstance(value, str):
        raise invalid(path, "must be a string")
    if len(value) > MAX_ID_LENGTH or _ID.fullmatch(value) is None:
        raise invalid(
            path, f"must be 1-{MAX_ID_LENGTH} characters of A-Z, a-z, 0-9, '.', '_', ':', '-'"
        )
    return value


def check_visible_text(value: str, path: str) -> str:
    """Text people read: NFC-normalised, without control, format or bidi characters.

    Names and ledger memos share it: an invisible character would let two
    strings look alike on a statement while differing on the wire.
    """
    if unicodedata.normalize("NFC", value) != value:
        raise invalid(path, "must be NFC-normalised Unicode")
    for ch in value:
        if unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}:
            raise invalid(path, f"contains the invisible or control character U+{ord(ch):04X}")
    return value


def check_name(value: object, path: str) -> str:
    """Human names: 1-64 characters of visible text, not padded with whitespace."""
    if not isinstance(value, str):
        raise invalid(path, "must be a string")
    if not 0 < len(value) <= MAX_NAME_LENGTH:
        raise invalid(path, f"must have 1-{MAX_NAME_LENGTH} characters")
    if value != value.strip():
        raise invalid(path, "must not start or end with whitespace")
    return check_visible_text(value, path)


def check_price(value: object, path: str) -> int:
    try:
        return parse_price(value)
    except UnitError as exc:
        raise invalid(path, str(exc)) from exc


def check_time(value: object, path: str) -> datetime:
    try:
        return parse_utc(value)
    except UnitError as exc:
        raise invalid(path, str(exc)) from exc


def check_list(value: object, path: str, max_items: int) -> list[Any]:
    if not isinstance(value, list):
        raise invalid(path, "must be a list")
    if len(value) > max_items:
        raise invalid(path, f"has {len(value)} items; at most {max_items} are accepted")
    return value


def check_unique(keys: list[Any], path: str, what: str) -> None:
    seen: set[Any] = set()
    for index, key in enumerate(keys):
        if key in seen:
            raise invalid(f"{path}[{index}]", f"repeats the {what} {key!r}")
        seen.add(key)


# --- payloads ---------------------------------------------------------------


class SourceKind(StrEnum):
    SOLAR = "solar"
    WIND = "wind"
    BATTERY = "battery"
    OTHER = "other"


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


class LedgerKind(StrEnum):
    LOCAL = "local"
    IOTA = "iota"


HEADER_FIELDS: Final = frozenset({"type", "grid", "sender", "seq", "ts"})


@dataclass(frozen=True, slots=True)
class Header:
    """The fields every payload carries."""

    grid: str
    sender: str
    seq: int
    ts: datetime

    def to_wire(self) -> dict[str, Any]:
        return {
            "grid": self.grid,
            "sender": self.sender,
            "seq": self.seq,
            "ts": format_utc(self.ts),
        }

    @classmethod
    def from_wire(cls, payload: dict[str, Any]) -> Header:
        path = "payload"
        grid = check_id(_get(payload, "grid", path), f"{path}.grid")
        sender = _get(payload, "sender", path)
        if not is_address(sender):
            raise invalid(f"{path}.sender", "must be an address: 0x and 64 lowercase hex digits")
        seq = check_int(_get(payload, "seq", path), f"{path}.seq", 1, MAX_SEQ)
        ts = check_time(_get(payload, "ts", path), f"{path}.ts")
        return cls(grid, sender, seq, ts)


class Body:
    """Base of payload bodies; ``TYPE`` is the payload's ``type`` string."""

    TYPE: ClassVar[str]
    FIELDS: ClassVar[frozenset[str]]

    def body_to_wire(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def body_from_wire(cls, payload: dict[str, Any]) -> Self:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Join(Body):
    """Become a member with a one-time invitation from the operator."""

    TYPE: ClassVar[str] = "join"
    FIELDS: ClassVar[frozenset[str]] = frozenset({"invitation", "name"})
    invitation: str
    name: str

    def body_to_wire(self) -> dict[str, Any]:
        return {"invitation": self.invitation, "name": self.name}

    @classmethod
    def body_from_wire(cls, payload: dict[str, Any]) -> Join:
        code = _get(payload, "invitation", "payload")
        if not isinstance(code, str) or not 0 < len(code) <= 128 or not code.isascii():
            raise invalid("payload.invitation", "must be the invitation code the operator issued")
        return cls(code, check_name(_get(payload, "name", "payload"), "payload.name"))


@dataclass(frozen=True, slots=True)
class OpenSession(Body):
    """Ask for a session token that authenticates reads and the live stream."""

    TYPE: ClassVar[str] = "session"
    FIELDS: ClassVar[frozenset[str]] = frozenset()

    def body_to_wire(self) -> dict[str, Any]:
        return {}

    @classmethod
    def body_from_wire(cls, payload: dict[str, Any]) -> OpenSession:
        return cls()


@dataclass(frozen=True, slots=True)
class SourceDecl:
    """A source the household meters (what it produces or discharges).

    A battery may say how the grid can check it (both optional, so older
    households stay valid): ``charge_meter``, the id of the consumer meter in
    the same declaration that measures its charging, and
    ``usable_capacity_wh``, the energy it can give out from full. Without
    them the grid checks it against a documented fallback bound
    (docs/operators/meters.md).
    """

    id: str
    name: str
    kind: SourceKind
    rated_power_w: int
    charge_meter: str | None = None
    usable_capacity_wh: int | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "kind": str(self.kind),
            "rated_power_w": self.rated_power_w,
        }
        if self.charge_meter is not None:
            out["charge_meter"] = self.charge_meter
        if self.usable_capacity_wh is not None:
            out["usable_capacity_wh"] = self.usable_capacity_wh
        return out

    @classmethod
    def from_wire(cls, value: object, path: str) -> SourceDecl:
        obj = _obj(value, path)
        _no_extra(obj, _SOURCE_FIELDS, path)
        kind = _get(obj, "kind", path)
        if kind not in SourceKind.__members__.values():
            raise invalid(f"{path}.kind", f"must be one of {', '.join(SourceKind)}")
        charge_meter, capacity = obj.get("charge_meter"), obj.get("usable_capacity_wh")
        if kind != SourceKind.BATTERY:
            for name in ("charge_meter", "usable_capacity_wh"):
                if obj.get(name) is not None:
                    raise invalid(f"{path}.{name}", "is only for sources of kind battery")
        return cls(
            check_id(_get(obj, "id", path), f"{path}.id"),
            check_name(_get(obj, "name", path), f"{path}.name"),
            SourceKind(kind),
            check_int(_get(obj, "rated_power_w", path), f"{path}.rated_power_w", 1, 10**9),
            None if charge_meter is None else check_id(charge_meter, f"{path}.charge_meter"),
            None
            if capacity is None
            else check_int(capacity, f"{path}.usable_capacity_wh", 1, MAX_ENERGY_WH),
        )


_SOURCE_FIELDS: Final = frozenset(
    {"id", "name", "kind", "rated_power_w", "charge_meter", "usable_capacity_wh"}
)


@dataclass(frozen=True, slots=True)
class MeterDecl:
    id: str
    name: str
    rated_power_w: int | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "name": self.name}
        if self.rated_power_w is not None:
            out["rated_power_w"] = self.rated_power_w
        return out

    @classmethod
    def from_wire(cls, value: object, path: str) -> MeterDecl:
        obj = _obj(value, path)
        _no_extra(obj, frozenset({"id", "name", "rated_power_w"}), path)
        power = obj.get("rated_power_w")
        return cls(
            check_id(_get(obj, "id", path), f"{path}.id"),
            check_name(_get(obj, "name", path), f"{path}.name"),
            None if power is None else check_int(power, f"{path}.rated_power_w", 1, 10**9),
        )


@dataclass(frozen=True, slots=True)
class Assets(Body):
    """Declare the complete set of sources and consumer meters.

    Declarative: assets not listed are retired from now on, new ones start
    now, changed ones keep their history. Source and meter ids share one
    namespace per participant.
    """

    TYPE: ClassVar[str] = "assets"
    FIELDS: ClassVar[frozenset[str]] = frozenset({"sources", "meters"})
    sources: tuple[SourceDecl, ...] = ()
    meters: tuple[MeterDecl, ...] = ()

    def body_to_wire(self) -> dict[str, Any]:
        return {
            "sources": [s.to_wire() for s in self.sources],
            "meters": [m.to_wire() for m in self.meters],
        }

    @classmethod
    def body_from_wire(cls, payload: dict[str, Any]) -> Assets:
        sources = tuple(
            SourceDecl.from_wire(v, f"payload.sources[{i}]")
            for i, v in enumerate(
                check_list(_get(payload, "sources", "payload"), "payload.sources", MAX_ASSETS)
            )
        )
        meters = tuple(
            MeterDecl.from_wire(v, f"payload.meters[{i}]")
            for i, v in enumerate(
                check_list(_get(payload, "meters", "payload"), "payload.meters", MAX_ASSETS)
            )
        )
        ids = [a.id for a in sources] + [a.id for a in meters]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise invalid("payload.meters", f"asset id {dup!r} is used twice")
        _check_charge_meters(sources, {m.id for m in meters})
        return cls(sources, meters)


def _check_charge_meters(sources: tuple[SourceDecl, ...], meters: set[str]) -> None:
    """A battery's charge meter is a consumer meter of the same declaration, for it alone."""
    linked: dict[str, int] = {}
    for index, source in enumerate(sources):
        if source.charge_meter is None:
            continue
        path = f"payload.sources[{index}].charge_meter"
        if source.charge_meter not in meters:
            raise invalid(path, f"{source.charge_meter!r} is not a meter of this declaration")
        if source.charge_meter in linked:
            raise invalid(
                path,
                f"{source.charge_meter!r} already measures the charging of "
                f"payload.sources[{linked[source.charge_meter]}]",
            )
        linked[source.charge_meter] = index


@dataclass(frozen=True, slots=True)
class Reading:
    """Energy measured by one asset (source or consumer meter) in one interval."""

    interval: datetime
    asset: str
    energy_wh: int

    def to_wire(self) -> dict[str, Any]:
        return {
            "interval": format_utc(self.interval),
            "asset": self.asset,
            "energy_wh": self.energy_wh,
        }

    @classmethod
    def from_wire(cls, value: object, path: str) -> Reading:
        obj = _obj(value, path)
        _no_extra(obj, frozenset({"interval", "asset", "energy_wh"}), path)
        return cls(
            check_time(_get(obj, "interval", path), f"{path}.interval"),
            check_id(_get(obj, "asset", path), f"{path}.asset"),
            check_int(_get(obj, "energy_wh", path), f"{path}.energy_wh", 0, MAX_ENERGY_WH),
        )


@dataclass(frozen=True, slots=True)
class Readings(Body):
    """Meter readings, for one interval or many (after an outage)."""

    TYPE: ClassVar[str] = "readings"
    FIELDS: ClassVar[frozenset[str]] = frozenset({"readings", "correction"})
    readings: tuple[Reading, ...]
    correction: bool = False

    def body_to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"readings": [r.to_wire() for r in self.readings]}
        if self.correction:
            out["correction"] = True
        return out

    @classmethod
    def body_from_wire(cls, payload: dict[str, Any]) -> Readings:
        items = check_list(
            _get(payload, "readings", "payload"), "payload.readings", MAX_READINGS_PER_ENVELOPE
        )
        if not items:
            raise invalid("payload.readings", "must hold at least one reading")
        readings = tuple(
            Reading.from_wire(v, f"payload.readings[{i}]") for i, v in enumerate(items)
        )
        check_unique(
            [(r.interval, r.asset) for r in readings], "payload.readings", "interval and asset"
        )
        correction = check_bool(payload.get("correction", False), "payload.correction")
        return cls(readings, correction)


@dataclass(frozen=True, slots=True)
class OrderSpec:
    """One step of a participant's curve: buy or sell up to ``energy_wh`` at ``price``."""

    id: str
    side: Side
    energy_wh: int
    price: str  # decimal string per kWh, as signed

    @property
    def price_ticks(self) -> int:
        return parse_price(self.price)

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "side": str(self.side),
            "energy_wh": self.energy_wh,
            "price": self.price,
        }

    @classmethod
    def from_wire(cls, value: object, path: str) -> OrderSpec:
        obj = _obj(value, path)
        _no_extra(obj, frozenset({"id", "side", "energy_wh", "price"}), path)
        side = _get(obj, "side", path)
        if side not in ("buy", "sell"):
            raise invalid(f"{path}.side", "must be 'buy' or 'sell'")
        price = _get(obj, "price", path)
        check_price(price, f"{path}.price")
        return cls(
            check_id(_get(obj, "id", path), f"{path}.id"),
            Side(side),
            check_int(_get(obj, "energy_wh", path), f"{path}.energy_wh", 1, MAX_ENERGY_WH),
            price,
        )


@dataclass(frozen=True, slots=True)
class Orders(Body):
    """Place, replace and cancel orders for one delivery interval.

    ``cancel`` lists order ids to withdraw (all of the participant's orders
    in the interval when ``replace_all`` is true); then ``place`` adds
    orders, replacing any existing order with the same id.
    """

    TYPE: ClassVar[str] = "orders"
    FIELDS: ClassVar[frozenset[str]] = frozenset({"interval", "place", "cancel", "replace_all"})
    interval: datetime
    place: tuple[OrderSpec, ...] = ()
    cancel: tuple[str, ...] = ()
    replace_all: bool = False

    def body_to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "interval": format_utc(self.interval),
            "place": [o.to_wire() for o in self.place],
        }
        if self.cancel:
            out["cancel"] = list(self.cancel)
        if self.replace_all:
            out["replace_all"] = True
        return out

    @classmethod
    def body_from_wire(cls, payload: dict[str, Any]) -> Orders:
        interval = check_time(_get(payload, "interval", "payload"), "payload.interval")
        place = tuple(
            OrderSpec.from_wire(v, f"payload.place[{i}]")
            for i, v in enumerate(
                check_list(payload.get("place", []), "payload.place", MAX_ORDERS_PER_ENVELOPE)
            )
        )
        check_unique([o.id for o in place], "payload.place", "order id")
        cancel = tuple(
            check_id(v, f"payload.cancel[{i}]")
            for i, v in enumerate(
                check_list(payload.get("cancel", []), "payload.cancel", MAX_ORDERS_PER_ENVELOPE)
            )
        )
        replace_all = check_bool(payload.get("replace_all", False), "payload.replace_all")
        if not place and not cancel and not replace_all:
            raise invalid("payload.place", "nothing to place or cancel")
        return cls(interval, place, cancel, replace_all)


@dataclass(frozen=True, slots=True)
class Payment(Body):
    """Pay a statement.

    On the local ledger ``transfer`` is a transfer signed with the same key
    (see ``ledger.local``); with IOTA, ``tx`` is the digest of a transaction
    the participant already executed.
    """

    TYPE: ClassVar[str] = "payment"
    FIELDS: ClassVar[frozenset[str]] = frozenset({"statement", "ledger", "transfer", "tx"})
    statement: str
    ledger: LedgerKind
    transfer: dict[str, Any] | None = None
    tx: str | None = None

    def body_to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"statement": self.statement, "ledger": str(self.ledger)}
        if self.transfer is not None:
            out["transfer"] = self.transfer
        if self.tx is not None:
            out["tx"] = self.tx
        return out

    @classmethod
    def body_from_wire(cls, payload: dict[str, Any]) -> Payment:
        statement = check_id(_get(payload, "statement", "payload"), "payload.statement")
        ledger = _get(payload, "ledger", "payload")
        if ledger not in ("local", "iota"):
            raise invalid("payload.ledger", "must be 'local' or 'iota'")
        transfer = payload.get("transfer")
        tx = payload.get("tx")
        if ledger == "local":
            if tx is not None:
                raise invalid("payload.tx", "is only used with the iota ledger")
            transfer = _obj(transfer, "payload.transfer")
        else:
            if transfer is not None:
                raise invalid("payload.transfer", "is only used with the local ledger")
            if not isinstance(tx, str) or not 0 < len(tx) <= 100 or not tx.isascii():
                raise invalid("payload.tx", "must be the transaction digest")
        return cls(statement, LedgerKind(ledger), transfer, tx)


@dataclass(frozen=True, slots=True)
class Transfer(Body):
    """Move money on the grid's local ledger (not paying a statement).

    ``transfer`` is a transfer signed with the same key; its format is
    defined in ``ledger.local`` (``SignedTransfer``).
    """

    TYPE: ClassVar[str] = "transfer"
    FIELDS: ClassVar[frozenset[str]] = frozenset({"transfer"})
    transfer: dict[str, Any]

    def body_to_wire(self) -> dict[str, Any]:
        return {"transfer": self.transfer}

    @classmethod
    def body_from_wire(cls, payload: dict[str, Any]) -> Transfer:
        return cls(_obj(_get(payload, "transfer", "payload"), "payload.transfer"))


BODY_TYPES: Final[dict[str, type[Body]]] = {
    cls.TYPE: cls for cls in (Join, OpenSession, Assets, Readings, Orders, Payment, Transfer)
}


@dataclass(frozen=True, slots=True)
class Payload:
    header: Header
    body: Body

    @property
    def type(self) -> str:
        return self.body.TYPE

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.body.TYPE, **self.header.to_wire(), **self.body.body_to_wire()}

    @classmethod
    def from_wire(cls, value: object) -> Payload:
        payload = _obj(value, "payload")
        kind = _get(payload, "type", "payload")
        body_type = BODY_TYPES.get(kind) if isinstance(kind, str) else None
        if body_type is None:
            raise invalid("payload.type", f"must be one of {', '.join(sorted(BODY_TYPES))}")
        _no_extra(payload, HEADER_FIELDS | body_type.FIELDS, "payload")
        return cls(Header.from_wire(payload), body_type.body_from_wire(payload))


# --- envelopes --------------------------------------------------------------


# In compact JSON a number follows '":' (the end of its key), "[" or ","; one
# with a fraction, an exponent or 16+ digits (maybe beyond 2^53) is not
# written alike by orjson and RFC 8785. Inside a string '":' needs an escaped
# quote (the slow path anyway), so times like "10:47:01.000Z" stay fast; a
# string that merely looks like a number after "," only costs the slow path.
# The prefix is matched once for both kinds of number: twice as fast as an
# alternation of the two whole patterns (a 64-hex-digit sender is long).
_UNSAFE_NUMBER: Final = re.compile(rb'(?:":|[\[,])-?(?:[0-9]{16}|[0-9]+[.eE])')
# orjson writes datetimes and dataclasses itself; RFC 8785 refuses them, and so must we.
_ORJSON_PLAIN: Final = (
    orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
)


def canonical_json(value: object) -> bytes:
    """RFC 8785 (JCS) canonical JSON: the exact bytes that are signed.

    orjson with sorted keys writes the same bytes as RFC 8785 for a JSON
    object or array that is plain ASCII without escapes, fractions, exponents
    or integers beyond 15 digits — true of everything households send — and
    is much faster; anything else takes the RFC 8785 implementation. The fast
    path changes only speed (a test checks both agree on every shape the
    protocol has, and on the boundary cases).
    """
    if isinstance(value, dict | list):
        try:
            fast = orjson.dumps(value, option=_ORJSON_PLAIN)
        except TypeError:
            fast = None  # not plain JSON: RFC 8785 says why below
        if (
            fast is not None
            and fast.isascii()
            and b"\\" not in fast
            and _UNSAFE_NUMBER.search(fast) is None
        ):
            return fast
    try:
        return rfc8785.dumps(value)  # type: ignore[arg-type]
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise ProtocolError(
            ErrorCode.MALFORMED, f"payload cannot be canonicalised: {exc}", "payload"
        ) from exc


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        repeated = ""
        for key, _ in pairs:
            if key in seen:
                repeated = key
                break
            seen.add(key)
        raise ProtocolError(
            ErrorCode.MALFORMED,
            f"body: the object key {repeated!r} appears twice (I-JSON, RFC 7493, "
            "forbids duplicate keys)",
            "body",
        )
    return obj


def _no_constant(name: str) -> Any:
    raise ProtocolError(ErrorCode.MALFORMED, f"body: {name} is not JSON", "body")


_STRICT_JSON: Final = json.JSONDecoder(
    object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constant
)


def parse_json(raw: bytes) -> Any:
    """Strict JSON (I-JSON, RFC 7493): UTF-8, no duplicate object keys, no NaN or Infinity.

    A duplicate key is read one way by one parser and another way by the next;
    a signed message must mean one thing to everyone who checks it later.
    """
    try:
        return _STRICT_JSON.decode(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ProtocolError(ErrorCode.MALFORMED, "body: is not UTF-8", "body") from exc
    except RecursionError as exc:
        raise ProtocolError(ErrorCode.MALFORMED, "body: is nested too deeply", "body") from exc
    except ValueError as exc:  # json.JSONDecodeError
        raise ProtocolError(ErrorCode.MALFORMED, f"body: is not JSON: {exc}", "body") from exc


@dataclass(frozen=True, slots=True)
class Envelope:
    """A verified envelope: the parsed payload plus the exact wire form."""

    payload: Payload
    public_key: bytes
    signature: bytes
    wire: dict[str, Any] = field(compare=False)
    # The canonical payload bytes the signature was checked over, when known.
    signed: bytes | None = field(default=None, compare=False, repr=False)

    @property
    def sender(self) -> str:
        return self.payload.header.sender

    @property
    def signed_bytes(self) -> bytes:
        if self.signed is not None:
            return self.signed
        return canonical_json(self.wire["payload"])

    @property
    def identity(self) -> tuple[str, int]:
        """What makes an envelope the one it is: its signer and sequence number (with
        the signed payload, :attr:`payload_hash`, which names the grid). Not the
        signature bytes: another signer may pick another nonce for the same envelope."""
        return self.payload.header.sender, self.payload.header.seq

    @property
    def payload_hash(self) -> bytes:
        """SHA-256 of the signed payload: equal for a retry, whatever its signature bytes."""
        return hashlib.sha256(self.signed_bytes).digest()


def sign(
    keys: KeyPair, grid: str, seq: int, body: Body, ts: datetime | None = None
) -> dict[str, Any]:
    """Build the wire form of a signed envelope for ``body``."""
    header = Header(grid, keys.address, seq, ts or datetime.now(UTC).replace(microsecond=0))
    payload = Payload(header, body).to_wire()
    signature = keys.sign(canonical_json(payload))
    return {
        "payload": payload,
        "public_key": keys.public_key_b64,
        "signature": b64encode(signature),
    }


def parse_envelope(raw: bytes) -> Envelope:
    """:func:`open_envelope` of request (or stored) bytes, read as strict JSON."""
    return open_envelope(parse_json(raw))


def envelope_sender(value: object) -> str:
    """The address of an envelope's ``public_key``, read without any signature work.

    A receiver looks the key's membership up with it *before* it canonicalises
    and verifies anything, so an envelope from a key it does not know costs it
    no signature check. :func:`open_envelope` still checks everything.
    """
    wire = _obj(value, "envelope")
    if "public_key" not in wire:
        raise ProtocolError(ErrorCode.MALFORMED, "public_key: is required", "public_key")
    try:
        public_key = b64decode_exact(wire["public_key"], PUBLIC_KEY_BYTES, "public_key")
    except CryptoError as exc:
        raise invalid("public_key", str(exc)) from exc
    return address_from_public_key(public_key)


def open_envelope(value: object) -> Envelope:
    """Check an envelope's shape, signature and sender, and parse its payload.

    The one implementation, used by the grid at intake, by ``audit verify``
    on stored envelopes and by anyone checking an envelope later. Grid-level
    checks (grid id, sequence, clock skew, membership) are the receiver's:
    see :func:`check_freshness`.
    """
    wire = _obj(value, "envelope")
    try:
        _no_extra(wire, frozenset({"payload", "public_key", "signature"}), "envelope")
    except ProtocolError as exc:
        raise ProtocolError(ErrorCode.MALFORMED, exc.message, exc.field) from exc
    for key in ("payload", "public_key", "signature"):
        if key not in wire:
            raise ProtocolError(ErrorCode.MALFORMED, f"{key}: is required", key)
    try:
        public_key = b64decode_exact(wire["public_key"], PUBLIC_KEY_BYTES, "public_key")
    except CryptoError as exc:
        raise invalid("public_key", str(exc)) from exc
    problem = public_key_problem(public_key)
    if problem is not None:
        raise invalid("public_key", problem)
    try:
        signature = b64decode_exact(wire["signature"], SIGNATURE_BYTES, "signature")
    except CryptoError as exc:
        raise invalid("signature", str(exc)) from exc
    raw_payload = _obj(wire["payload"], "payload")
    message = canonical_json(raw_payload)
    if not verify(public_key, message, signature):
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
    return Envelope(payload, public_key, signature, wire, message)


def check_grid(claimed: str, grid: str) -> None:
    """``payload.grid`` must name the receiving grid (WRONG_GRID)."""
    if claimed != grid:
        raise ProtocolError(
            ErrorCode.WRONG_GRID, f"this is grid {grid!r}, not {claimed!r}", "payload.grid"
        )


def check_freshness(envelope: Envelope, grid: str, now: datetime) -> None:
    """Grid id and clock-skew checks every receiver applies."""
    header = envelope.payload.header
    check_grid(header.grid, grid)
    skew = abs((now - header.ts).total_seconds())
    if skew > MAX_CLOCK_SKEW_SECONDS:
        raise ProtocolError(
            ErrorCode.STALE_TIMESTAMP,
            f"payload.ts is {skew:.0f} s from the grid's clock; at most "
            f"{MAX_CLOCK_SKEW_SECONDS} s are accepted",
            "payload.ts",
        )


Role = Literal["consumer", "producer", "prosumer"]
ROLES: Final[tuple[Role, ...]] = ("consumer", "producer", "prosumer")
