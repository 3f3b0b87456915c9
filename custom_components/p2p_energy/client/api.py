"""The typed HTTP client a household uses to talk to its grid, and the response shapes.

Every response body the grid server sends is defined here once, as a frozen
dataclass with ``to_wire()`` (the server builds its JSON with it) and
``from_wire()`` (the client parses with it), so the two cannot drift apart.

:class:`GridClient` signs every write (see :mod:`.protocol`), hands out
sequence numbers that survive restarts (:mod:`.sequence`), serialises writes
with a lock, and retries a write after a timeout or a lost connection by
sending the *identical* envelope again: the grid answers an exact duplicate
with the original result, so a retry can never count anything twice. Reads
use a session token obtained lazily with a signed ``session`` envelope and
renewed on expiry or 401.

Errors: a refusal by the grid raises :class:`~.protocol.ProtocolError` (code,
field, message from the body); a grid that cannot be reached, times out or
answers 5xx raises :class:`GridUnavailable`.

Only aiohttp and this package are imported (no Home Assistant, no server).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Self
from urllib.parse import quote

import aiohttp

from .crypto import KeyPair
from .protocol import (
    API_PREFIX,
    Assets,
    Body,
    ErrorCode,
    Join,
    LedgerKind,
    MeterDecl,
    OpenSession,
    Orders,
    OrderSpec,
    Payment,
    ProtocolError,
    Reading,
    Readings,
    SourceDecl,
    Transfer,
    sign,
)
from .receipts import AuditRoot, Receipt, SentEnvelope, VerifiedReceipt, verify_receipt
from .sequence import SequenceCounter
from .units import format_utc, parse_utc

_LOGGER = logging.getLogger(__name__)

DEFAULT_TIMEOUT: Final = 10.0
DEFAULT_RETRIES: Final = 3
# Renew a session token this long before the grid says it expires.
SESSION_RENEW_MARGIN_SECONDS: Final = 30


class GridUnavailable(Exception):
    """The grid could not be reached, timed out, or failed (5xx); try again later."""


# --- small parsing helpers ----------------------------------------------------


def _t(value: Any) -> datetime:
    return parse_utc(value)


# --- response shapes ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PriceStep:
    """Utility prices (decimal strings per kWh) from ``effective_from`` on."""

    effective_from: datetime
    retail: str
    feed_in: str

    def to_wire(self) -> dict[str, Any]:
        return {
            "effective_from": format_utc(self.effective_from),
            "retail": self.retail,
            "feed_in": self.feed_in,
        }

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Self:
        return cls(_t(d["effective_from"]), str(d["retail"]), str(d["feed_in"]))


@dataclass(frozen=True, slots=True)
class ZoneInfo:
    """A zone of the grid's tree; ``fee`` applies to energy crossing to/from ``parent``."""

    id: str
    parent: str | None
    fee: str
    capacity_up_wh: int | None
    capacity_down_wh: int | None
    name: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "parent": self.parent,
            "fee": self.fee,
            "capacity_up_wh": self.capacity_up_wh,
            "capacity_down_wh": self.capacity_down_wh,
        }

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Self:
        return cls(
            d["id"],
            d.get("parent"),
            str(d.get("fee", "0")),
            d.get("capacity_up_wh"),
            d.get("capacity_down_wh"),
            d.get("name"),
        )


