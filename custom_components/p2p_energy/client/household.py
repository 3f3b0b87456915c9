"""One household's whole routine, without Home Assistant.

Home Assistant wraps this class in a coordinator; the demo runs hundreds of
them against a live grid. Both feed it meter totals and call its steps, so
every simulated household runs exactly what a real one runs:

* :meth:`Household.observe` / :meth:`Household.mark_unavailable`: meter totals in.
* :meth:`Household.report`: finished intervals go to the outbox and are sent.
* :meth:`Household.trade`: the strategy's orders for the next intervals.
* :meth:`Household.handle_event`: live events (market results, fills,
  statements, payments) update prices and running totals, exactly once;
  the grid's answers about its meters (approvals, flagged readings) update
  what it holds back (:mod:`.meter_trust`).
* :meth:`Household.refresh`: the polling fallback when the stream is down.
* :meth:`Household.pay_due`: statements are paid within the daily cap.

All state is JSON-able (:meth:`Household.to_state`) so it survives restarts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final, Protocol

from .backoff import retry_delay
from .grid_client import GridClient, GridUnavailable
from .ledger.base import LedgerError
from .meter_trust import AssetHold, MeterTrust, ReadingFlag
from .metering import MeterTracker
from .models import SHARED_LINE_KINDS, Event, Fill, GridInfo, LineItem, MarketResult, Statement
from .outbox import Outbox, Rejected
from .protocol import MAX_READINGS_PER_ENVELOPE, ErrorCode, OrderSpec, ProtocolError, Reading
from .receipt_keeper import ReceiptKeeper
from .receipts import VerifiedReceipt
from .strategy import Forecaster, Limits, StrategyKind, plan_orders
from .units import interval_start, parse_price, parse_utc

_LOGGER = logging.getLogger(__name__)

# Refusals that say nothing about the reading itself: send it again later.
# Any other refusal that names a reading (also a code this client does not
# know yet) means that reading can never be accepted as it is: it is set aside
# with the grid's code and message, for the owner to see.
_TRANSIENT: Final = frozenset(
    {
        ErrorCode.MALFORMED,  # with a known code only: see _is_permanent
        ErrorCode.BAD_SIGNATURE,
        ErrorCode.STALE_TIMESTAMP,
        ErrorCode.REPLAY,
        ErrorCode.UNAUTHENTICATED,
        ErrorCode.TOO_LARGE,
        ErrorCode.RATE_LIMITED,
        ErrorCode.UNAVAILABLE,
    }
)
_AUTH_LOST: Final = frozenset({ErrorCode.NOT_MEMBER, ErrorCode.SUSPENDED})
_COUNTED_FILLS_KEPT: Final = 2000
_SETTLED_KEPT: Final = 2000
# A participant's settlement lines by side of the physical meter: energy it
# took from the grid (bought from neighbours, shared in, or at retail) and
# energy it gave (sold, shared out, or at feed-in).
IMPORT_LINES: Final = frozenset({"market_buy", "shortfall_retail", "shared_in"})
EXPORT_LINES: Final = frozenset({"market_sell", "surplus_feed_in", "shared_out"})
# A failed payment is tried again after 1, 2, 4 … minutes, at most every 6 hours.
PAYMENT_RETRY_FIRST: Final = timedelta(minutes=1)
PAYMENT_RETRY_LONGEST: Final = timedelta(hours=6)


@dataclass(frozen=True, slots=True)
class Asset:
    """A source or consumer meter as the household knows it."""

    id: str
    role: str  # "source" or "meter"
    rated_power_w: int | None = None


@dataclass(slots=True)
class TradingOptions:
    enabled: bool = True
    strategy: StrategyKind = StrategyKind.RESERVE
    min_sell_price: str = "0.1000"
    max_buy_price: str = "0.3000"
    trade_ahead: int = 4
    daily_cap_micro: int = 5_000_000
    auto_pay: bool = True


@dataclass(frozen=True, slots=True)
class HouseholdEvent:
    """Something an owner may want to automate on: ``trade``, ``statement``, ``payment``,
    ``shared`` (neighbours shared energy with it after delivery, once per settled interval),
    ``asset_approval`` (the operator approved or refused an asset), ``reading_flagged`` (a
    reading was settled at its plausible bound) and ``flag_decision`` (the operator decided)."""

    kind: str
    data: dict[str, Any]


@dataclass(slots=True)
class Totals:
    """Running totals since the household joined (exact: Wh and 10^-9 currency)."""

    sold_wh: int = 0
    bought_wh: int = 0
    revenue_nano: int = 0
    cost_nano: int = 0
    savings_nano: int = 0  # against selling at feed-in and buying at retail
    # Sharing after delivery: shortfalls neighbours covered plus surpluses they
    # took, and what that was worth against buying at retail / selling at
    # feed-in (also counted in ``savings_nano``).
    shared_wh: int = 0
    shared_value_nano: int = 0


@dataclass(slots=True)
class GridCosts:
    """What settlement says the household's grid connection cost, everything included.

    Unlike :class:`Totals` (market trades at gate closure), these are the
    settled lines of every interval: market trades *and* what went at retail
    and feed-in, for the energy the meters measured. ``import_micro`` is paid
    for energy taken from the grid, ``export_micro`` received for energy given
    (both >= 0 in practice); Wh are the energy those lines are for.
    """

    import_micro: int = 0
    import_wh: int = 0
    export_micro: int = 0
    export_wh: int = 0
    settled_intervals: int = 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the household's dashboards show, at one moment."""

    connected: bool
    last_contact: datetime | None
    price_now: str | None
    price_next: str | None
    totals: Totals
    amount_due_micro: int
    readings_pending: int
    readings_rejected: int
    last_readings: Mapping[str, int]
    unpaid: tuple[Statement, ...]
    over_cap: tuple[Statement, ...]
    failed_payments: Mapping[str, str]
    wallet: WalletView | None = None
    # The audit trail: the last receipt verified against the bytes sent.
    last_receipt: VerifiedReceipt | None = None
    receipts_pending: int = 0
    receipt_failures: int = 0
    grid_costs: GridCosts = field(default_factory=GridCosts)
    # Assets the grid does not take readings and orders of (yet), and flagged
    # readings the operator has not decided on (see .meter_trust).
    asset_holds: Mapping[str, AssetHold] = field(default_factory=dict)
    reading_flags: tuple[ReadingFlag, ...] = ()


