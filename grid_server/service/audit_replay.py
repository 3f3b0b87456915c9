"""What the stored state must be, replayed from the log, and the comparison with the tables.

Every table the grid keeps for the market is a function of the log: replay
the entries in order with the same rules the grid applied and the result
must equal the tables, row for row and field for field.

=====================  ===========================================================
table                  implied by
=====================  ===========================================================
participants           ``join`` envelope (key, name, joined at), ``participant``
                       entry (zone, role), ``operator`` status entries, and the
                       highest seq of the key's envelopes
assets                 ``assets`` envelopes (declarative: retire, start versions)
envelopes              every ``envelope`` entry (raw bytes, header, payload hash)
readings, history      ``readings`` envelopes (accepted, duplicate, corrected)
orders                 ``orders`` envelopes (cancel, replace_all, place)
intervals              ``market_result`` (cleared) and ``settlement`` (settled)
zone_results, fills    ``market_result``
line_items             ``settlement``
statements             ``statement`` entries
zones, utility_prices  ``operator`` zone and price entries (the config's seeds too)
statement_terms        ``statement`` entries (ledger terms), ``payment`` and
                       ``payout`` entries (what is paid)
payments               ``payment`` entries (and the ``payment`` envelope's seq)
payouts, payout_items  ``payout`` entries (prepared, then done or failed)
ledger_entries,        ``ledger`` entries of the local ledger, each re-checked
ledger_accounts,       (record, transaction id, sender's signature, entry hash
ledger_heads           chain); balances and counters summed from them
=====================  ===========================================================

Memory stays bounded: once an interval's ``settlement`` entry is replayed,
nothing can change its readings, orders, fills or lines any more, so that
interval is compared with the tables and dropped (:meth:`Replay.settled`).
Rows of tables that no log entry implies are reported as well.
Timestamps that the grid takes from its clock in the same transaction as
the entry (``joined_at``, ``recorded_at``, ``cleared_at`` …) must equal the
entry's ``created_at``.
"""

from __future__ import annotations

import base64
import hashlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from grid_server.config import SharingConfig
from grid_server.domain import market
from grid_server.domain.ledger import statement_status
from grid_server.domain.market.clearing import ClearingInvariantError
from grid_server.domain.registry import AssetVersion, diff_assets
from p2p_energy_client.ledger.local import GENESIS_HASH as LEDGER_GENESIS
from p2p_energy_client.ledger.local import SignedTransfer, check_entry
from p2p_energy_client.models import LedgerEntry
from p2p_energy_client.protocol import Assets
from p2p_energy_client.units import format_utc, paid_micro, parse_price, parse_rate, parse_utc

from . import settlement_port
from .meters import ACCEPTED_LINE

if TYPE_CHECKING:
    from grid_server.domain.sharing import SharingRule

Key = tuple[Any, ...]


@dataclass(frozen=True, slots=True, order=True)
class Inconsistency:
    """One way the database differs from what its log implies."""

    seq: int  # the log entry it is attributed to (the entry that wrote the row)
    table: str
    row: str
    message: str

    def __str__(self) -> str:
        where = f"log entry {self.seq}" if self.seq < NO_ENTRY else "no log entry"
        return f"{where}: {self.table} {self.row}: {self.message}"


NO_ENTRY: Final = 2**63  # rows no entry implies sort after every attributed one


def _show(value: object) -> str:
    if isinstance(value, datetime):
        return format_utc(value) if not value.microsecond else value.isoformat()
    if isinstance(value, bytes):
        return value.hex()[:16] + ("…" if len(value) > 8 else "")
    return repr(value)


def _key_text(key: Key) -> str:
    return "(" + ", ".join(_show(k) if not isinstance(k, str) else k for k in key) + ")"


@dataclass
class Table:
    """Expected rows of one table: key → (values, seq of the entry that wrote them)."""

    name: str
    fields: tuple[str, ...]
    rows: dict[Key, tuple[tuple[Any, ...], int]] = field(default_factory=dict)

    def put(self, key: Key, values: tuple[Any, ...], seq: int) -> None:
        self.rows[key] = (values, seq)

    def compare(self, actual: Mapping[Key, tuple[Any, ...]]) -> list[Inconsistency]:
        return compare_rows(self.name, self.fields, self.rows, actual)


