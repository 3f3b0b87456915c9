"""The interval cycle: clear at gate closure, settle when the window closes, issue statements.

Each step for an interval is one database transaction that stores the
results, appends them to the audit log, adds the live events and moves the
interval's state by compare-and-set (``open → cleared → settled``). If the
state has already moved, the transaction does nothing: an interval is cleared
and settled exactly once, also with several workers (on PostgreSQL each step
additionally runs under ``pg_try_advisory_xact_lock`` of the interval, so one
worker does the work while the others skip it) and after a restart, when the
overdue intervals are processed in order.

Statements: when every interval of a settlement period is settled, each
participant with line items in it gets one statement (total due to or from
the grid); a ``periods`` row (inserted once) makes that exactly once too.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import Histogram
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from grid_server.config import SharingConfig
from grid_server.domain import market
from grid_server.domain.clock import Clock
from grid_server.domain.market.book import as_ints
from grid_server.domain.schedule import Schedule
from grid_server.storage import audit_log
from grid_server.storage import cycle_queries as cq
from grid_server.storage.db import Database, advisory_key, interval_lock_key
from p2p_energy_client.models import (
    Fill,
    LineItem,
    MarketResult,
    SharingInfo,
    Statement,
    ZoneResult,
)
from p2p_energy_client.protocol import canonical_json
from p2p_energy_client.units import format_nano, format_price, format_utc

from . import settlement_port
from .audit import AuditTrail
from .background import BackgroundLoop
from .events import OPERATOR, EventHub, add_events
from .faults import Faults
from .meters import CheckedInterval, MeterChecks
from .metrics import Metrics
from .payments import PaymentService, TermsFactory
from .transaction import Event

_LOGGER = logging.getLogger(__name__)

# Books bigger than this are cleared off the event loop.
THREAD_CLEARING_ORDERS = 20_000
# A step not done this long after it fell due is late: /health says degraded. The
# cycle looks at least every 5 s and clears a large book in a few seconds.
LATE_AFTER = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class Quarantined:
    """An order the engine could not clear, left out of its interval, and why."""

    order: Row[Any]  # cq.book_orders
    reason: str

    def describe(self) -> str:
        return f"{self.order.address}/{self.order.order_id}: {self.reason}"

    def record(self) -> dict[str, Any]:
        return {
            "participant": self.order.address,
            "order_id": self.order.order_id,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class ClearedInterval:
    """One interval's book and what clearing it gave, as stored, logged and announced."""

    t: datetime
    orders: Sequence[Row[Any]]  # cq.book_orders, in the book's order
    prices: cq.Prices
    fills_wh: list[int]  # per order
    zone_prices: dict[str, int]
    zones: list[ZoneResult]
    welfare: str
    quarantined: Sequence[Quarantined] = ()

    def fill_rows(self) -> list[dict[str, Any]]:
        return [
            {
                "interval_start": self.t,
                "participant_id": r.participant_id,
                "order_id": r.order_id,
                "side": r.side,
                "zone": r.zone,
                "energy_wh": r.energy_wh,
                "filled_wh": filled,
                "price_ticks": self.zone_prices[r.zone],
                "limit_ticks": r.price_ticks,
            }
            for r, filled in zip(self.orders, self.fills_wh, strict=True)
        ]

    def zone_rows(self) -> list[dict[str, Any]]:
        return [
            {
                "interval_start": self.t,
                "zone": z.zone,
                "price_ticks": self.zone_prices[z.zone],
                "bought_wh": z.bought_wh,
                "sold_wh": z.sold_wh,
                "utility_buy_wh": z.utility_buy_wh,
                "utility_sell_wh": z.utility_sell_wh,
                "flow_to_parent_wh": z.flow_to_parent_wh,
            }
            for z in self.zones
        ]

    def public(self) -> MarketResult:
        return MarketResult(self.t, "cleared", tuple(self.zones), (), self.welfare)

    def record(self) -> dict[str, Any]:
        """The audit log's ``market_result``: the public result, every fill, the prices."""
        return {
            **self.public().to_wire(),
            "fills": [
                {"participant": r.address, "order_id": r.order_id, "filled_wh": f}
                for r, f in zip(self.orders, self.fills_wh, strict=True)
            ],
            "utility": {
                "retail": format_price(self.prices.retail_ticks),
                "feed_in": format_price(self.prices.feed_in_ticks),
            },
            # Set aside: neither filled nor counted (see market.clear_isolating).
            **({"quarantined": [q.record() for q in self.quarantined]} if self.quarantined else {}),
        }

    def events(self) -> list[Event]:
        """The public result, and each participant's fills on its own stream."""
        per_participant: dict[int, list[Fill]] = defaultdict(list)
        for r, filled in zip(self.orders, self.fills_wh, strict=True):
            per_participant[r.participant_id].append(
                Fill(
                    self.t,
                    r.order_id,
                    r.side,
                    r.zone,
                    r.energy_wh,
                    filled,
                    format_price(self.zone_prices[r.zone]),
                    format_price(r.price_ticks),
                )
            )
        events: list[Event] = [(None, "market_result", self.public().to_wire())]
        events.extend(
            (pid, "fills", {"interval": format_utc(self.t), "fills": [f.to_wire() for f in fl]})
            for pid, fl in per_participant.items()
        )
        for q in self.quarantined:
            data = {"interval": format_utc(self.t), **q.record()}
            # The household learns why its order did not trade; the operator, what to look at.
            events.append((q.order.participant_id, "order_quarantined", data))
            events.append((OPERATOR, "order_quarantined", data))
        return events