@dataclass(frozen=True, slots=True)
class WalletView:
    """The household's balance on the grid's ledger, as a decimal in ``unit``."""

    value: Decimal
    unit: str


class PaymentPort(Protocol):
    """Pays a statement through the grid's ledger; returns the transaction id.

    Implementations must be idempotent for one statement: calling again for
    a statement whose payment may already have gone through must not pay twice.
    """

    async def pay(self, statement: Statement) -> str: ...


@dataclass(slots=True)
class _State:
    trackers: dict[str, MeterTracker] = field(default_factory=dict)
    outbox: Outbox = field(default_factory=Outbox)
    forecaster: Forecaster | None = None
    placed: dict[str, tuple[OrderSpec, ...]] = field(default_factory=dict)  # interval → plan
    counted_fills: dict[str, None] = field(default_factory=dict)  # ordered set
    totals: Totals = field(default_factory=Totals)
    last_event_id: int = 0
    last_seq: int = 0
    prices: dict[str, str] = field(default_factory=dict)  # interval → own zone price
    last_readings: dict[str, int] = field(default_factory=dict)
    paid: dict[str, str] = field(default_factory=dict)  # statement id → tx id
    spent_by_day: dict[str, int] = field(default_factory=dict)  # ISO date → micro-units
    grid_costs: GridCosts = field(default_factory=GridCosts)
    settled: dict[str, None] = field(default_factory=dict)  # intervals counted (ordered set)
    # asset → the last refused interval its owner has seen (ISO), see refusals()
    refusals_seen: dict[str, str] = field(default_factory=dict)
    trust: MeterTrust = field(default_factory=MeterTrust)


