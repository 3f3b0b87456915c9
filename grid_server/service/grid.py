"""The running grid: settings, clock, database, writer, cycle and events, run together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select

from grid_server.config import GridConfig, PriceConfig, Settings, ZoneConfig
from grid_server.domain.clock import Clock, FileClock, SystemClock
from grid_server.domain.schedule import Schedule
from grid_server.storage import audit_log
from grid_server.storage.db import Database, advisory_key
from grid_server.storage.migrate import upgrade
from grid_server.storage.schema import grid_state, utility_prices, zones
from p2p_energy_client.protocol import canonical_json
from p2p_energy_client.units import format_price, format_utc, parse_price

from .events import NOTIFY_CHANNEL, EventHub
from .faults import Faults
from .ingest import Writer
from .metrics import Metrics
from .ratelimit import RateLimiter

_LOGGER = logging.getLogger(__name__)


class GridService:
    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.config: GridConfig = settings.grid
        self.grid_id = self.config.id
        if clock is None:
            clock = (
                FileClock(settings.test_clock_file) if settings.test_clock_file else SystemClock()
            )
        self.clock: Clock = clock
        self.schedule = Schedule(
            self.config.interval_minutes,
            self.config.gate_closure_seconds,
            self.config.settlement_window_seconds,
            self.config.order_horizon_seconds,
            self.config.settlement_period_seconds,
        )
        self.db = Database(settings.database_url)
        self.metrics = Metrics()
        # Test-only halting points (off unless P2P_TEST_FAULTS is set).
        self.faults = Faults(settings.test_faults, settings.test_fault_dir)
        self.hub = EventHub()
        self.writer = Writer(self, settings.writer_max_batch)
        self.limiter = RateLimiter(settings)
        from .cycle import IntervalCycle  # noqa: PLC0415 - the cycle needs this class

        self.cycle = IntervalCycle(self)
        from .payments import PaymentService  # noqa: PLC0415 - it needs this class too

        self.payments = PaymentService(self)
        self.ready = False
        self._listener: Any = None
        self._tasks: list[asyncio.Task[None]] = []

    def interval_lock_key(self, interval: datetime) -> int:
        return advisory_key(self.grid_id, "interval", interval.isoformat())

    async def open(self) -> None:
        """Migrate (when configured) and seed the database from the config file."""
        if self.settings.migrate_on_start:
            await upgrade(self.db)
        await self.seed()
        await self.payments.open()

    async def start(self) -> None:
        await self.open()
        self.writer.start()
        if self.settings.run_cycle:
            self.cycle.start()
        self.payments.start()
        if self.db.is_postgres:
            self._tasks.append(asyncio.create_task(self._listen(), name="p2p-listen"))
        self.ready = True

    async def stop(self) -> None:
        """Stop taking work, commit everything already accepted, close the database."""
        self.ready = False
        await self.cycle.stop()
        await self.payments.stop()
        await self.writer.drain()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.db.dispose()

    async def seed(self) -> None:
        now = self.clock.now()
        async with self.db.write() as conn:
            await self.db.advisory_xact_lock(conn, advisory_key(self.grid_id, "seed"), wait=True)
            if (
                await conn.scalar(
                    select(grid_state.c.grid).where(grid_state.c.grid == self.grid_id)
                )
                is None
            ):
                await conn.execute(
                    insert(grid_state).values(
                        grid=self.grid_id, cycle_from=self.schedule.start_of(now), created_at=now
                    )
                )
            # What the config file adds is logged like the operator's own changes.
            logged: list[tuple[str, str, bytes]] = []
            known_zones = set((await conn.scalars(select(zones.c.id))).all())
            # Parents before children, so the foreign key holds.
            pending = [z for z in self.config.zones if z.id not in known_zones]
            while pending:
                ready = [z for z in pending if z.parent is None or z.parent in known_zones]
                if not ready:
                    raise ValueError("zones in the config file do not form a tree")
                for zone in ready:
                    await conn.execute(
                        insert(zones).values(
                            id=zone.id,
                            name=zone.name,
                            parent=zone.parent,
                            fee=zone.fee,
                            fee_ticks=parse_price(zone.fee),
                            capacity_up_wh=zone.capacity_up_wh,
                            capacity_down_wh=zone.capacity_down_wh,
                            updated_at=now,
                        )
                    )
                    logged.append(("operator", zone.id, _seeded_zone(zone)))
                    known_zones.add(zone.id)
                pending = [z for z in pending if z not in ready]
            known_prices = set((await conn.scalars(select(utility_prices.c.effective_from))).all())
            for price in self.config.prices:
                if price.effective_from not in known_prices:
                    await conn.execute(
                        insert(utility_prices).values(
                            effective_from=price.effective_from,
                            retail=price.retail,
                            feed_in=price.feed_in,
                            retail_ticks=parse_price(price.retail),
                            feed_in_ticks=parse_price(price.feed_in),
                            created_at=now,
                        )
                    )
                    logged.append(
                        ("operator", format_utc(price.effective_from), _seeded_price(price))
                    )
            await audit_log.ensure_head(conn, self.grid_id)
            if logged:
                await audit_log.append(conn, self.db, self.grid_id, logged, now)

    async def _listen(self) -> None:
        """Wake this process's stream listeners when another worker adds events."""
        import asyncpg  # noqa: PLC0415 - PostgreSQL only

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


def _seeded_zone(zone: ZoneConfig) -> bytes:
    """The audit record of a zone added from the config file (as ``operator.upsert_zone``)."""
    return canonical_json(
        {
            "action": "zone",
            "id": zone.id,
            "name": zone.name,
            "parent": zone.parent,
            "fee": zone.fee,
            "fee_ticks": parse_price(zone.fee),
            "capacity_up_wh": zone.capacity_up_wh,
            "capacity_down_wh": zone.capacity_down_wh,
            "source": "config",
        }
    )


def _seeded_price(price: PriceConfig) -> bytes:
    """The audit record of a price step from the config file (as ``operator.set_price``)."""
    return canonical_json(
        {
            "action": "price",
            "effective_from": format_utc(price.effective_from),
            "retail": format_price(parse_price(price.retail)),
            "feed_in": format_price(parse_price(price.feed_in)),
            "source": "config",
        }
    )