@dataclass(frozen=True, slots=True)
class GridInfo:
    """``GET /api/v1/grid``: what a household needs to know before joining."""

    grid: str
    name: str
    currency: str
    interval_minutes: int
    gate_closure_seconds: int
    settlement_window_seconds: int
    settlement_period_seconds: int
    order_horizon_seconds: int
    max_clock_skew_seconds: int
    prices: PriceStep  # in force now
    price_schedule: tuple[PriceStep, ...]
    zones: tuple[ZoneInfo, ...]
    ledger_kind: str
    ledger_address: str | None
    now: datetime  # the grid's clock (a demo grid may run faster than real time)
    protocol_version: int
    # IOTA only: the network the grid's ledger runs on, and a node households may use.
    ledger_network: str | None = None
    ledger_node_url: str | None = None

    def to_wire(self) -> dict[str, Any]:
        ledger: dict[str, Any] = {"kind": self.ledger_kind, "address": self.ledger_address}
        if self.ledger_network is not None:
            ledger["network"] = self.ledger_network
        if self.ledger_node_url is not None:
            ledger["node_url"] = self.ledger_node_url
        return {
            "grid": self.grid,
            "name": self.name,
            "currency": self.currency,
            "interval_minutes": self.interval_minutes,
            "gate_closure_seconds": self.gate_closure_seconds,
            "settlement_window_seconds": self.settlement_window_seconds,
            "settlement_period_seconds": self.settlement_period_seconds,
            "order_horizon_seconds": self.order_horizon_seconds,
            "max_clock_skew_seconds": self.max_clock_skew_seconds,
            "prices": self.prices.to_wire(),
            "price_schedule": [p.to_wire() for p in self.price_schedule],
            "zones": [z.to_wire() for z in self.zones],
            "ledger": ledger,
            "now": format_utc(self.now),
            "protocol_version": self.protocol_version,
        }

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Self:
        return cls(
            d["grid"],
            d["name"],
            d["currency"],
            int(d["interval_minutes"]),
            int(d["gate_closure_seconds"]),
            int(d["settlement_window_seconds"]),
            int(d["settlement_period_seconds"]),
            int(d["order_horizon_seconds"]),
            int(d["max_clock_skew_seconds"]),
            PriceStep.from_wire(d["prices"]),
            tuple(PriceStep.from_wire(p) for p in d.get("price_schedule", ())),
            tuple(ZoneInfo.from_wire(z) for z in d["zones"]),
            d["ledger"]["kind"],
            d["ledger"].get("address"),
            _t(d["now"]),
            int(d.get("protocol_version", 1)),
            d["ledger"].get("network"),
            d["ledger"].get("node_url"),
        )


@dataclass(frozen=True, slots=True)
class AssetsView:
    """A participant's current sources and consumer meters."""

    sources: tuple[SourceDecl, ...]
    meters: tuple[MeterDecl, ...]

    def to_wire(self) -> dict[str, Any]:
        return {
            "sources": [s.to_wire() for s in self.sources],
            "meters": [m.to_wire() for m in self.meters],
        }

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Self:
        return cls(
            tuple(SourceDecl.from_wire(s, "sources") for s in d.get("sources", ())),
            tuple(MeterDecl.from_wire(m, "meters") for m in d.get("meters", ())),
        )


@dataclass(frozen=True, slots=True)
class Participant:
    """A member of the grid as the grid sees it (``join``, ``me``)."""

    address: str
    name: str
    zone: str
    role: str
    status: str  # active, suspended, removed
    joined_at: datetime
    last_seq: int
    assets: AssetsView

    def to_wire(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "name": self.name,
            "zone": self.zone,
            "role": self.role,
            "status": self.status,
            "joined_at": format_utc(self.joined_at),
            "last_seq": self.last_seq,
            "assets": self.assets.to_wire(),
        }

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Self:
        return cls(
            d["address"],
            d["name"],
            d["zone"],
            d["role"],
            d["status"],
            _t(d["joined_at"]),
            int(d["last_seq"]),
            AssetsView.from_wire(d.get("assets", {})),
        )


@dataclass(frozen=True, slots=True)
class SessionToken:
    token: str
    expires_at: datetime
    participant: str

    def to_wire(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "expires_at": format_utc(self.expires_at),
            "participant": self.participant,
        }

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Self:
        return cls(d["token"], _t(d["expires_at"]), d["participant"])


@dataclass(frozen=True, slots=True)
class ReadingAck:
    """What happened to one reading: ``accepted``, ``duplicate`` or ``corrected``."""

    interval: datetime
    asset: str
    status: str

    def to_wire(self) -> dict[str, Any]:
        return {"interval": format_utc(self.interval), "asset": self.asset, "status": self.status}

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Self:
        return cls(_t(d["interval"]), d["asset"], d["status"])


@dataclass(frozen=True, slots=True)
class ReadingsResult:
    """Answer to a readings batch: every reading is stored (or already was)."""

    accepted: int
    duplicate: int
    corrected: int
    readings: tuple[ReadingAck, ...]

    def to_wire(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "duplicate": self.duplicate,
            "corrected": self.corrected,
            "readings": [r.to_wire() for r in self.readings],
        }

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Self:
        return cls(
            int(d["accepted"]),
            int(d["duplicate"]),
            int(d.get("corrected", 0)),
            tuple(ReadingAck.from_wire(r) for r in d["readings"]),
        )


@dataclass(frozen=True, slots=True)
class StoredReading:
    interval: datetime
    asset: str
    energy_wh: int
    recorded_at: datetime
    corrections: int  # how many earlier values this one replaced

    def to_wire(self) -> dict[str, Any]:
        return {
            "interval": format_utc(self.interval),
            "asset": self.asset,
            "energy_wh": self.energy_wh,
            "recorded_at": format_utc(self.recorded_at),
            "corrections": self.corrections,
        }

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Self:
        return cls(
            _t(d["interval"]),
            d["asset"],
            int(d["energy_wh"]),
            _t(d["recorded_at"]),
            int(d.get("corrections", 0)),
        )