class Household:
    """A household: its meters, outbox, strategy, payments and totals."""

    def __init__(
        self,
        client: GridClient,
        grid: GridInfo,
        *,
        zone: str,
        assets: Iterable[Asset],
        options: TradingOptions | None = None,
        state: Mapping[str, Any] | None = None,
        payer: PaymentPort | None = None,
        on_event: Callable[[HouseholdEvent], None] | None = None,
    ) -> None:
        self.client = client
        self.grid = grid
        self.zone = zone
        self.assets = {a.id: a for a in assets}
        self.options = options or TradingOptions()
        self.payer = payer
        self.on_event = on_event
        self._s = _load_state(state, grid.interval_minutes)
        self._s.trust.forget_outdated({a.id: a.rated_power_w for a in self.assets.values()})
        self.connected = False
        self.last_contact: datetime | None = None
        self.key_rejected: ProtocolError | None = None
        self.unpaid: dict[str, Statement] = {}
        self.over_cap: dict[str, Statement] = {}
        self.failed_payments: dict[str, str] = {}
        # Statement id → (consecutive failures, when pay_due tries again).
        self.payment_retry: dict[str, tuple[int, datetime]] = {}
        self.wallet: WalletView | None = None
        # Receipts of own readings and orders, verified offline (see .receipts).
        self.receipts = ReceiptKeeper.from_state((state or {}).get("receipts"))

    @staticmethod
    def stored_last_seq(state: Mapping[str, Any] | None) -> int:
        """The last sequence number a stored state used (for the new GridClient)."""
        return int((state or {}).get("last_seq", 0))

    # -- time ------------------------------------------------------------------------

    @property
    def interval(self) -> timedelta:
        return timedelta(minutes=self.grid.interval_minutes)

    def current_interval(self, now: datetime) -> datetime:
        return interval_start(now, self.grid.interval_minutes)

    def next_open_interval(self, now: datetime) -> datetime:
        """The first interval whose gate has not closed yet."""
        start = self.current_interval(now) + self.interval
        while start - timedelta(seconds=self.grid.gate_closure_seconds) <= now:
            start += self.interval
        return start

    # -- metering --------------------------------------------------------------------

    def _tracker(self, asset_id: str) -> MeterTracker:
        tracker = self._s.trackers.get(asset_id)
        if tracker is None:
            tracker = MeterTracker(self.grid.interval_minutes)
            self._s.trackers[asset_id] = tracker
        return tracker

    def observe(self, asset_id: str, total_wh: float, at: datetime) -> None:
        """A meter's cumulative total (Wh) at ``at``."""
        asset = self.assets.get(asset_id)
        max_power = asset.rated_power_w if asset is not None else None
        self._tracker(asset_id).observe(total_wh, at, max_power or None)

    def mark_unavailable(self, asset_id: str) -> None:
        self._tracker(asset_id).mark_unavailable()

    def collect(self, now: datetime) -> list[Reading]:
        """Move every finished interval's energy into the outbox; returns the new readings."""
        new: list[Reading] = []
        for asset_id, tracker in self._s.trackers.items():
            if asset_id not in self.assets:
                continue  # retired: its tracker stays until the owner removes it
            new.extend(Reading(e.interval, asset_id, e.energy_wh) for e in tracker.finalize(now))
        if new:
            self._s.outbox.add(new)
            self._learn(new)
        return new

    def _learn(self, readings: list[Reading]) -> None:
        by_interval: dict[datetime, list[int]] = {}
        for reading in readings:
            asset = self.assets[reading.asset]
            slot = by_interval.setdefault(reading.interval, [0, 0])
            slot[0 if asset.role == "source" else 1] += reading.energy_wh
        forecaster = self._forecaster()
        for interval, (produced, consumed) in sorted(by_interval.items()):
            forecaster.learn(interval, produced, consumed)

    def _forecaster(self) -> Forecaster:
        if self._s.forecaster is None:
            self._s.forecaster = Forecaster(self.grid.interval_minutes)
        return self._s.forecaster

    async def report(self, now: datetime) -> int:
        """Collect finished intervals and send everything pending; returns readings acknowledged."""
        self.collect(now)
        self._set_aside_refused()
        sent = 0
        outbox, trust = self._s.outbox, self._s.trust
        while batch := outbox.batch(MAX_READINGS_PER_ENVELOPE, skip=trust.held_assets(now)):
            try:
                await self.client.send_readings(batch)
            except GridUnavailable as exc:
                self._lost_contact(exc)
                break
            except ProtocolError as exc:
                if not self._handle_refusal(exc, batch, now):
                    break
                continue
            outbox.acknowledge(batch)
            trust.accepted({r.asset for r in batch})  # taken: approved meanwhile
            # What the grid accepted, in interval order: a refused reading is
            # never shown as reported.
            for reading in batch:
                self._s.last_readings[reading.asset] = reading.energy_wh
            self._contact(now)
            sent += len(batch)
        self._s.last_seq = self.client.last_seq
        self.track_sent()
        return sent

    def _handle_refusal(self, exc: ProtocolError, batch: list[Reading], now: datetime) -> bool:
        """Hold or set aside the reading a refusal names; False when nothing can proceed."""
        if exc.code in _AUTH_LOST:
            self.key_rejected = exc
            return False
        index = _reading_index(exc.field)
        if index is not None and index < len(batch) and _waits_for_operator(exc):
            self._hold(batch[index].asset, exc.message, now)
            return True
        if _is_permanent(exc) and index is not None and index < len(batch):
            reading = batch[index]
            _LOGGER.warning("grid refused reading %s: %s", reading, exc.message)
            self._s.outbox.set_aside(reading, exc.wire_code, exc.message)
            return True
        _LOGGER.warning("grid refused readings: %s", exc.message)
        return False

    def _hold(self, asset_id: str, message: str, now: datetime) -> None:
        """The grid does not take the asset's readings until the operator approves it."""
        asset = self.assets.get(asset_id)
        hold = self._s.trust.refused_asset(
            asset_id,
            message,
            rated_power_w=asset.rated_power_w if asset is not None else None,
            now=now,
            interval=self.interval,
            absolute_power_w=(self.grid.approval_limits or {}).get("absolute_power_w"),
        )
        _LOGGER.info("grid holds readings of %s (%s): %s", asset_id, hold.status, message)
        self._set_aside_refused()

    def _set_aside_refused(self) -> None:
        """Readings of refused assets can never be accepted: out of the queue, with why."""
        holds = self._s.trust.assets
        refused = self._s.trust.refused_assets()
        for reading in [r for r in self._s.outbox.pending.values() if r.asset in refused]:
            code = str(ErrorCode.ASSET_NOT_APPROVED)
            self._s.outbox.set_aside(reading, code, holds[reading.asset].message)

    def asset_holds(self) -> dict[str, AssetHold]:
        """Declared assets the grid does not take readings and orders of: waiting or refused."""
        return {a: h for a, h in self._s.trust.assets.items() if a in self.assets}

    def reading_flags(self) -> list[ReadingFlag]:
        """Readings of declared assets settled at their bound, undecided, oldest first."""
        return [f for f in self._s.trust.flags.values() if f.asset in self.assets]

    def refusals(self) -> dict[str, list[Rejected]]:
        """Readings the grid refused for good that the owner has not seen, by asset, in order."""
        found: dict[str, list[Rejected]] = {}
        for item in self._s.outbox.rejected:
            if item.code == ErrorCode.ASSET_NOT_APPROVED:
                continue  # the asset's refusal says it (asset_holds)
            asset = item.reading.asset
            seen = self._s.refusals_seen.get(asset)
            if asset in self.assets and (seen is None or item.reading.interval.isoformat() > seen):
                found.setdefault(asset, []).append(item)
        for items in found.values():
            items.sort(key=lambda r: r.reading.interval)
        return found

    def acknowledge_refusals(self, asset_id: str) -> None:
        """The owner has seen the asset's refused readings (they stay in the diagnostics)."""
        items = self.refusals().get(asset_id)
        if items:
            self._s.refusals_seen[asset_id] = items[-1].reading.interval.isoformat()

    # -- trading ------------------------------------------------------------------------

    def limits(self) -> Limits:
        sources = [a for a in self.assets.values() if a.role == "source"]
        meters = [a for a in self.assets.values() if a.role == "meter"]
        hours = self.grid.interval_minutes / 60
        max_sell = sum(a.rated_power_w or 0 for a in sources)
        meter_powers = [a.rated_power_w for a in meters]
        max_buy = (
            int(sum(p for p in meter_powers if p) * hours)
            if meter_powers and all(meter_powers)
            else None
        )
        return Limits(
            parse_price(self.options.min_sell_price),
            parse_price(self.options.max_buy_price),
            max_sell_wh=int(max_sell * hours) if sources else 0,
            max_buy_wh=max_buy,
        )

    async def trade(self, now: datetime, solar_forecast_wh: int | None = None) -> int:
        """Place the strategy's orders for the next intervals; returns intervals changed."""
        if not self.options.enabled:
            return 0
        changed = 0
        first = self.next_open_interval(now)
        limits = self.limits()
        for k in range(self.options.trade_ahead):
            interval = first + k * self.interval
            # An external forecast covers the next hour only.
            within_hour = interval - now < timedelta(hours=1)
            forecast = solar_forecast_wh if within_hour else None
            expectation = self._forecaster().expect(interval, forecast)
            if expectation is None:
                return changed
            plan = self._tradable(plan_orders(self.options.strategy, expectation, limits), now)
            key = interval.isoformat()
            previous = self._s.placed.get(key, ())
            if _close_enough(plan, previous):
                continue
            try:
                plan = await self._submit(interval, plan, previous, now)
            except GridUnavailable as exc:
                self._lost_contact(exc)
                return changed
            except ProtocolError as exc:
                if exc.code in _AUTH_LOST:
                    self.key_rejected = exc
                    return changed
                _LOGGER.info("orders for %s refused: %s", interval, exc.message)
                continue
            self._s.placed[key] = plan
            self._contact(now)
            changed += 1
        self._forget_old(now)
        self._s.last_seq = self.client.last_seq
        self.track_sent()
        return changed

    def _tradable(self, plan: tuple[OrderSpec, ...], now: datetime) -> tuple[OrderSpec, ...]:
        """The plan without the sides the grid holds (an asset that could back them waits)."""
        roles = {a.id: a.role for a in self.assets.values()}
        held = self._s.trust.held_sides(now, roles)
        return tuple(o for o in plan if str(o.side) not in held)

    async def _submit(
        self,
        interval: datetime,
        plan: tuple[OrderSpec, ...],
        previous: tuple[OrderSpec, ...],
        now: datetime,
    ) -> tuple[OrderSpec, ...]:
        """Place ``plan`` instead of ``previous``; returns what the grid took.

        A side the grid refuses with ``asset_not_approved`` is held (see
        :mod:`.meter_trust`) and the rest placed at once: the other side
        need not wait for the operator.
        """
        while True:
            stale = tuple(o.id for o in previous if o.id not in {p.id for p in plan})
            if not plan and not stale:
                return plan
            try:
                await self.client.submit_orders(interval, place=plan, cancel=stale)
            except ProtocolError as exc:
                index = _order_index(exc.field)
                if not _waits_for_operator(exc) or index is None or index >= len(plan):
                    raise
                side = str(plan[index].side)
                _LOGGER.info("grid holds %s orders: %s", side, exc.message)
                self._s.trust.refused_side(side, exc.message, now, self.interval)
                plan = tuple(o for o in plan if str(o.side) != side)
                continue
            for side in {str(o.side) for o in plan}:
                self._s.trust.accepted_side(side)
            return plan

    def _forget_old(self, now: datetime) -> None:
        horizon = self.current_interval(now) - timedelta(days=2)
        for book in (self._s.placed, self._s.prices):
            for key in [k for k in book if datetime.fromisoformat(k) < horizon]:
                del book[key]

    # -- events ------------------------------------------------------------------------------

    def handle_event(self, event: Event) -> None:
        """Apply one live event; events already seen (by id) are ignored."""
        if event.id <= self._s.last_event_id:
            return
        self._s.last_event_id = event.id
        if event.kind == "market_result":
            self._apply_market(MarketResult.from_wire({**event.data, "fills": []}))
        elif event.kind == "fills":
            self._apply_fills(Fill.from_wire(f) for f in event.data.get("fills", ()))
        elif event.kind == "statement":
            self._apply_statement(Statement.from_wire(event.data))
        elif event.kind == "payment":
            self._emit("payment", event.data)
        elif event.kind == "settled":
            lines = [LineItem.from_wire(x) for x in event.data.get("lines", ())]
            self._apply_settlement(parse_utc(event.data["interval"]), lines)
        else:
            self._apply_meter_event(event)

    def _apply_meter_event(self, event: Event) -> None:
        """The grid's answers about the household's meters (see :mod:`.meter_trust`)."""
        trust, data = self._s.trust, event.data
        if event.kind == "asset_approval":
            trust.approval(data)
            self._set_aside_refused()
            keys = ("asset", "status", "approved_power_w", "reason")
            self._emit("asset_approval", {k: data.get(k) for k in keys})
        elif event.kind == "reading_flagged":
            self._emit("reading_flagged", trust.flagged(data).to_wire())
        elif event.kind == "flag_decision":
            trust.decided(data)
            keys = ("asset", "interval", "decision", "note")
            self._emit("flag_decision", {k: data.get(k) for k in keys})

    @property
    def last_event_id(self) -> int:
        return self._s.last_event_id

    def _apply_market(self, result: MarketResult) -> None:
        for zone in result.zones:
            if zone.zone == self.zone:
                self._s.prices[result.interval.isoformat()] = zone.price

    def _apply_fills(self, fills: Iterable[Fill]) -> None:
        for fill in fills:
            key = f"{fill.interval.isoformat()}|{fill.order_id}"
            if key in self._s.counted_fills:
                continue
            self._s.counted_fills[key] = None
            while len(self._s.counted_fills) > _COUNTED_FILLS_KEPT:
                del self._s.counted_fills[next(iter(self._s.counted_fills))]
            if fill.filled_wh <= 0:
                continue
            self._count_fill(fill)
            self._emit(
                "trade",
                {
                    "interval": fill.interval.isoformat(),
                    "order_id": fill.order_id,
                    "side": fill.side,
                    "energy_wh": fill.filled_wh,
                    "price": fill.price,
                    "zone": fill.zone,
                },
            )

    def _count_fill(self, fill: Fill) -> None:
        price = parse_price(fill.price)
        retail, feed_in = self._utility_prices(fill.interval)
        totals = self._s.totals
        if fill.side == "sell":
            totals.sold_wh += fill.filled_wh
            totals.revenue_nano += price * fill.filled_wh
            totals.savings_nano += (price - feed_in) * fill.filled_wh
        else:
            totals.bought_wh += fill.filled_wh
            totals.cost_nano += price * fill.filled_wh
            totals.savings_nano += (retail - price) * fill.filled_wh

    def _apply_settled(self, interval: datetime, lines: list[LineItem]) -> None:
        """Count an interval's sharing after delivery, and tell the owner about it."""
        shared = [x for x in lines if x.kind in SHARED_LINE_KINDS and x.energy_wh > 0]
        if not shared:
            return
        retail, feed_in = self._utility_prices(interval)
        totals = self._s.totals
        value = 0
        for line in shared:
            price = parse_price(line.price)
            # A shortfall pays p_in <= retail, a surplus earns p_out >= feed-in.
            gap = retail - price if line.kind == "shared_in" else price - feed_in
            value += gap * line.energy_wh
            totals.shared_wh += line.energy_wh
        totals.shared_value_nano += value
        totals.savings_nano += value
        self._emit(
            "shared",
            {
                "interval": interval.isoformat(),
                "received_wh": sum(x.energy_wh for x in shared if x.kind == "shared_in"),
                "given_wh": sum(x.energy_wh for x in shared if x.kind == "shared_out"),
                "amount_micro": sum(x.amount_micro for x in shared),
                "value_nano": value,
            },
        )

    def _utility_prices(self, interval: datetime) -> tuple[int, int]:
        step = self.grid.prices
        for candidate in sorted(self.grid.price_schedule, key=lambda p: p.effective_from):
            if candidate.effective_from <= interval:
                step = candidate
        return parse_price(step.retail), parse_price(step.feed_in)

    def _apply_settlement(self, interval: datetime, lines: Iterable[LineItem]) -> None:
        """Count one settled interval's lines into the grid costs, exactly once."""
        key = interval.isoformat()
        if key in self._s.settled:
            return
        self._s.settled[key] = None
        while len(self._s.settled) > _SETTLED_KEPT:
            del self._s.settled[next(iter(self._s.settled))]
        items = list(lines)
        self._apply_settled(interval, items)  # sharing after delivery, counted once too
        costs = self._s.grid_costs
        costs.settled_intervals += 1
        for line in items:
            # Amounts: > 0 the household owes the grid, < 0 the grid owes it.
            owed = line.kind not in EXPORT_LINES and line.amount_micro > 0
            if line.kind in IMPORT_LINES or owed:
                costs.import_micro += line.amount_micro
                costs.import_wh += line.energy_wh
            else:
                costs.export_micro -= line.amount_micro
                costs.export_wh += line.energy_wh

    @property
    def settled_until(self) -> datetime | None:
        """The latest interval whose settlement was counted."""
        if not self._s.settled:
            return None
        return max(datetime.fromisoformat(k) for k in self._s.settled)

    def _apply_statement(self, statement: Statement) -> None:
        known = self.unpaid.get(statement.id)
        if statement.status == "paid" or statement.amount_due_micro <= statement.paid_micro:
            self.unpaid.pop(statement.id, None)
            self.over_cap.pop(statement.id, None)
        else:
            self.unpaid[statement.id] = statement
        if known is None or known.status != statement.status:
            self._emit(
                "statement",
                {
                    "statement_id": statement.id,
                    "period_start": statement.period_start.isoformat(),
                    "period_end": statement.period_end.isoformat(),
                    "amount_due_micro": statement.amount_due_micro,
                    "paid_micro": statement.paid_micro,
                    "status": statement.status,
                    "currency": statement.currency,
                },
            )

    def _emit(self, kind: str, data: dict[str, Any]) -> None:
        if self.on_event is not None:
            self.on_event(HouseholdEvent(kind, data))

    # -- polling fallback -----------------------------------------------------------------------

    async def refresh(self, now: datetime) -> None:
        """Fetch prices, fills and statements directly (when the stream is down)."""
        current = self.current_interval(now)
        try:
            for interval in (current, current + self.interval):
                result = await self.client.market(interval)
                self._apply_market(result)
                self._apply_fills(result.fills)
            for statement in await self.client.statements():
                self._apply_statement(statement)
            await self._fetch_settlements(current)
        except GridUnavailable as exc:
            self._lost_contact(exc)
            return
        except ProtocolError as exc:
            if exc.code in _AUTH_LOST:
                self.key_rejected = exc
            return
        self._contact(now)

    async def _fetch_settlements(self, current: datetime) -> None:
        """Settled lines the stream did not bring (counted once, whichever brings them)."""
        # The grid answers ranges of up to 31 days; a first look goes back two.
        oldest = current - timedelta(days=30)
        since = self.settled_until
        since = current - timedelta(days=2) if since is None else since + self.interval
        since = max(since, oldest)
        if since >= current:
            return
        by_interval: dict[datetime, list[LineItem]] = {}
        for line in await self.client.line_items(since, current):
            by_interval.setdefault(line.interval, []).append(line)
        for interval in sorted(by_interval):
            self._apply_settlement(interval, by_interval[interval])

    # -- payments ----------------------------------------------------------------------------------

    def paid_tx(self, statement_id: str) -> str | None:
        """The transaction that paid a statement from here, if any."""
        return self._s.paid.get(statement_id)

    def spent_on(self, day: date) -> int:
        return self._s.spent_by_day.get(day.isoformat(), 0)

    def _outstanding(self, statement: Statement) -> int:
        return statement.amount_due_micro - statement.paid_micro

    async def pay_due(self, today: date, now: datetime | None = None) -> list[str]:
        """Pay unpaid statements that fit under today's cap; returns the statement ids paid.

        With ``now``, a statement whose payment failed waits for its retry
        time (:attr:`payment_retry`); without it, every one is tried.
        """
        if self.payer is None or not self.options.auto_pay:
            return []
        paid: list[str] = []
        for statement in sorted(self.unpaid.values(), key=lambda s: s.period_start):
            due = self._outstanding(statement)
            if due <= 0 or statement.id in self._s.paid:
                continue
            if self.spent_on(today) + due > self.options.daily_cap_micro:
                self.over_cap[statement.id] = statement
                continue
            retry = self.payment_retry.get(statement.id)
            if now is not None and retry is not None and now < retry[1]:
                continue
            if await self.pay(statement, today):
                paid.append(statement.id)
            elif now is not None:
                failures = (retry[0] if retry else 0) + 1
                wait = retry_delay(
                    failures,
                    first=PAYMENT_RETRY_FIRST.total_seconds(),
                    longest=PAYMENT_RETRY_LONGEST.total_seconds(),
                )
                self.payment_retry[statement.id] = (failures, now + timedelta(seconds=wait))
        return paid

    def retry_payments_now(self) -> None:
        """Something changed that may let failed payments through (money arrived)."""
        self.payment_retry.clear()

    async def pay(self, statement: Statement, today: date) -> bool:
        """Pay one statement now (also above the cap: the caller decided). True when paid."""
        assert self.payer is not None
        if statement.id in self._s.paid:
            return True
        try:
            tx_id = await self.payer.pay(statement)
        except (GridUnavailable, OSError) as exc:
            _LOGGER.debug("payment of %s failed: %r", statement.id, exc)
            self.failed_payments[statement.id] = "the grid or the ledger could not be reached"
            return False
        except ProtocolError as exc:
            self.failed_payments[statement.id] = exc.message
            return False
        except LedgerError as exc:
            # Refused or in doubt on the ledger; the payer never pays twice.
            self.failed_payments[statement.id] = str(exc)
            return False
        due = self._outstanding(statement)
        self._s.paid[statement.id] = tx_id
        key = today.isoformat()
        self._s.spent_by_day[key] = self._s.spent_by_day.get(key, 0) + due
        self.failed_payments.pop(statement.id, None)
        self.payment_retry.pop(statement.id, None)
        self.over_cap.pop(statement.id, None)
        self.unpaid.pop(statement.id, None)
        self._emit(
            "payment",
            {"statement_id": statement.id, "amount_micro": due, "tx_id": tx_id},
        )
        return True

    async def refresh_wallet(self) -> WalletView | None:
        """Ask the ledger for the wallet's balance (when the payer can tell it)."""
        balance = getattr(self.payer, "wallet_balance", None)
        if balance is None:
            return None
        try:
            found = await balance()
        except (GridUnavailable, ProtocolError, LedgerError, OSError) as exc:
            _LOGGER.debug("wallet balance unavailable: %s", exc)
            return self.wallet
        self.wallet = WalletView(Decimal(found.value), str(found.display_unit))
        return self.wallet

    # -- contact and state ------------------------------------------------------------------------

    def note_contact(self, now: datetime) -> None:
        """The caller reached the grid on the household's behalf (e.g. at start-up)."""
        self._contact(now)

    def note_lost_contact(self, exc: Exception) -> None:
        """The caller found the grid unreachable on the household's behalf (e.g. the stream)."""
        self._lost_contact(exc)

    def _contact(self, now: datetime) -> None:
        # Debug only: the caller (Home Assistant's coordinator, the demo)
        # reports the connection to its user, once per change.
        if not self.connected:
            _LOGGER.debug("grid %s reachable", self.grid.grid)
        self.connected = True
        self.last_contact = now
        self.key_rejected = None

    def _lost_contact(self, exc: Exception) -> None:
        if self.connected:
            _LOGGER.debug("grid %s unreachable: %r", self.grid.grid, exc)
        self.connected = False

    # -- receipts ---------------------------------------------------------------------------

    def track_sent(self) -> None:
        """Keep the bytes of the readings and orders just sent, for their receipts."""
        self.receipts.track(self.client.sent_since(self.receipts.last_tracked_seq))

    async def check_receipts(self) -> list[VerifiedReceipt]:
        """Fetch receipts of own readings and orders and verify them offline.

        A receipt becomes available once the grid has closed the envelope's
        interval; until then it waits. A receipt that does not prove the
        bytes this household sent is a failure (``receipts.failures``).
        """
        try:
            return await self.receipts.check(self.client)
        except GridUnavailable as exc:
            self._lost_contact(exc)
            return []

    def snapshot(self, now: datetime) -> Snapshot:
        current = self.current_interval(now)
        return Snapshot(
            connected=self.connected,
            last_contact=self.last_contact,
            price_now=self._s.prices.get(current.isoformat()),
            price_next=self._s.prices.get((current + self.interval).isoformat()),
            totals=Totals(**{k: getattr(self._s.totals, k) for k in Totals.__dataclass_fields__}),
            amount_due_micro=sum(self._outstanding(s) for s in self.unpaid.values()),
            readings_pending=len(self._s.outbox),
            readings_rejected=len(self._s.outbox.rejected),
            last_readings=dict(self._s.last_readings),
            unpaid=tuple(self.unpaid.values()),
            over_cap=tuple(self.over_cap.values()),
            failed_payments=dict(self.failed_payments),
            wallet=self.wallet,
            last_receipt=self.receipts.last_verified,
            receipts_pending=len(self.receipts.pending),
            receipt_failures=len(self.receipts.failures),
            grid_costs=GridCosts(
                **{k: getattr(self._s.grid_costs, k) for k in GridCosts.__dataclass_fields__}
            ),
            asset_holds=self.asset_holds(),
            reading_flags=tuple(self.reading_flags()),
        )

    def to_state(self) -> dict[str, Any]:
        s = self._s
        return {
            "trackers": {k: t.to_state() for k, t in s.trackers.items()},
            "outbox": s.outbox.to_state(),
            "forecaster": s.forecaster.to_state() if s.forecaster else None,
            "placed": {k: [o.to_wire() for o in v] for k, v in s.placed.items()},
            "counted_fills": list(s.counted_fills),
            "totals": {k: getattr(s.totals, k) for k in Totals.__dataclass_fields__},
            "last_event_id": s.last_event_id,
            "last_seq": max(s.last_seq, self.client.last_seq),
            "prices": dict(s.prices),
            "last_readings": dict(s.last_readings),
            "paid": dict(s.paid),
            "spent_by_day": dict(list(sorted(s.spent_by_day.items()))[-7:]),
            "receipts": self.receipts.to_state(),
            "grid_costs": {k: getattr(s.grid_costs, k) for k in GridCosts.__dataclass_fields__},
            "settled": list(s.settled),
            "refusals_seen": dict(s.refusals_seen),
            "meter_trust": s.trust.to_state(),
        }