def compare_rows(
    name: str,
    fields: tuple[str, ...],
    expected: Mapping[Key, tuple[tuple[Any, ...], int]],
    actual: Mapping[Key, tuple[Any, ...]],
) -> list[Inconsistency]:
    found: list[Inconsistency] = []
    for key, (values, seq) in expected.items():
        have = actual.get(key)
        if have is None:
            found.append(Inconsistency(seq, name, _key_text(key), "is missing from the table"))
            continue
        for f, want, got in zip(fields, values, have, strict=True):
            if want != got:
                found.append(
                    Inconsistency(
                        seq,
                        name,
                        _key_text(key),
                        f"{f} is {_show(got)} in the table, the log says {_show(want)}",
                    )
                )
                break
    found.extend(
        Inconsistency(NO_ENTRY, name, _key_text(key), "is in the table, but no log entry made it")
        for key in actual
        if key not in expected
    )
    return found


def compare_multiset(
    name: str,
    expected: Iterable[tuple[tuple[Any, ...], int]],
    actual: Iterable[tuple[Any, ...]],
    describe: Callable[[tuple[Any, ...]], str],
) -> list[Inconsistency]:
    """Rows without a natural key (line items, history, asset versions), compared as bags."""
    want: Counter[tuple[Any, ...]] = Counter()
    seqs: dict[tuple[Any, ...], int] = {}
    for values, seq in expected:
        want[values] += 1
        seqs.setdefault(values, seq)
    have = Counter(actual)
    found = [
        Inconsistency(seqs[row], name, describe(row), "is missing from the table")
        for row in (want - have).elements()
    ]
    found.extend(
        Inconsistency(NO_ENTRY, name, describe(row), "is in the table, but no log entry made it")
        for row in (have - want).elements()
    )
    return found


@dataclass
class Partition:
    """Everything keyed by one delivery interval."""

    readings: dict[Key, tuple[tuple[Any, ...], int]] = field(default_factory=dict)
    history: list[tuple[tuple[Any, ...], int]] = field(default_factory=list)
    orders: dict[str, dict[str, tuple[Any, ...]]] = field(default_factory=dict)  # address → id
    order_seq: dict[str, int] = field(default_factory=dict)
    interval: tuple[tuple[Any, ...], int] | None = None
    zones: dict[Key, tuple[tuple[Any, ...], int]] = field(default_factory=dict)
    fills: dict[Key, tuple[tuple[Any, ...], int]] = field(default_factory=dict)
    lines: list[tuple[tuple[Any, ...], int]] = field(default_factory=list)