@dataclass(frozen=True, slots=True)
class OrderView:
    """One standing order as the grid holds it."""

    id: str
    side: str
    energy_wh: int
    price: str
    zone: str

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "side": self.side,
            "energy_wh": self.energy_wh,
            "price": self.price,
            "zone": self.zone,
        }

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Self:
        return cls(d["id"], d["side"], int(d["energy_wh"]), str(d["price"]), d["zone"])


@dataclass(frozen=True, slots=True)
class OrderBook:
    """A participant's orders for one interval (after a change, or on request)."""

    interval: datetime
    gate_closure: datetime
    orders: tuple[OrderView, ...]

    def to_wire(self) -> dict[str, Any]:
        return {
            "interval": format_utc(self.interval),
            "gate_closure": format_utc(self.gate_closure),
            "orders": [o.to_wire() for o in self.orders],
        }

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Self:
        return cls(
            _t(d["interval"]),
            _t(d["gate_closure"]),
            tuple(OrderView.from_wire(o) for o in d["orders"]),
        )


@dataclass(frozen=True, slots=True)
class Fill:
    """How much of one order was matched, at its zone's price."""

    interval: datetime
    order_id: str
    side: str
    zone: str
    energy_wh: int  # ordered
    filled_wh: int
    price: str  # the zone's clearing price
    limit_price: str

    def to_wire(self) -> dict[str, Any]:
        return {
            "interval": format_utc(self.interval),
            "order_id": self.order_id,
            "side": self.side,
            "zone": self.zone,
            "energy_wh": self.energy_wh,
            "filled_wh": self.filled_wh,
            "price": self.price,
            "limit_price": self.limit_price,
        }

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Self:
        return cls(
            _t(d["interval"]),
            d["order_id"],
            d["side"],
            d["zone"],
            int(d["energy_wh"]),
            int(d["filled_wh"]),
            str(d["price"]),
            str(d["limit_price"]),
        )


@dataclass(frozen=True, slots=True)
class ZoneResult:
    """Public market data of one zone in one cleared interval."""

    zone: str
    price: str
    bought_wh: int  # energy participants bought in the market
    sold_wh: int  # energy participants sold in the market
    utility_buy_wh: int  # energy the utility bought from the zone (at feed-in)
    utility_sell_wh: int  # energy the utility sold into the zone (at retail)
    flow_to_parent_wh: int  # negative when energy flows down from the parent

    def to_wire(self) -> dict[str, Any]:
        return {
            "zone": self.zone,
            "price": self.price,
            "bought_wh": self.bought_wh,
            "sold_wh": self.sold_wh,
            "utility_buy_wh": self.utility_buy_wh,
            "utility_sell_wh": self.utility_sell_wh,
            "flow_to_parent_wh": self.flow_to_parent_wh,
        }

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Self:
        return cls(
            d["zone"],
            str(d["price"]),
            int(d["bought_wh"]),
            int(d["sold_wh"]),
            int(d["utility_buy_wh"]),
            int(d["utility_sell_wh"]),
            int(d["flow_to_parent_wh"]),
        )


@dataclass(frozen=True, slots=True)
class MarketResult:
    """``GET /api/v1/market/{interval}``: zone prices and volumes; own fills when signed in.

    ``state`` is ``open`` (not cleared yet: ``zones`` is empty), ``cleared``
    or ``settled``.
    """

    interval: datetime
    state: str
    zones: tuple[ZoneResult, ...]
    fills: tuple[Fill, ...] = ()
    welfare: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "interval": format_utc(self.interval),
            "state": self.state,
            "welfare": self.welfare,
            "zones": [z.to_wire() for z in self.zones],
            "fills": [f.to_wire() for f in self.fills],
        }

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Self:
        return cls(
            _t(d["interval"]),
            d["state"],
            tuple(ZoneResult.from_wire(z) for z in d["zones"]),
            tuple(Fill.from_wire(f) for f in d.get("fills", ())),
            d.get("welfare"),
        )


@dataclass(frozen=True, slots=True)
class LineItem:
    """One money line of a settled interval for one participant.

    ``amount_micro`` is in micro-units of the grid's currency, positive when
    the participant owes the grid, negative when the grid owes the
    participant. ``kind`` says what it is for (``market_buy``,
    ``market_sell``, ``utility_buy`` — shortfall bought at retail,
    ``utility_sell`` — surplus sold at feed-in, …).
    """

    interval: datetime
    kind: str
    energy_wh: int
    price: str
    amount_micro: int

    def to_wire(self) -> dict[str, Any]:
        return {
            "interval": format_utc(self.interval),
            "kind": self.kind,
            "energy_wh": self.energy_wh,
            "price": self.price,
            "amount_micro": self.amount_micro,
        }

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Self:
        return cls(
            _t(d["interval"]),
            d["kind"],
            int(d["energy_wh"]),
            str(d["price"]),
            int(d["amount_micro"]),
        )