def _load_state(state: Mapping[str, Any] | None, interval_minutes: int) -> _State:
    s = _State()
    if not state:
        return s
    s.trackers = {k: MeterTracker.from_state(v) for k, v in state.get("trackers", {}).items()}
    s.outbox = Outbox.from_state(state.get("outbox", {}))
    if state.get("forecaster"):
        s.forecaster = Forecaster.from_state(state["forecaster"])
    s.placed = {
        k: tuple(OrderSpec.from_wire(o, "placed") for o in v)
        for k, v in state.get("placed", {}).items()
    }
    s.counted_fills = dict.fromkeys(state.get("counted_fills", ()))
    s.totals = Totals(**state.get("totals", {}))
    s.last_event_id = int(state.get("last_event_id", 0))
    s.last_seq = int(state.get("last_seq", 0))
    s.prices = dict(state.get("prices", {}))
    s.last_readings = {k: int(v) for k, v in state.get("last_readings", {}).items()}
    s.paid = dict(state.get("paid", {}))
    s.spent_by_day = {k: int(v) for k, v in state.get("spent_by_day", {}).items()}
    s.grid_costs = GridCosts(**state.get("grid_costs", {}))
    s.settled = dict.fromkeys(state.get("settled", ()))
    s.refusals_seen = dict(state.get("refusals_seen", {}))
    s.trust = MeterTrust.from_state(state.get("meter_trust"))
    for tracker in s.trackers.values():
        if tracker.interval_minutes != interval_minutes:
            raise ValueError("stored meter state is for another interval length")
    return s