READING_FIELDS: Final = ("energy_wh", "envelope", "recorded_at", "revision")
ORDER_FIELDS: Final = (
    "side",
    "energy_wh",
    "price",
    "price_ticks",
    "zone",
    "envelope",
    "placed_at",
)
INTERVAL_FIELDS: Final = ("state", "cleared_at", "settled_at", "welfare", "orders")
ZONE_RESULT_FIELDS: Final = (
    "price_ticks",
    "bought_wh",
    "sold_wh",
    "utility_buy_wh",
    "utility_sell_wh",
    "flow_to_parent_wh",
)
FILL_FIELDS: Final = ("side", "zone", "energy_wh", "filled_wh", "price_ticks", "limit_ticks")
PARTICIPANT_FIELDS: Final = (
    "public_key",
    "name",
    "zone",
    "role",
    "status",
    "last_seq",
    "joined_at",
    "status_changed_at",
)
# Meters (grid_server.service.meters): the operator's decisions on assets, and flagged
# readings with the operator's decision on each (``booked_at`` follows from settlement).
DECISION_FIELDS: Final = (
    "kind",
    "declared_power_w",
    "declared_capacity_wh",
    "approved_power_w",
    "approved_capacity_wh",
    "note",
    "decided_at",
)
FLAG_FIELDS: Final = (
    "reading_wh",
    "bound_wh",
    "code",
    "flagged_at",
    "decision",
    "note",
    "decided_at",
)
STATEMENT_FIELDS: Final = (
    "participant",
    "period_start",
    "period_end",
    "currency",
    "amount_due_micro",
    "paid_micro",
    "status",
    "issued_at",
    "intervals",
)
ZONE_FIELDS: Final = (
    "name",
    "parent",
    "fee_ticks",
    "capacity_up_wh",
    "capacity_down_wh",
    "updated_at",
)
PRICE_FIELDS: Final = ("retail_ticks", "feed_in_ticks", "created_at")
TERMS_FIELDS: Final = ("ledger", "unit", "rate", "amount_due", "paid", "due_at")
PAYMENT_FIELDS: Final = (
    "statement_id",
    "participant",
    "ledger",
    "received",
    "credited",
    "envelope",
    "recorded_at",
)
PAYOUT_FIELDS: Final = (
    "tx_id",
    "participant",
    "ledger",
    "amount",
    "state",
    "created_at",
    "completed_at",
    "error",
)
LEDGER_ENTRY_FIELDS: Final = (
    "tx_id",
    "kind",
    "sender",
    "recipient",
    "amount",
    "seq",
    "memo",
    "public_key",
    "signature",
    "prev_hash",
    "hash",
    "created_at",
)
ACCOUNT_FIELDS: Final = ("balance", "seq")
LEDGER_HEAD_FIELDS: Final = ("entries", "hash", "minted", "mints")
ENVELOPE_FIELDS: Final = (
    "signature",
    "participant",
    "sender",
    "type",
    "seq",
    "ts",
    "payload_hash",
    "raw",
    "received_at",
)


class ReplayError(ValueError):
    """An entry the replay cannot apply (the log itself is inconsistent)."""


@dataclass
class _Participant:
    public_key: bytes
    name: str
    zone: str | None
    role: str | None
    status: str
    last_seq: int
    joined_at: datetime
    status_changed_at: datetime | None
    seq: int  # the join entry
    last_write: int  # the entry that last changed this row

    def values(self) -> tuple[Any, ...]:
        return (
            self.public_key,
            self.name,
            self.zone,
            self.role,
            self.status,
            self.last_seq,
            self.joined_at,
            self.status_changed_at,
        )