@dataclass(frozen=True, slots=True)
class LedgerTerms:
    """How a statement is paid on the grid's ledger, fixed when it is issued.

    ``amount_due`` and ``paid`` are in the ledger's unit (``unit``: micro-units
    of the currency on the local ledger, ``nanos`` on IOTA), with the sign of
    ``amount_due_micro``. ``rate`` is the exact conversion, ledger units per
    micro-unit of the currency, as a fraction string (``"1"``, ``"4000"``,
    ``"10000000/2137"``): what a participant owes is rounded up, what the
    grid owes is rounded down. ``due_at``: after it an unpaid statement is
    overdue.
    """

    kind: str
    unit: str
    rate: str
    amount_due: int
    paid: int
    due_at: datetime

    @property
    def outstanding(self) -> int:
        """What is still to pay, in ledger units (never negative)."""
        return max(0, abs(self.amount_due) - abs(self.paid))

    def to_wire(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "unit": self.unit,
            "rate": self.rate,
            "amount_due": self.amount_due,
            "paid": self.paid,
            "due_at": format_utc(self.due_at),
        }

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Self:
        return cls(
            d["kind"],
            d["unit"],
            str(d["rate"]),
            int(d["amount_due"]),
            int(d.get("paid", 0)),
            _t(d["due_at"]),
        )


@dataclass(frozen=True, slots=True)
class PaymentRecord:
    """One ledger transaction recorded against a statement.

    ``direction``: ``in`` (the participant paid the grid) or ``out`` (a
    payout by the grid). ``amount`` is what this transaction settled of the
    statement, in ledger units (a payout covering several statements lists
    its share in each); ``received`` what actually arrived (an IOTA payment
    can be larger than what was due).
    """

    tx_id: str
    direction: str
    amount: int
    received: int
    recorded_at: datetime

    def to_wire(self) -> dict[str, Any]:
        return {
            "tx_id": self.tx_id,
            "direction": self.direction,
            "amount": self.amount,
            "received": self.received,
            "recorded_at": format_utc(self.recorded_at),
        }

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Self:
        return cls(
            d["tx_id"],
            d["direction"],
            int(d["amount"]),
            int(d.get("received", d["amount"])),
            _t(d["recorded_at"]),
        )


@dataclass(frozen=True, slots=True)
class Statement:
    """A participant's settled intervals over one settlement period.

    ``amount_due_micro`` > 0: the participant owes the grid; < 0: the grid
    owes the participant. ``status``: ``issued``, ``partially_paid``,
    ``paid``; ``paid_micro`` has the sign of ``amount_due_micro``. ``ledger``:
    the amount in ledger units and the rate recorded at issue; ``payments``:
    the transactions recorded against it. ``lines`` is filled by
    ``statement(id)`` and empty in listings.
    """

    id: str
    participant: str
    period_start: datetime
    period_end: datetime
    currency: str
    amount_due_micro: int
    paid_micro: int
    status: str
    issued_at: datetime
    intervals: int
    lines: tuple[LineItem, ...] = ()
    ledger: LedgerTerms | None = None
    payments: tuple[PaymentRecord, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "participant": self.participant,
            "period_start": format_utc(self.period_start),
            "period_end": format_utc(self.period_end),
            "currency": self.currency,
            "amount_due_micro": self.amount_due_micro,
            "paid_micro": self.paid_micro,
            "status": self.status,
            "issued_at": format_utc(self.issued_at),
            "intervals": self.intervals,
            "lines": [line.to_wire() for line in self.lines],
        }
        if self.ledger is not None:
            out["ledger"] = self.ledger.to_wire()
        if self.payments:
            out["payments"] = [p.to_wire() for p in self.payments]
        return out

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Self:
        ledger = d.get("ledger")
        return cls(
            d["id"],
            d["participant"],
            _t(d["period_start"]),
            _t(d["period_end"]),
            d["currency"],
            int(d["amount_due_micro"]),
            int(d.get("paid_micro", 0)),
            d["status"],
            _t(d["issued_at"]),
            int(d["intervals"]),
            tuple(LineItem.from_wire(x) for x in d.get("lines", ())),
            None if ledger is None else LedgerTerms.from_wire(ledger),
            tuple(PaymentRecord.from_wire(p) for p in d.get("payments", ())),
        )