def cleared_interval(
    t: datetime,
    orders: Sequence[Row[Any]],
    prices: cq.Prices,
    result: market.MarketResult,
    quarantined: Sequence[Quarantined] = (),
) -> ClearedInterval:
    """What clearing ``orders`` gave, with each zone's energy bought and sold in it."""
    fills_wh = as_ints(result.fills_wh)
    outcomes = result.zones()
    zone_prices = {z.zone: z.price_ticks for z in outcomes}
    bought: dict[str, int] = defaultdict(int)
    sold: dict[str, int] = defaultdict(int)
    for r, filled in zip(orders, fills_wh, strict=True):
        (bought if r.side == "buy" else sold)[r.zone] += filled
    zones = [
        ZoneResult(
            z.zone,
            format_price(z.price_ticks),
            bought[z.zone],
            sold[z.zone],
            z.utility_buy_wh,
            z.utility_sell_wh,
            z.flow_to_parent_wh,
        )
        for z in outcomes
    ]
    return ClearedInterval(
        t,
        orders,
        prices,
        fills_wh,
        zone_prices,
        zones,
        format_nano(result.welfare_nano),
        quarantined,
    )


@dataclass(kw_only=True, eq=False)
class IntervalCycle:
    """Clears, settles and issues statements when due (see the module documentation).

    ``on_statements`` runs after statements were issued (wakes the payout worker).
    """

    grid_id: str
    currency: str
    schedule: Schedule
    db: Database
    clock: Clock
    payments: PaymentService
    audit: AuditTrail
    hub: EventHub
    metrics: Metrics
    faults: Faults
    meters: MeterChecks
    on_statements: Callable[[], None]
    sharing: SharingConfig  # [grid.sharing]: off unless the grid config turns it on

    def __post_init__(self) -> None:
        # The cycle's own task (the grid starts it unless tests drive the cycle by hand).
        self.loop = BackgroundLoop(
            "p2p-cycle",
            self.run_due,
            self._next_pass_delay,
            failure="interval cycle step failed; retrying",
            logger=_LOGGER,
        )

    def _next_pass_delay(self) -> float:
        """Until the next gate closure or window close (at most 5 s, at least 10 ms)."""
        return max(min(self._seconds_to_next(), 5.0), 0.01)

    def _seconds_to_next(self) -> float:
        now = self.clock.now()
        schedule = self.schedule
        next_gate = schedule.gate_closure(schedule.last_gate_closed(now) + schedule.length)
        next_window = schedule.window_close(schedule.last_window_closed(now) + schedule.length)
        return self.clock.seconds_until(min(next_gate, next_window))

    async def run_due(self) -> None:
        """Do every step that is due at the grid clock's now, in order."""
        schedule = self.schedule
        now = self.clock.now()
        async with self.db.read() as conn:
            progress = await cq.progress(conn, self.grid_id)
        if progress.cycle_from is None:
            return
        t = progress.cycle_from
        if progress.last_cleared is not None:
            t = max(t, progress.last_cleared + schedule.length)
        last_due = schedule.last_gate_closed(now)
        while t <= last_due and not self.loop.stopping:
            if not await self.clear_interval(t):
                break
            t += schedule.length
        if progress.first_unsettled is not None:
            t = progress.first_unsettled
            last_window = schedule.last_window_closed(self.clock.now())
            while t <= last_window and not self.loop.stopping:
                if not await self.settle_interval(t):
                    break
                t += schedule.length
        await self.issue_due_statements(progress.cycle_from)
        await self.audit.close_due()

    async def lateness(self) -> dict[str, dict[str, Any]]:
        """The steps overdue by more than :data:`LATE_AFTER`, each with its interval.

        ``{"clearing": {"interval", "due", "behind_seconds"}, "settlement": {…}}``;
        empty when the cycle keeps up. Also sets the ``p2p_cycle_behind_seconds`` gauge.
        """
        schedule = self.schedule
        now = self.clock.now()
        async with self.db.read() as conn:
            progress = await cq.progress(conn, self.grid_id)
            started = await cq.grid_started(conn, self.grid_id)
        due: dict[str, tuple[datetime, datetime]] = {}
        if progress.cycle_from is not None and started is not None:
            t = progress.cycle_from
            if progress.last_cleared is not None:
                t = max(t, progress.last_cleared + schedule.length)
            # The first interval's gate closed before the grid existed: due from its start.
            due["clearing"] = (t, max(schedule.gate_closure(t), started))
        if progress.first_unsettled is not None:
            t = progress.first_unsettled
            due["settlement"] = (t, schedule.window_close(t))
        late: dict[str, dict[str, Any]] = {}
        for step in ("clearing", "settlement"):
            behind = 0
            if step in due:
                t, at = due[step]
                behind = max(int((now - at - LATE_AFTER).total_seconds()), 0)
                if behind:
                    late[step] = {
                        "interval": format_utc(t),
                        "due": format_utc(at),
                        "behind_seconds": behind,
                    }
            self.metrics.cycle_behind.labels(step).set(behind)
        return late

    async def _lock_interval(self, conn: AsyncConnection, t: datetime) -> bool:
        """Interval ``t``'s lock for this transaction; False when another worker holds it."""
        return await self.db.advisory_xact_lock(
            conn, interval_lock_key(self.grid_id, t), wait=False
        )

    def _done(self, step: str, seconds: Histogram, started: float) -> None:
        """After a step committed: wake the live streams, count it and its time."""
        self.hub.notify()
        seconds.observe(time.perf_counter() - started)
        self.metrics.intervals.labels(step).inc()

    # --- clearing -----------------------------------------------------------------

    async def clear_interval(self, t: datetime) -> bool:
        """Clear interval ``t``; False when another worker holds it (try again later)."""
        started = time.perf_counter()
        async with self.db.write() as conn:
            if not await self._lock_interval(conn, t):
                return False
            if await cq.ensure_interval(conn, t) != "open":
                return True
            now = self.clock.now()
            orders, prices, book = await self._load_book(conn, t)
            isolated = await _solve(book, [r.participant_id for r in orders])
            quarantined = [
                Quarantined(orders[i], reason) for i, reason in isolated.quarantined.items()
            ]
            kept = [orders[i] for i in isolated.kept]
            cleared = cleared_interval(t, kept, prices, isolated.result, quarantined)
            await self._store_clearing(conn, cleared, now, started)
            await self._announce(conn, cleared, now)
            await self.faults.reach("cycle.clear", format_utc(t))
        if quarantined:
            self.metrics.quarantined.inc(len(quarantined))
            _LOGGER.warning(
                "cleared %s without %d order(s) the engine refused: %s",
                format_utc(t),
                len(quarantined),
                "; ".join(q.describe() for q in quarantined),
            )
        self._done("cleared", self.metrics.clearing_seconds, started)
        _LOGGER.info(
            "cleared %s: %d orders, welfare %s", format_utc(t), len(cleared.orders), cleared.welfare
        )
        return True

    async def _load_book(
        self, conn: AsyncConnection, t: datetime
    ) -> tuple[Sequence[Row[Any]], cq.Prices, market.Book]:
        """Interval ``t``'s orders, the utility's prices then, and the book they make."""
        orders = await cq.book_orders(conn, t)
        zones = await cq.load_zones(conn)
        prices = await cq.prices_at(conn, t)
        book = market.Book(
            market.Utility(prices.retail_ticks, prices.feed_in_ticks),
            tuple(zones),
            tuple(
                market.Order(
                    f"{r.participant_id}:{r.order_id}",
                    r.zone,
                    "buy" if r.side == "buy" else "sell",
                    r.energy_wh,
                    r.price_ticks,
                )
                for r in orders
            ),
        )
        return orders, prices, book

    async def _store_clearing(
        self, conn: AsyncConnection, cleared: ClearedInterval, now: datetime, started: float
    ) -> None:
        """The interval ``cleared`` (compare-and-set), its zone results and fills."""
        await cq.move_interval(
            conn,
            cleared.t,
            "open",
            "clearing",
            state="cleared",
            cleared_at=now,
            welfare=cleared.welfare,
            orders=len(cleared.orders),
            clearing_ms=int((time.perf_counter() - started) * 1000),
        )
        await cq.insert_clearing(conn, cleared.zone_rows(), cleared.fill_rows())

    async def _announce(
        self, conn: AsyncConnection, cleared: ClearedInterval, now: datetime
    ) -> None:
        """The market result in the audit log, and the live events (public and each fill)."""
        record = canonical_json(cleared.record())
        await audit_log.append(
            conn, self.db, self.grid_id, [("market_result", format_utc(cleared.t), record)], now
        )
        await add_events(conn, cleared.events(), now, postgres=self.db.is_postgres)

    # --- settlement ---------------------------------------------------------------

    async def settle_interval(self, t: datetime) -> bool:
        db = self.db
        started = time.perf_counter()
        async with db.write() as conn:
            if not await self._lock_interval(conn, t):
                return False
            if await cq.interval_state(conn, t) != "cleared":
                return True
            now = self.clock.now()
            # Readings as the grid believes them: each at most its plausible bound.
            checked = await self.meters.check(conn, t)
            inputs = await self._settlement_inputs(conn, t, checked)
            lines = settlement_port.settle(inputs)
            accepted = await self.meters.accepted_lines(conn, now)
            lines += accepted
            addresses = inputs.addresses
            if accepted:  # their households need not have traded or metered in ``t``
                extra, _ = await cq.addresses_and_zones(
                    conn, {a.participant_id for a in accepted if a.participant_id is not None}
                )
                addresses = {**addresses, **extra}
            flag_log, flag_events = await self.meters.record(conn, t, checked, now)
            await cq.move_interval(
                conn,
                t,
                "cleared",
                "settlement",
                state="settled",
                settled_at=now,
                settlement_ms=int((time.perf_counter() - started) * 1000),
            )
            if lines:
                await cq.insert_line_items(conn, [_line_row(t, line) for line in lines])
            record = canonical_json(
                _settlement_record(
                    t, lines, addresses, self.sharing.info(), self.schedule.interval_minutes
                )
            )
            # The chain head last (storage.audit_log): the flags' entry, then the settlement's.
            await audit_log.append(
                conn, db, self.grid_id, [*flag_log, ("settlement", format_utc(t), record)], now
            )
            events = [*flag_events, *_settlement_events(t, lines)]
            await add_events(conn, events, now, postgres=db.is_postgres)
            await self.faults.reach("cycle.settle", format_utc(t))
        self._done("settled", self.metrics.settlement_seconds, started)
        return True

    async def _settlement_inputs(
        self, conn: AsyncConnection, t: datetime, checked: CheckedInterval
    ) -> settlement_port.IntervalInputs:
        prices = await cq.prices_at(conn, t)
        zone_rows = await cq.cleared_zones(conn, t)
        fill_rows = await cq.cleared_fills(conn, t)
        produced, consumed = checked.produced, checked.consumed
        pids = {r.participant_id for r in fill_rows} | set(produced) | set(consumed)
        addresses, zone_of = await cq.addresses_and_zones(conn, pids)
        return settlement_port.IntervalInputs(
            interval=t,
            interval_minutes=self.schedule.interval_minutes,
            retail_ticks=prices.retail_ticks,
            feed_in_ticks=prices.feed_in_ticks,
            zone_prices={r.zone: r.price_ticks for r in zone_rows},
            zone_flows={
                r.zone: (r.utility_buy_wh, r.utility_sell_wh, r.flow_to_parent_wh)
                for r in zone_rows
            },
            zones=tuple(await cq.load_zones(conn)),
            fills=tuple(
                settlement_port.FillInput(
                    r.participant_id, r.order_id, r.side, r.zone, r.filled_wh, r.price_ticks
                )
                for r in fill_rows
            ),
            metered={
                pid: settlement_port.Metered(produced.get(pid, 0), consumed.get(pid, 0))
                for pid in pids
            },
            zone_of=zone_of,
            addresses=addresses,
            sharing=self.sharing.rule(),
        )

    # --- statements ---------------------------------------------------------------

    async def issue_due_statements(self, cycle_from: datetime) -> None:
        schedule = self.schedule
        async with self.db.read() as conn:
            last_settled, first_open = await cq.settled_until(conn)
            last_issued = await cq.last_period(conn)
        if last_settled is None:
            return
        # Everything before this moment is settled.
        settled_until = first_open if first_open is not None else last_settled + schedule.length
        p = (
            schedule.period_start(cycle_from)
            if last_issued is None
            else schedule.period_end(last_issued)
        )
        while schedule.period_end(p) <= settled_until and not self.loop.stopping:
            if not await self.issue_statements(p):
                break
            p = schedule.period_end(p)

    async def issue_statements(self, period_start: datetime) -> bool:
        db = self.db
        period_end = self.schedule.period_end(period_start)
        # The ledger terms (rate, amount in ledger units, due time) of this period.
        terms = await self.payments.terms_factory(self.clock.now())
        async with db.write() as conn:
            key = advisory_key(self.grid_id, "period", period_start.isoformat())
            if not await db.advisory_xact_lock(conn, key, wait=False):
                return False
            now = self.clock.now()
            if not await cq.claim_period(conn, period_start, now):
                return True
            totals = await cq.period_totals(conn, period_start, period_end)
            issued = [self._statement(r, period_start, period_end, now, terms) for r in totals]
            if issued:
                await self._store_statements(conn, issued, totals, now)
        self.hub.notify()
        self.on_statements()
        self.metrics.intervals.labels("statements").inc()
        return True

    def _statement(
        self,
        total: Row[Any],
        period_start: datetime,
        period_end: datetime,
        now: datetime,
        terms: TermsFactory,
    ) -> Statement:
        return Statement(
            statement_id(self.grid_id, total.address, period_start),
            total.address,
            period_start,
            period_end,
            self.currency,
            int(total.due),
            0,
            "issued",
            now,
            int(total.n),
            ledger=terms.for_amount(int(total.due), now),
        )

    async def _store_statements(
        self,
        conn: AsyncConnection,
        issued: list[Statement],
        totals: Sequence[Row[Any]],
        now: datetime,
    ) -> None:
        """Statements and their terms, their log entries and each owner's event."""
        await cq.insert_statements(
            conn,
            [
                {
                    "id": s.id,
                    "participant_id": r.participant_id,
                    "period_start": s.period_start,
                    "period_end": s.period_end,
                    "currency": s.currency,
                    "amount_due_micro": s.amount_due_micro,
                    "paid_micro": 0,
                    # Nothing to pay either way is paid by definition.
                    "status": "issued" if s.amount_due_micro else "paid",
                    "issued_at": now,
                    "intervals": s.intervals,
                }
                for s, r in zip(issued, totals, strict=True)
            ],
        )
        await self.payments.record_terms(conn, issued)
        await audit_log.append(
            conn,
            self.db,
            self.grid_id,
            [("statement", s.id, canonical_json(s.to_wire())) for s in issued],
            now,
        )
        await add_events(
            conn,
            [
                (r.participant_id, "statement", s.to_wire())
                for s, r in zip(issued, totals, strict=True)
            ],
            now,
            postgres=self.db.is_postgres,
        )


