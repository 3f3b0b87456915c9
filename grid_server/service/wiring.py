"""The running grid: every service built in one place (:func:`build_grid`), run together.

Each service gets only what it uses (the database, the clock, the schedule,
config values, the event hub, the metrics, the payment side); none of them
knows the :class:`Grid`. The API, the CLI and the demo build a grid here and
reach its parts through it.

:class:`Grid` owns the lifecycle: :meth:`Grid.open` migrates (when
configured), seeds the database from the config file and loads the grid's
ledger key; :meth:`Grid.start` also starts the group-commit writer, the
interval cycle and the payout worker and, on PostgreSQL, listens for the
events other workers add; :meth:`Grid.stop` stops taking work, commits
everything already accepted and closes the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from dataclasses import dataclass, field

from grid_server.config import GridConfig, Settings
from grid_server.domain.assets import AssetLimits
from grid_server.domain.clock import Clock, FileClock, SystemClock
from grid_server.domain.schedule import Schedule
from grid_server.storage.db import Database
from grid_server.storage.migrate import upgrade

from .audit import AuditTrail
from .audit_anchor import Anchoring
from .cycle import IntervalCycle
from .events import NOTIFY_CHANNEL, EventHub
from .faults import Faults
from .ingest import Writer
from .ledger_key import load_grid_key
from .membership import Membership
from .meters import MeterChecks, Meters
from .metrics import Metrics
from .onboarding import Onboarding
from .operator import Operator
from .payments import PaymentService
from .payouts import PayoutWorker
from .ratelimit import RateLimiter
from .transaction import IngestRules

_LOGGER = logging.getLogger(__name__)


@dataclass(eq=False)
class Grid:
    """One grid's services, as :func:`build_grid` wired them, and their lifecycle."""

    settings: Settings
    config: GridConfig
    clock: Clock
    schedule: Schedule
    db: Database
    metrics: Metrics
    faults: Faults  # test-only halting points (off unless P2P_TEST_FAULTS is set)
    hub: EventHub
    limiter: RateLimiter
    membership: Membership
    payments: PaymentService
    payouts: PayoutWorker
    anchoring: Anchoring
    audit: AuditTrail
    operator: Operator
    meters: Meters
    cycle: IntervalCycle
    writer: Writer
    onboarding: Onboarding
    ready: bool = False
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def grid_id(self) -> str:
        return self.config.id

    async def open(self, *, ledger: bool = True) -> None:
        """Migrate (when configured), seed the database from the config file, load the key.

        ``ledger=False``: leave the grid's ledger key alone (operator commands that do not
        pay or sign need no key, and must not make one).
        """
        if self.settings.migrate_on_start:
            await upgrade(self.db)
        await self.operator.seed(self.config)
        if ledger:
            await self.payments.open()

    async def start(self) -> None:
        await self.open()
        self.writer.start()
        if self.settings.run_cycle:
            self.cycle.loop.start()
            self.payouts.loop.start()
        if self.db.is_postgres:
            self._tasks.append(asyncio.create_task(self._listen(), name="p2p-listen"))
        self.ready = True

    async def stop(self) -> None:
        """Stop taking work, commit everything already accepted, close the database."""
        self.ready = False
        await self.cycle.loop.stop()
        await self.anchoring.stop()
        await self.payouts.loop.stop()
        await self.payments.close()
        await self.writer.drain()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.db.dispose()

    async def _listen(self) -> None:
        """Wake this process's stream listeners when another worker adds events."""
        import asyncpg  # noqa: PLC0415 - an optional dependency, used on PostgreSQL only

        dsn = self.db.url.replace("postgresql+asyncpg://", "postgresql://")
        while True:
            try:
                conn = await asyncpg.connect(dsn)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda *_, lost=lost: lost.set())
                await conn.add_listener(NOTIFY_CHANNEL, lambda *_: self.hub.notify())
                try:
                    await lost.wait()
                finally:
                    await conn.close()
            except asyncio.CancelledError:
                raise
            except Exception:
                _LOGGER.warning("event listener lost its connection; retrying", exc_info=True)
                await asyncio.sleep(2)


def build_grid(settings: Settings, clock: Clock | None = None) -> Grid:
    """Build every service of the grid ``settings`` describes and hand each what it uses."""
    config = settings.grid
    grid_id = config.id
    if clock is None:
        clock = FileClock(settings.test_clock_file) if settings.test_clock_file else SystemClock()
    schedule = Schedule(
        config.interval_minutes,
        config.gate_closure_seconds,
        config.settlement_window_seconds,
        config.order_horizon_seconds,
        config.settlement_period_seconds,
    )
    db = Database(settings.database_url)
    metrics = Metrics()
    faults = Faults(settings.test_faults, settings.test_fault_dir)
    hub = EventHub()
    payments = PaymentService(
        grid_id=grid_id,
        currency=config.currency,
        config=config.ledger,
        db=db,
        clock=clock,
        load_key=functools.partial(load_grid_key, settings),
    )
    payouts = PayoutWorker(
        grid_id=grid_id, db=db, clock=clock, payments=payments, hub=hub, faults=faults
    )
    anchoring = Anchoring(
        grid_id=grid_id,
        db=db,
        clock=clock,
        audit=config.audit,
        ledger=config.ledger,
        payments=payments,
    )
    audit = AuditTrail(grid_id=grid_id, db=db, clock=clock, schedule=schedule, anchoring=anchoring)

    membership = Membership(db)

    def status_changed(address: str, status: str) -> None:
        if status != "active":
            membership.forget(address)
        hub.notify()  # live streams look at their participant's status again

    def after_payments() -> None:
        hub.notify()
        payouts.loop.wake()

    approval = config.meters.approval.limits()
    rules = IngestRules(
        grid_id=grid_id,
        limits=AssetLimits(schedule, config.household_max_power_w, approval=approval),
        join_zone=config.join_zone,
        session_ttl_seconds=settings.session_ttl_seconds,
        payments=payments,
        after_payments=after_payments,
    )
    writer = Writer(
        db=db,
        clock=clock,
        rules=rules,
        metrics=metrics,
        faults=faults,
        max_batch=settings.writer_max_batch,
    )
    return Grid(
        settings=settings,
        config=config,
        clock=clock,
        schedule=schedule,
        db=db,
        metrics=metrics,
        faults=faults,
        hub=hub,
        limiter=RateLimiter(settings),
        membership=membership,
        payments=payments,
        payouts=payouts,
        anchoring=anchoring,
        audit=audit,
        operator=Operator(
            grid_id=grid_id, db=db, clock=clock, schedule=schedule, on_status=status_changed
        ),
        meters=Meters(grid_id=grid_id, db=db, clock=clock, limits=approval),
        cycle=IntervalCycle(
            grid_id=grid_id,
            currency=config.currency,
            schedule=schedule,
            db=db,
            clock=clock,
            payments=payments,
            audit=audit,
            hub=hub,
            metrics=metrics,
            faults=faults,
            meters=MeterChecks(
                grid_id=grid_id,
                db=db,
                schedule=schedule,
                rules=config.meter_rules(),
                limits=approval,
            ),
            on_statements=payouts.loop.wake,
            sharing=config.sharing,
        ),
        writer=writer,
        onboarding=Onboarding(writer=writer, payments=payments),
    )
