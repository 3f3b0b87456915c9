"""The grid's answers and live events, as typed values (no I/O).

Every response body the grid server sends is defined here once, as a frozen
dataclass with ``to_wire()`` (the server builds its JSON with it) and
``from_wire()`` (the client parses with it), so the two cannot drift apart.
Only the standard library and this package are imported: the grid's domain
and the household's trading logic use these types without pulling in an
HTTP library.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Self

from .protocol import MeterDecl, SourceDecl
from .units import format_utc, parse_utc

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
class SharingInfo:
    """The grid's sharing after delivery (``docs/developers/sharing.md``), as announced.

    Deviations from traded positions are shared between neighbours on
    metered data before the utility covers the rest. ``key`` divides shared
    energy (``proportional``, ``dynamic``, ``static``); a shortfall pays the
    zone's clearing price plus ``shortfall_share`` of the gap to retail, a
    surplus earns it minus ``surplus_share`` of the gap to feed-in (decimal
    strings in [0, 1]); ``static_shares``: participant address to weight.
    The same form is recorded in each settlement entry of the audit log.
    """

    enabled: bool
    key: str = "proportional"
    shortfall_share: str = "0.5"
    surplus_share: str = "0.5"
    static_shares: Mapping[str, int] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "key": self.key,
            "shortfall_share": self.shortfall_share,
            "surplus_share": self.surplus_share,
            "static_shares": dict(sorted(self.static_shares.items())),
        }

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Self:
        return cls(
            bool(d["enabled"]),
            str(d.get("key", "proportional")),
            str(d.get("shortfall_share", "0.5")),
            str(d.get("surplus_share", "0.5")),
            {str(a): int(w) for a, w in d.get("static_shares", {}).items()},
        )


SHARING_OFF: Final = SharingInfo(enabled=False)

# What a participant's settlement lines are for (``LineItem.kind``).
PARTICIPANT_LINE_KINDS: Final = (
    "market_buy",
    "market_sell",
    "shared_in",
    "shared_out",
    "shortfall_retail",
    "surplus_feed_in",
)
SHARED_LINE_KINDS: Final = ("shared_in", "shared_out")


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
    # What a household may declare without the operator's approval (W, a battery's
    # capacity in Wh), per kind; above it an asset waits (docs/operators/meters.md).
    approval_limits: Mapping[str, int] | None = None
    sharing: SharingInfo = SHARING_OFF

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
            **(
                {}
                if self.approval_limits is None
                else {"approval_limits": dict(self.approval_limits)}
            ),
            "sharing": self.sharing.to_wire(),
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
            {str(k): int(v) for k, v in d["approval_limits"].items()}
            if isinstance(d.get("approval_limits"), Mapping)
            else None,
            # Grids from before sharing existed do not announce it: they do not share.
            SharingInfo.from_wire(d["sharing"]) if "sharing" in d else SHARING_OFF,
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
    participant. ``kind`` says what it is for (:data:`PARTICIPANT_LINE_KINDS`):
    ``market_buy``/``market_sell`` (traded ahead), ``shared_in``/``shared_out``
    (a shortfall covered by, or a surplus taken by, neighbours after
    delivery, when the grid shares), ``shortfall_retail``/``surplus_feed_in``
    (the rest, with the utility).
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


@dataclass(frozen=True, slots=True)
class SentEnvelope:
    """An envelope this client sent and the grid accepted, with its exact bytes."""

    type: str
    seq: int
    wire: bytes
    sent_at: datetime

    def to_state(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "seq": self.seq,
            "wire": base64.b64encode(self.wire).decode(),
            "sent_at": format_utc(self.sent_at),
        }

    @classmethod
    def from_state(cls, d: Mapping[str, Any]) -> Self:
        try:
            wire = base64.b64decode(d["wire"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("stored envelope bytes are not base64") from exc
        return cls(str(d["type"]), int(d["seq"]), wire, parse_utc(d["sent_at"]))