@dataclass(frozen=True, slots=True)
class PaymentResult:
    """Answer to a ``payment`` envelope: the recorded payment and the statement after it."""

    statement: Statement
    payment: PaymentRecord

    def to_wire(self) -> dict[str, Any]:
        return {"statement": self.statement.to_wire(), "payment": self.payment.to_wire()}

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Self:
        return cls(Statement.from_wire(d["statement"]), PaymentRecord.from_wire(d["payment"]))


@dataclass(frozen=True, slots=True)
class LedgerAccount:
    """An account of the grid's local ledger: balance and last transfer sequence number."""

    address: str
    balance: int
    seq: int
    unit: str

    def to_wire(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "balance": self.balance,
            "seq": self.seq,
            "unit": self.unit,
        }

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Self:
        return cls(d["address"], int(d["balance"]), int(d["seq"]), d["unit"])


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One entry of the grid's local ledger, with what is needed to check it.

    ``kind``: ``mint`` or ``transfer``. The record (``ledger.local``) is
    rebuilt from the fields and the grid id; ``hash`` and ``prev_hash`` are
    hex. ``ledger.local.check_entry`` verifies an entry offline.
    """

    index: int
    tx_id: str
    kind: str
    sender: str | None
    recipient: str
    amount: int
    seq: int
    memo: str | None
    time: datetime
    public_key: str | None
    signature: str | None
    prev_hash: str
    hash: str

    def to_wire(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "tx_id": self.tx_id,
            "kind": self.kind,
            "sender": self.sender,
            "recipient": self.recipient,
            "amount": self.amount,
            "seq": self.seq,
            "memo": self.memo,
            "time": format_utc_ms(self.time),
            "public_key": self.public_key,
            "signature": self.signature,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Self:
        return cls(
            int(d["index"]),
            d["tx_id"],
            d["kind"],
            d.get("sender"),
            d["recipient"],
            int(d["amount"]),
            int(d["seq"]),
            d.get("memo"),
            _t_ms(d["time"]),
            d.get("public_key"),
            d.get("signature"),
            d["prev_hash"],
            d["hash"],
        )


def format_utc_ms(moment: datetime) -> str:
    """UTC with milliseconds (ledger entry times are hashed to the millisecond)."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _t_ms(value: Any) -> datetime:
    if not isinstance(value, str) or not value.endswith("Z"):
        raise ValueError(f"not a UTC time: {value!r}")
    return datetime.fromisoformat(value[:-1]).replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Event:
    """One event of the live stream; ``id`` increases, pass the last one as ``since``.

    Kinds: ``market_result`` (data: a :class:`MarketResult` without fills),
    ``fills`` (data: ``{"interval", "fills": [...]}``), ``settled`` (data:
    ``{"interval", "lines": [...]}``), ``statement`` (data: a
    :class:`Statement`), ``payment`` (data: ``{"direction": "in"|"out",
    "tx_id", "amount", "unit", "ledger", "statements": [{"id", "amount"}]}``:
    a payment the grid recorded, or a payout it made).
    """

    id: int
    kind: str
    created_at: datetime
    data: dict[str, Any]

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "created_at": format_utc(self.created_at),
            "data": self.data,
        }

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Self:
        return cls(int(d["id"]), d["kind"], _t(d["created_at"]), dict(d["data"]))


# --- the client -----------------------------------------------------------------

_RETRY_STATUSES: Final = frozenset({502, 503, 504})