class Replay:
    """The state the log implies, built entry by entry (see the module doc)."""

    def __init__(self) -> None:
        self.participants: dict[str, _Participant] = {}
        self.assets: dict[str, list[list[Any]]] = defaultdict(list)  # address → versions
        self.asset_seq: dict[tuple[str, str, datetime], int] = {}
        self.partitions: dict[datetime, Partition] = {}
        self.statements = Table("statements", STATEMENT_FIELDS)
        self.decisions = Table("asset_decisions", DECISION_FIELDS)
        self.flags = Table("reading_flags", FLAG_FIELDS)
        self.zones = Table("zones", ZONE_FIELDS)
        self.prices = Table("utility_prices", PRICE_FIELDS)
        self.terms = Table("statement_terms", TERMS_FIELDS)
        self.payments = Table("payments", PAYMENT_FIELDS)
        self.payouts = Table("payouts", PAYOUT_FIELDS)
        self.payout_items = Table("payout_items", ("amount",))
        self.ledger_entries = Table("ledger_entries", LEDGER_ENTRY_FIELDS)
        self.accounts = Table("ledger_accounts", ACCOUNT_FIELDS)
        self.ledger_head: tuple[int, bytes, int, int] = (0, LEDGER_GENESIS, 0, 0)
        self.ledger_head_seq = 0
        self.payment_envelopes: dict[str, int] = {}  # tx id → the payment envelope's entry
        self.settled: list[datetime] = []
        self.not_replayed: Counter[str] = Counter()
        self._times: dict[str, datetime] = {}
        self._ids: dict[str, int] = {}  # address → number, to re-settle intervals

    # --- helpers ---

    def time_of(self, text: str) -> datetime:
        """A wire timestamp as a datetime (cached: the log repeats interval starts)."""
        t = self._times.get(text)
        if t is None:
            t = parse_utc(text)
            if len(self._times) < 100_000:
                self._times[text] = t
        return t

    def partition(self, t: datetime) -> Partition:
        p = self.partitions.get(t)
        if p is None:
            p = self.partitions[t] = Partition()
        return p

    def _participant(self, address: str, seq: int) -> _Participant:
        p = self.participants.get(address)
        if p is None:
            raise ReplayError(f"{address} acts before joining (entry {seq})")
        return p

    # --- entries ---

    def envelope(self, seq: int, created_at: datetime, wire: dict[str, Any]) -> str:
        """Apply an accepted envelope; returns its type."""
        payload = wire["payload"]
        kind = payload["type"]
        sender = payload["sender"]
        if kind == "join":
            self._join(seq, created_at, wire)
            return "join"
        participant = self._participant(sender, seq)
        self._next_seq(participant, sender, payload["seq"])
        participant.last_write = seq
        if kind == "readings":
            self._readings(seq, created_at, sender, payload)
        elif kind == "orders":
            self._orders(seq, created_at, sender, participant, payload)
        elif kind == "assets":
            self._assets(seq, created_at, sender, payload)
        elif kind == "payment":
            self._payment_envelope(seq, payload)
        elif kind not in ("session", "transfer"):
            self.not_replayed[f"envelope:{kind}"] += 1
        return str(kind)

    @staticmethod
    def _next_seq(participant: _Participant, sender: str, payload_seq: int) -> None:
        """A key's sequence numbers only rise."""
        if payload_seq <= participant.last_seq:
            raise ReplayError(f"seq {payload_seq} of {sender} is not above {participant.last_seq}")
        participant.last_seq = payload_seq

    def _join(self, seq: int, created_at: datetime, wire: dict[str, Any]) -> None:
        payload = wire["payload"]
        sender = payload["sender"]
        known = self.participants.get(sender)
        if known is None:
            self.participants[sender] = _Participant(
                base64.b64decode(wire["public_key"]),
                payload["name"],
                None,
                None,
                "active",
                payload["seq"],
                created_at,
                None,
                seq,
                seq,
            )
        elif known.status == "active":
            raise ReplayError(f"{sender} joins while a member")
        else:  # back with a new invitation, under the same key
            self._next_seq(known, sender, payload["seq"])
            known.name, known.status = payload["name"], "active"
            known.seq = known.last_write = seq

    def _payment_envelope(self, seq: int, payload: dict[str, Any]) -> None:
        """Remember which envelope carried a payment: its ``payment`` entry names the tx."""
        tx = payload.get("tx")
        if payload.get("ledger") == "local":
            tx = SignedTransfer.from_wire(payload["transfer"], "payload.transfer").tx_id
        self.payment_envelopes[str(tx)] = seq

    def _readings(self, seq: int, at: datetime, sender: str, payload: dict[str, Any]) -> None:
        correction = payload.get("correction", False)
        for r in payload["readings"]:
            t = self.time_of(r["interval"])
            part = self.partition(t)
            key = (sender, r["asset"])
            old = part.readings.get(key)
            wh = r["energy_wh"]
            if old is None:
                part.readings[key] = ((wh, seq, at, 0), seq)
            elif old[0][0] == wh:
                continue
            elif not correction:
                raise ReplayError(f"a different reading for {key} without correction")
            else:
                (old_wh, old_env, old_at, revision), _ = old
                part.history.append(
                    ((sender, r["asset"], old_wh, old_env, old_at, revision, at, seq), seq)
                )
                part.readings[key] = ((wh, seq, at, revision + 1), seq)

    def _orders(
        self,
        seq: int,
        at: datetime,
        sender: str,
        participant: _Participant,
        payload: dict[str, Any],
    ) -> None:
        part = self.partition(self.time_of(payload["interval"]))
        book: dict[str, tuple[Any, ...]] = (
            {}
            if payload.get("replace_all")
            else {oid: v[:5] for oid, v in part.orders.get(sender, {}).items()}
        )
        for order_id in payload.get("cancel", ()):
            book.pop(order_id, None)
        for o in payload.get("place", ()):
            price = o["price"]
            book[o["id"]] = (o["side"], o["energy_wh"], price, parse_price(price), participant.zone)
        # The grid rewrites every order of the book with this envelope and time.
        part.orders[sender] = {oid: (*v, seq, at) for oid, v in book.items()}
        part.order_seq[sender] = seq

    def _assets(self, seq: int, at: datetime, sender: str, payload: dict[str, Any]) -> None:
        declared = Assets.body_from_wire(payload)
        versions = self.assets[sender]
        current = {
            v[0]: AssetVersion(v[0], v[1], v[2], v[3], v[4], v[7], v[8])
            for v in versions
            if v[6] is None
        }
        retire, start = diff_assets(current, declared)
        for v in versions:
            if v[6] is None and v[0] in retire:
                v[6] = at
        for version in start:
            versions.append(
                [
                    version.asset_id,
                    version.category,
                    version.kind,
                    version.name,
                    version.rated_power_w,
                    at,
                    None,
                    version.charge_meter,
                    version.usable_capacity_wh,
                ]
            )
            self.asset_seq[(sender, version.asset_id, at)] = seq

    def participant_entry(self, seq: int, body: dict[str, Any]) -> None:
        p = self._participant(body["address"], seq)
        if body["envelope"] != p.seq:
            raise ReplayError(
                f"the join of {body['address']} is entry {p.seq}, not {body['envelope']}"
            )
        p.zone, p.role = body["zone"], body["role"]
        p.last_write = seq

    def operator(self, seq: int, at: datetime, body: dict[str, Any]) -> None:
        action = body.get("action")
        if action == "status":
            p = self._participant(body["participant"], seq)
            p.status, p.status_changed_at, p.last_write = body["status"], at, seq
        elif action == "price":
            self.prices.put(
                (self.time_of(body["effective_from"]),),
                (parse_price(body["retail"]), parse_price(body["feed_in"]), at),
                seq,
            )
        elif action == "zone":
            self.zones.put(
                (body["id"],),
                (
                    body.get("name"),
                    body.get("parent"),
                    parse_price(body.get("fee", "0")),
                    body.get("capacity_up_wh"),
                    body.get("capacity_down_wh"),
                    at,
                ),
                seq,
            )
        elif action == "asset_decision":
            self.decisions.put(
                (body["participant"], body["asset"]),
                (
                    body["kind"],
                    body["declared_power_w"],
                    body["declared_capacity_wh"],
                    body["approved_power_w"],
                    body["approved_capacity_wh"],
                    body["note"],
                    at,
                ),
                seq,
            )
        elif action == "flag_decision":
            key = (body["participant"], self.time_of(body["interval"]), body["asset"])
            flagged = self.flags.rows.get(key)
            if flagged is None:
                raise ReplayError(f"a decision on {key}, which was never flagged")
            values = (*flagged[0][:4], body["decision"], body["note"], at)
            self.flags.put(key, values, seq)
        else:
            self.not_replayed[f"operator:{action}"] += 1

    def reading_flags(self, seq: int, at: datetime, record: dict[str, Any]) -> None:
        t = self.time_of(record["interval"])
        for f in record["flags"]:
            self.flags.put(
                (f["participant"], t, f["asset"]),
                (f["reading_wh"], f["bound_wh"], f["code"], at, None, None, None),
                seq,
            )

    def market_result(self, seq: int, at: datetime, record: dict[str, Any]) -> None:
        t = self.time_of(record["interval"])
        part = self.partition(t)
        zone_prices: dict[str, int] = {}
        for z in record["zones"]:
            ticks = parse_price(z["price"])
            zone_prices[z["zone"]] = ticks
            part.zones[(z["zone"],)] = (
                (
                    ticks,
                    z["bought_wh"],
                    z["sold_wh"],
                    z["utility_buy_wh"],
                    z["utility_sell_wh"],
                    z["flow_to_parent_wh"],
                ),
                seq,
            )
        for f in record.get("fills", ()):
            order = part.orders.get(f["participant"], {}).get(f["order_id"])
            if order is None:
                raise ReplayError(
                    f"the market result of {record['interval']} fills order {f['order_id']!r} of "
                    f"{f['participant']}, which the log never placed"
                )
            side, energy, _price, limit, zone = order[:5]
            part.fills[(f["participant"], f["order_id"])] = (
                (side, zone, energy, f["filled_wh"], zone_prices[zone], limit),
                seq,
            )
        part.interval = (
            ("cleared", at, None, record.get("welfare"), len(record.get("fills", ()))),
            seq,
        )

    def settlement(self, seq: int, at: datetime, record: dict[str, Any]) -> datetime:
        t = self.time_of(record["interval"])
        part = self.partition(t)
        if part.interval is None:
            raise ReplayError(f"{record['interval']} is settled before it was cleared")
        values, _ = part.interval
        part.interval = (("settled", values[1], at, values[3], values[4]), seq)
        lines = [
            (
                line["participant"],
                line["kind"],
                line["energy_wh"],
                parse_price(line["price"]),
                line["amount_micro"],
            )
            for line in record["lines"]
        ]
        part.lines.extend((line, seq) for line in lines)
        if "sharing" in record:
            self._resettle(t, part, record, lines)
        return t

    def _resettle(
        self, t: datetime, part: Partition, record: dict[str, Any], logged: list[Key]
    ) -> None:
        """Settle the interval again with the sharing rule its entry names, from what the
        log says went into it (readings, assets, fills, zone results, zones, prices,
        participants' zones): the lines must be the logged ones, to the micro-unit."""
        rule = SharingConfig.model_validate(record["sharing"]).rule()
        end = t + timedelta(minutes=int(record["interval_minutes"]))
        inputs = self._settlement_inputs(t, end, part, rule)
        names = {i: a for a, i in self._ids.items()}
        try:
            settled = settlement_port.settle(inputs)
        except (ValueError, ClearingInvariantError) as exc:  # inputs the grid could not settle
            raise ReplayError(
                f"the settlement of {record['interval']} cannot be settled again from its "
                f"inputs: {exc}"
            ) from exc
        again = Counter(
            (
                None if line.participant_id is None else names[line.participant_id],
                line.kind,
                line.energy_wh,
                line.price_ticks,
                line.amount_micro,
            )
            for line in settled
        )
        # Readings the operator accepted later are booked by whichever settlement
        # comes next, beside what the interval's own inputs give: they are not
        # settled again here (the flag decisions are replayed on their own).
        logged = [line for line in logged if not line[1].endswith(ACCEPTED_LINE)]
        differ = (again - Counter(logged)) + (Counter(logged) - again)
        if differ:
            first = min(differ, key=lambda row: tuple(map(str, row)))
            where = "the log has" if Counter(logged)[first] > again[first] else "re-settled has"
            raise ReplayError(
                f"the settlement of {record['interval']} does not follow from its inputs with "
                f"its sharing rule: {where} {_key_text(first)}"
            )

    def _settlement_inputs(
        self, t: datetime, end: datetime, part: Partition, rule: SharingRule | None
    ) -> settlement_port.IntervalInputs:
        """What the cycle reads from the tables to settle ``t``, as the log implies them."""
        retail, feed_in = self._price_at(t)
        produced: Counter[int] = Counter()
        consumed: Counter[int] = Counter()
        for (address, asset), ((wh, *_), _seq) in part.readings.items():
            category = self._category(address, asset, t, end)
            if category is not None:
                counter = produced if category == "source" else consumed
                counter[self._id(address)] += self._believed(address, t, asset, wh)
        fills = tuple(
            settlement_port.FillInput(self._id(address), order_id, side, zone, filled, price)
            for (address, order_id), ((side, zone, _e, filled, price, _l), _s) in part.fills.items()
        )
        pids = {f.participant_id for f in fills} | set(produced) | set(consumed)
        names = {i: a for a, i in self._ids.items()}
        zone_values = {key[0]: values for key, (values, _seq) in part.zones.items()}
        return settlement_port.IntervalInputs(
            interval=t,
            interval_minutes=int((end - t).total_seconds() // 60),
            retail_ticks=retail,
            feed_in_ticks=feed_in,
            zone_prices={z: v[0] for z, v in zone_values.items()},
            zone_flows={z: (v[3], v[4], v[5]) for z, v in zone_values.items()},
            zones=tuple(
                market.Zone(key[0], v[1], v[2], v[3], v[4])
                for key, (v, _seq) in sorted(self.zones.rows.items())
            ),
            fills=fills,
            metered={pid: settlement_port.Metered(produced[pid], consumed[pid]) for pid in pids},
            zone_of={pid: str(self.participants[names[pid]].zone) for pid in pids},
            addresses={pid: names[pid] for pid in pids},
            sharing=rule,
        )

    def _believed(self, address: str, t: datetime, asset: str, wh: int) -> int:
        """A reading as settlement took it: at its bound when the interval's
        ``reading_flags`` entry (logged just before the settlement) flagged it."""
        flagged = self.flags.rows.get((address, t, asset))
        return wh if flagged is None else int(flagged[0][1])

    def _id(self, address: str) -> int:
        """A number for ``address`` (settlement keys participants by number)."""
        return self._ids.setdefault(address, len(self._ids))

    def _price_at(self, t: datetime) -> tuple[int, int]:
        """``(retail, feed-in)`` of the price step in force at ``t``."""
        steps = [key[0] for key in self.prices.rows if key[0] <= t]
        if not steps:
            raise ReplayError(f"no utility price in force at {format_utc(t)}")
        values, _seq = self.prices.rows[(max(steps),)]
        return values[0], values[1]

    def _category(self, address: str, asset: str, t: datetime, end: datetime) -> str | None:
        """The category of the asset's first version in force during ``[t, end)``."""
        versions = sorted(
            (v for v in self.assets[address] if v[0] == asset),
            key=lambda v: v[5],
        )
        for v in versions:
            if v[5] < end and (v[6] is None or v[6] > t):
                return str(v[1])
        return None

    def statement(self, seq: int, at: datetime, body: dict[str, Any]) -> None:
        due = body["amount_due_micro"]
        self.statements.put(
            (body["id"],),
            (
                body["participant"],
                self.time_of(body["period_start"]),
                self.time_of(body["period_end"]),
                body["currency"],
                due,
                0,
                "issued" if due else "paid",
                at,
                body["intervals"],
            ),
            seq,
        )
        terms = body.get("ledger")
        if terms is not None:
            self.terms.put(
                (body["id"],),
                (
                    terms["kind"],
                    terms["unit"],
                    terms["rate"],
                    terms["amount_due"],
                    terms.get("paid", 0),
                    self.time_of(terms["due_at"]),
                ),
                seq,
            )

    def _settle(self, seq: int, statement: str, delta: int, record: Mapping[str, Any]) -> None:
        """Add ``delta`` ledger units to a statement by the grid's rules (``settle``)."""
        row = self.statements.rows.get((statement,))
        terms = self.terms.rows.get((statement,))
        if row is None or terms is None:
            raise ReplayError(f"statement {statement} is paid before it was issued with terms")
        values, t = list(row[0]), list(terms[0])
        t[4] = t[4] + delta
        status = statement_status(t[3], t[4])
        micro = paid_micro(values[4], t[3], t[4], parse_rate(t[2]))
        for name, value in (("paid", t[4]), ("paid_micro", micro), ("status", status)):
            if name in record and record[name] != value:
                raise ReplayError(
                    f"statement {statement}: the entry says {name} {record[name]!r}, the rules "
                    f"give {value!r}"
                )
        values[5], values[6] = micro, status
        self.statements.put((statement,), tuple(values), seq)
        self.terms.put((statement,), tuple(t), seq)

    def payment(self, seq: int, at: datetime, body: dict[str, Any]) -> None:
        tx_id = body["tx_id"]
        envelope = self.payment_envelopes.pop(tx_id, None)
        if envelope is None:
            raise ReplayError(f"payment {tx_id} without a payment envelope before it")
        self.payments.put(
            (tx_id,),
            (
                body["statement"],
                body["participant"],
                body["ledger"],
                body["received"],
                body["credited"],
                envelope,
                at,
            ),
            seq,
        )
        self._settle(seq, body["statement"], body["credited"], body)

    def payout(self, seq: int, at: datetime, body: dict[str, Any]) -> None:
        key = (body["payout"],)
        state = body["state"]
        if state == "prepared":
            self.payouts.put(
                key,
                (
                    body["tx_id"],
                    body["recipient"],
                    body["ledger"],
                    body["amount"],
                    "prepared",
                    at,
                    None,
                    None,
                ),
                seq,
            )
            for item in body["statements"]:
                self.payout_items.put((body["payout"], item["id"]), (item["amount"],), seq)
            return
        row = self.payouts.rows.get(key)
        if row is None or row[0][4] != "prepared" or row[0][0] != body["tx_id"]:
            raise ReplayError(f"payout {body['payout']} is {state} but was never prepared")
        values = list(row[0])
        values[4], values[6] = state, at
        if state == "failed":
            values[7] = body.get("error")
        else:
            for item in body["statements"]:
                self._settle(seq, item["id"], -item["amount"], item)
        self.payouts.put(key, tuple(values), seq)

    def ledger(self, seq: int, at: datetime, grid: str, body: dict[str, Any]) -> None:
        entry = LedgerEntry.from_wire(body)
        entries, prev, minted, mints = self.ledger_head
        if entry.index != entries + 1:
            raise ReplayError(f"ledger entry {entry.index} follows entry {entries}")
        problem = check_entry(entry, grid, prev)
        if problem is not None:
            raise ReplayError(f"ledger entry {entry.index}: {problem}")
        digest = bytes.fromhex(entry.hash)
        self.ledger_entries.put(
            (entry.index,),
            (
                entry.tx_id,
                entry.kind,
                entry.sender,
                entry.recipient,
                entry.amount,
                entry.seq,
                entry.memo,
                None if entry.public_key is None else base64.b64decode(entry.public_key),
                None if entry.signature is None else base64.b64decode(entry.signature),
                prev,
                digest,
                # The entry's own time (hashed to the millisecond, stored so), not
                # the log entry's: that one keeps the microseconds.
                entry.time,
            ),
            seq,
        )
        if entry.kind == "mint":
            minted, mints = minted + entry.amount, mints + 1
        else:
            assert entry.sender is not None
            sender = self.accounts.rows.get((entry.sender,), ((0, 0), 0))[0]
            if sender[0] < entry.amount:
                raise ReplayError(f"ledger entry {entry.index} overdraws {entry.sender}")
            self.accounts.put((entry.sender,), (sender[0] - entry.amount, entry.seq), seq)
        recipient = self.accounts.rows.get((entry.recipient,), ((0, 0), 0))[0]
        self.accounts.put((entry.recipient,), (recipient[0] + entry.amount, recipient[1]), seq)
        self.ledger_head = (entry.index, digest, minted, mints)
        self.ledger_head_seq = seq

    # --- expected rows in table form ---

    def participant_rows(self) -> dict[Key, tuple[tuple[Any, ...], int]]:
        return {(a,): (p.values(), p.last_write) for a, p in self.participants.items()}

    def asset_rows(self) -> list[tuple[tuple[Any, ...], int]]:
        return [
            ((address, *v), self.asset_seq.get((address, v[0], v[5]), 0))
            for address, versions in self.assets.items()
            for v in versions
        ]

    @staticmethod
    def order_rows(part: Partition) -> dict[Key, tuple[tuple[Any, ...], int]]:
        return {
            (address, oid): (values, part.order_seq[address])
            for address, book in part.orders.items()
            for oid, values in book.items()
        }


def payload_hash(signed: bytes) -> bytes:
    return hashlib.sha256(signed).digest()


__all__ = [
    "ENVELOPE_FIELDS",
    "FILL_FIELDS",
    "INTERVAL_FIELDS",
    "NO_ENTRY",
    "ORDER_FIELDS",
    "PARTICIPANT_FIELDS",
    "READING_FIELDS",
    "ZONE_RESULT_FIELDS",
    "Inconsistency",
    "Partition",
    "Replay",
    "ReplayError",
    "Table",
    "compare_multiset",
    "compare_rows",
    "payload_hash",
]