# A forecast that moved by less than this is not worth a new order: every
# re-placement costs the household a signed request and the grid a write.
REPLAN_MIN_WH: Final = 25
REPLAN_MIN_FRACTION: Final = 0.05


def _close_enough(plan: tuple[OrderSpec, ...], placed: tuple[OrderSpec, ...]) -> bool:
    """True when ``plan`` differs from what is placed only by a small energy change."""
    if [(o.id, o.side, o.price) for o in plan] != [(o.id, o.side, o.price) for o in placed]:
        return False
    return all(
        abs(new.energy_wh - old.energy_wh)
        <= max(REPLAN_MIN_WH, REPLAN_MIN_FRACTION * old.energy_wh)
        for new, old in zip(plan, placed, strict=True)
    )


def _is_permanent(exc: ProtocolError) -> bool:
    """A refusal of the reading itself (a code unknown to this client counts as one)."""
    unknown_code = exc.wire_code != str(exc.code)
    return unknown_code or exc.code not in _TRANSIENT


def _waits_for_operator(exc: ProtocolError) -> bool:
    """The grid refused for an asset the operator has not approved (see .meter_trust)."""
    return exc.code is ErrorCode.ASSET_NOT_APPROVED and exc.wire_code == str(exc.code)


def _reading_index(field_path: str | None) -> int | None:
    """``payload.readings[3].energy_wh`` → 3."""
    return _list_index(field_path, "payload.readings[")


def _order_index(field_path: str | None) -> int | None:
    """``payload.place[2].side`` → 2."""
    return _list_index(field_path, "payload.place[")


def _list_index(field_path: str | None, prefix: str) -> int | None:
    if not field_path or not field_path.startswith(prefix):
        return None
    digits = field_path[len(prefix) :].split("]", 1)[0]
    return int(digits) if digits.isdigit() else None