class GridClient:
    """A household's connection to one grid.

    ``last_seq`` is the last sequence number this key used; persist
    :attr:`last_seq` and pass it back after a restart (even without it the
    counter moves forward with the wall clock). ``clock`` gives the ``ts`` of
    envelopes (a demo grid may run on an accelerated clock).
    """

    def __init__(
        self,
        base_url: str,
        keys: KeyPair,
        *,
        session: aiohttp.ClientSession | None = None,
        grid_id: str | None = None,
        last_seq: int = 0,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        clock: Callable[[], datetime] | None = None,
        sent_buffer: int = 256,
    ) -> None:
        self._base = base_url.rstrip("/")
        self.keys = keys
        self._session = session
        self._own_session = session is None
        self._grid_id = grid_id
        self._seq = SequenceCounter(last_seq)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._retries = max(1, retries)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._write_lock = asyncio.Lock()
        self._token: SessionToken | None = None
        self._token_lock = asyncio.Lock()
        # The exact bytes of recently accepted envelopes, to check receipts against.
        self._sent: deque[SentEnvelope] = deque(maxlen=max(1, sent_buffer))

    # -- plumbing ---------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        return self._seq.last

    @property
    def address(self) -> str:
        return self.keys.address

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self._own_session = True
        return self._session

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
        self._session = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _url(self, path: str) -> str:
        return f"{self._base}{API_PREFIX}{path}"

    async def _grid(self) -> str:
        if self._grid_id is None:
            self._grid_id = (await self.grid_info()).grid
        return self._grid_id

    async def _request(
        self,
        method: str,
        path: str,
        *,
        data: bytes | None = None,
        params: Mapping[str, str] | None = None,
        auth: bool = False,
        optional_auth: bool = False,
    ) -> Any:
        """One HTTP exchange, retried on network errors with the same bytes."""
        headers = {"Content-Type": "application/json"} if data is not None else {}
        renewed = False
        attempt = 0
        while True:
            attempt += 1
            if auth or optional_auth:
                token = await self._session_token(required=auth)
                if token is not None:
                    headers["Authorization"] = f"Bearer {token}"
            try:
                async with self._http().request(
                    method,
                    self._url(path),
                    data=data,
                    params=params,
                    headers=headers,
                    timeout=self._timeout,
                ) as resp:
                    body = await resp.read()
                    status = resp.status
            except aiohttp.ClientConnectorError as exc:
                # Nothing listens: no request left us, and retrying within a
                # second rarely finds the grid back. The caller retries later.
                raise GridUnavailable(f"{method} {path}: {exc!r}") from exc
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                if attempt < self._retries:
                    await asyncio.sleep(min(0.2 * 2**attempt, 2.0))
                    continue
                raise GridUnavailable(f"{method} {path}: {exc!r}") from exc
            if status in _RETRY_STATUSES and attempt < self._retries:
                await asyncio.sleep(min(0.2 * 2**attempt, 2.0))
                continue
            try:
                parsed = json.loads(body) if body else None
            except ValueError:
                parsed = None
            if status < 400:
                return parsed
            error = ProtocolError.from_wire(parsed, status)
            if (
                status == 401
                and error.code is ErrorCode.UNAUTHENTICATED
                and (auth or optional_auth)
                and not renewed
            ):
                # Expired or revoked token: open a new session once.
                self._token = None
                renewed = True
                headers.pop("Authorization", None)
                continue
            if status >= 500 and error.code is ErrorCode.MALFORMED:
                raise GridUnavailable(f"{method} {path}: HTTP {status}")
            raise error

    async def _session_token(self, *, required: bool) -> str | None:
        now = self._clock()
        token = self._token
        if token is not None and (token.expires_at - now).total_seconds() > (
            SESSION_RENEW_MARGIN_SECONDS
        ):
            return token.token
        async with self._token_lock:
            if self._token is None or self._token is token:
                try:
                    self._token = await self.open_session()
                except ProtocolError:
                    if required:
                        raise
                    return None  # not a member (yet): read as the public
            return self._token.token

    async def _send(self, path: str, body: Body, *, resync: bool = True) -> Any:
        """Sign ``body`` with the next sequence number and post it.

        A lost answer is retried with the identical envelope; a REPLAY
        (another copy of this key moved the counter on) resyncs from ``me()``
        once and signs again.
        """
        grid = await self._grid()
        async with self._write_lock:
            seq = self._seq.next()
            envelope = sign(self.keys, grid, seq, body, ts=self._ts())
            data = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()
            try:
                answer = await self._request("POST", path, data=data)
                self._sent.append(SentEnvelope(body.TYPE, seq, data, self._clock()))
                return answer
            except ProtocolError as exc:
                if not (resync and exc.code is ErrorCode.REPLAY):
                    raise
                last = (exc.details or {}).get("last_seq")
                if isinstance(last, int):
                    # Another copy of this key moved the counter on: skip past it.
                    self._seq.observe(last)
                elif body.TYPE == "session":
                    raise
        if not isinstance(last, int):
            self._seq.observe((await self.me()).last_seq)
        return await self._send(path, body, resync=False)

    def _ts(self) -> datetime:
        return self._clock().astimezone(UTC).replace(microsecond=0)

    # -- public reads -------------------------------------------------------------

    async def grid_info(self) -> GridInfo:
        info = GridInfo.from_wire(await self._request("GET", "/grid"))
        if self._grid_id is None:
            self._grid_id = info.grid
        return info

    async def market(self, interval: datetime) -> MarketResult:
        """Zone prices and volumes of an interval; with a session, also own fills."""
        path = f"/market/{quote(format_utc(interval))}"
        return MarketResult.from_wire(await self._request("GET", path, optional_auth=True))

    # -- signed writes --------------------------------------------------------------

    async def join(self, invitation: str, name: str) -> Participant:
        return Participant.from_wire(await self._send("/participants", Join(invitation, name)))

    async def open_session(self) -> SessionToken:
        token = SessionToken.from_wire(await self._send("/sessions", OpenSession()))
        self._token = token
        return token

    async def set_assets(
        self, sources: Iterable[SourceDecl] = (), meters: Iterable[MeterDecl] = ()
    ) -> AssetsView:
        body = Assets(tuple(sources), tuple(meters))
        return AssetsView.from_wire(await self._send("/assets", body))

    async def send_readings(
        self, readings: Sequence[Reading], correction: bool = False
    ) -> ReadingsResult:
        body = Readings(tuple(readings), correction)
        return ReadingsResult.from_wire(await self._send("/readings", body))

    async def submit_orders(
        self,
        interval: datetime,
        place: Iterable[OrderSpec] = (),
        cancel: Iterable[str] = (),
        replace_all: bool = False,
    ) -> OrderBook:
        body = Orders(interval, tuple(place), tuple(cancel), replace_all)
        return OrderBook.from_wire(await self._send("/orders", body))

    async def pay(
        self,
        statement_id: str,
        *,
        transfer: Mapping[str, Any] | None = None,
        tx: str | None = None,
    ) -> PaymentResult:
        """Pay a statement: a signed local-ledger ``transfer``, or an IOTA digest ``tx``.

        Build the transfer with ``ledger.local.SignedTransfer`` (or let
        ``payments.LocalPayer`` do it all).
        """
        if (transfer is None) == (tx is None):
            raise ValueError("give either a local transfer or an IOTA transaction digest")
        body = (
            Payment(statement_id, LedgerKind.LOCAL, transfer=dict(transfer))
            if transfer is not None
            else Payment(statement_id, LedgerKind.IOTA, tx=tx)
        )
        return PaymentResult.from_wire(await self._send("/payments", body))

    async def ledger_transfer(self, transfer: Mapping[str, Any]) -> LedgerEntry:
        """Apply a signed local-ledger transfer (not paying a statement)."""
        body = Transfer(dict(transfer))
        return LedgerEntry.from_wire(await self._send("/ledger/transfers", body))

    # -- authenticated reads -----------------------------------------------------------

    async def ledger_account(self, address: str | None = None) -> LedgerAccount:
        """A local-ledger account: the own one by default (or the grid's)."""
        path = f"/ledger/accounts/{quote(address or self.address, safe='')}"
        return LedgerAccount.from_wire(await self._request("GET", path, auth=True))

    async def ledger_transaction(self, tx_id: str) -> LedgerEntry:
        """A local-ledger transaction this participant sent or received (NOT_FOUND otherwise)."""
        path = f"/ledger/transactions/{quote(tx_id, safe='')}"
        return LedgerEntry.from_wire(await self._request("GET", path, auth=True))

    async def me(self) -> Participant:
        return Participant.from_wire(await self._request("GET", "/me", auth=True))

    async def orders(self, interval: datetime) -> OrderBook:
        params = {"interval": format_utc(interval)}
        return OrderBook.from_wire(await self._request("GET", "/orders", params=params, auth=True))

    async def readings(self, since: datetime, until: datetime) -> list[StoredReading]:
        params = {"since": format_utc(since), "until": format_utc(until)}
        data = await self._request("GET", "/readings", params=params, auth=True)
        return [StoredReading.from_wire(r) for r in data["readings"]]

    async def fills(self, since: datetime, until: datetime) -> list[Fill]:
        params = {"since": format_utc(since), "until": format_utc(until)}
        data = await self._request("GET", "/fills", params=params, auth=True)
        return [Fill.from_wire(f) for f in data["fills"]]

    async def line_items(self, since: datetime, until: datetime) -> list[LineItem]:
        params = {"since": format_utc(since), "until": format_utc(until)}
        data = await self._request("GET", "/line-items", params=params, auth=True)
        return [LineItem.from_wire(x) for x in data["lines"]]

    async def statements(self, since: datetime | None = None) -> list[Statement]:
        params = {} if since is None else {"since": format_utc(since)}
        data = await self._request("GET", "/statements", params=params, auth=True)
        return [Statement.from_wire(s) for s in data["statements"]]

    async def statement(self, statement_id: str) -> Statement:
        path = f"/statements/{quote(statement_id, safe='')}"
        return Statement.from_wire(await self._request("GET", path, auth=True))

    # -- audit trail (see .receipts) -------------------------------------------------

    @property
    def recent_envelopes(self) -> tuple[SentEnvelope, ...]:
        """Envelopes the grid accepted from this client, with their exact bytes (newest last)."""
        return tuple(self._sent)

    def sent_since(self, seq: int) -> list[SentEnvelope]:
        """The remembered envelopes with a sequence number above ``seq``."""
        return [e for e in self._sent if e.seq > seq]

    async def receipt(
        self,
        *,
        seq: int | None = None,
        log_seq: int | None = None,
        signature: bytes | None = None,
    ) -> Receipt:
        """The grid's receipt for an own envelope (by payload ``seq`` or ``signature``) or entry."""
        if log_seq is not None:
            data = await self._request("GET", f"/receipts/{int(log_seq)}", auth=True)
        elif seq is not None:
            params = {"seq": str(int(seq))}
            data = await self._request("GET", "/receipts", params=params, auth=True)
        elif signature is not None:
            params = {"signature": base64.b64encode(signature).decode()}
            data = await self._request("GET", "/receipts", params=params, auth=True)
        else:
            raise ValueError("name the entry: seq, log_seq or signature")
        return Receipt.from_wire(data)

    async def verify_sent(
        self, sent: SentEnvelope, *, trusted_root: bytes | AuditRoot | None = None
    ) -> VerifiedReceipt:
        """Fetch the receipt of an envelope this client sent and verify it locally.

        Raises ``ReceiptPending`` while its interval is open, ``ReceiptError``
        when the receipt does not prove that the grid logged these bytes.
        """
        receipt = await self.receipt(seq=sent.seq)
        return verify_receipt(receipt, sent.wire, trusted_root=trusted_root)

    async def audit_roots(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        *,
        from_seq: int | None = None,
        limit: int | None = None,
    ) -> list[AuditRoot]:
        """The grid's public interval roots (keep copies: a root must never change)."""
        params: dict[str, str] = {}
        if since is not None:
            params["since"] = format_utc(since)
        if until is not None:
            params["until"] = format_utc(until)
        if from_seq is not None:
            params["from_seq"] = str(int(from_seq))
        if limit is not None:
            params["limit"] = str(int(limit))
        data = await self._request("GET", "/audit/roots", params=params)
        return [AuditRoot.from_wire(r) for r in data["roots"]]

    # -- live stream -------------------------------------------------------------------

    async def events(
        self, since: int = 0, *, reconnect_delay: float = 1.0, heartbeat: float = 20.0
    ) -> AsyncIterator[Event]:
        """Events for this participant, from after ``since``, forever.

        Reconnects after a dropped connection and resumes after the last
        event it yielded, so nothing is missed or repeated. Stop by breaking
        out of the loop (or cancelling the task).
        """
        last = since
        failures = 0
        while True:
            try:
                token = await self._session_token(required=True)
                url = self._url("/stream").replace("http", "ws", 1)
                async with self._http().ws_connect(
                    url,
                    params={"since": str(last)},
                    headers={"Authorization": f"Bearer {token}"},
                    heartbeat=heartbeat,
                    timeout=aiohttp.ClientWSTimeout(ws_close=self._timeout.total or 10.0),
                ) as ws:
                    failures = 0
                    async for msg in ws:
                        if msg.type is not aiohttp.WSMsgType.TEXT:
                            break
                        data = json.loads(msg.data)
                        if "error" in data:
                            error = ProtocolError.from_wire(data)
                            if error.code is ErrorCode.UNAUTHENTICATED:
                                self._token = None
                                break
                            raise error
                        event = Event.from_wire(data)
                        if event.id <= last:
                            continue
                        last = event.id
                        yield event
            except aiohttp.WSServerHandshakeError as exc:
                if exc.status == 401:
                    self._token = None
                elif exc.status not in _RETRY_STATUSES:
                    raise GridUnavailable(f"stream refused: HTTP {exc.status}") from exc
            except (aiohttp.ClientError, TimeoutError, OSError, GridUnavailable) as exc:
                _LOGGER.debug("stream dropped: %r", exc)
            failures += 1
            await asyncio.sleep(min(reconnect_delay * failures, 30.0))


__all__ = [
    "AssetsView",
    "Event",
    "Fill",
    "GridClient",
    "GridInfo",
    "GridUnavailable",
    "LedgerAccount",
    "LedgerEntry",
    "LedgerTerms",
    "LineItem",
    "MarketResult",
    "OrderBook",
    "OrderView",
    "Participant",
    "PaymentRecord",
    "PaymentResult",
    "PriceStep",
    "ReadingAck",
    "ReadingsResult",
    "SessionToken",
    "Statement",
    "StoredReading",
    "ZoneInfo",
    "ZoneResult",
]