async def _solve(book: market.Book, owners: Sequence[int]) -> market.Isolated:
    """Clear ``book`` (a big one in a thread, so requests keep flowing meanwhile).

    ``owners[i]`` is the participant of ``book.orders[i]``: a household's own buy
    never fills against its own sell (a wash trade: fake volume, fake savings).
    Orders the engine cannot clear are set aside, so one never stalls the grid.
    """
    if len(book.orders) > THREAD_CLEARING_ORDERS:
        return await asyncio.to_thread(market.clear_isolating, book, owners)
    return market.clear_isolating(book, owners)


def statement_id(grid: str, address: str, period_start: datetime) -> str:
    digest = hashlib.sha256(f"{grid}|{address}|{format_utc(period_start)}".encode()).hexdigest()
    return f"st-{period_start:%Y%m%d%H%M}-{digest[:16]}"


def _line_row(t: datetime, line: settlement_port.LineOut) -> dict[str, Any]:
    return {
        "interval_start": t,
        "participant_id": line.participant_id,
        "kind": line.kind,
        "energy_wh": line.energy_wh,
        "price_ticks": line.price_ticks,
        "amount_micro": line.amount_micro,
    }


def _settlement_record(
    t: datetime,
    lines: list[settlement_port.LineOut],
    addresses: dict[int, str],
    sharing: SharingInfo,
    interval_minutes: int,
) -> dict[str, Any]:
    """The audit log's ``settlement``: every line, participants named by address.

    With sharing on, the rule it settled with and the interval's length too
    (``audit verify`` settles the interval again with them, from the readings,
    fills and zone results the log holds); without, the entry is exactly what
    it was before sharing existed.
    """
    shared: dict[str, Any] = (
        {"sharing": sharing.to_wire(), "interval_minutes": interval_minutes}
        if sharing.enabled
        else {}
    )
    return {
        "interval": format_utc(t),
        **shared,
        "lines": [
            {
                "participant": None
                if line.participant_id is None
                else addresses[line.participant_id],
                "kind": line.kind,
                "energy_wh": line.energy_wh,
                "price": format_price(line.price_ticks),
                "amount_micro": line.amount_micro,
            }
            for line in lines
        ],
    }


def _settlement_events(t: datetime, lines: list[settlement_port.LineOut]) -> list[Event]:
    """Each participant's own lines, on its stream."""
    by_participant: dict[int, list[LineItem]] = defaultdict(list)
    for line in lines:
        if line.participant_id is not None:
            by_participant[line.participant_id].append(
                LineItem(
                    t, line.kind, line.energy_wh, format_price(line.price_ticks), line.amount_micro
                )
            )
    return [
        (pid, "settled", {"interval": format_utc(t), "lines": [x.to_wire() for x in items]})
        for pid, items in by_participant.items()
    ]


__all__ = [
    "ClearedInterval",
    "IntervalCycle",
    "Quarantined",
    "cleared_interval",
    "statement_id",
]
