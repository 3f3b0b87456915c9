"""What the integration costs Home Assistant: CPU seconds per household and interval.

Not part of the test suite (the file name does not start with ``test_``);
run it explicitly, on an otherwise idle machine::

    .venv/bin/pytest tests/integration/bench_cpu.py -p no:xdist -s

A real Home Assistant test instance runs HOUSEHOLDS config entries, each
with a solar source and a meter on sensors that grow like real meters, and
trading on. The grid server runs in a process of its own (``p2p-grid
serve`` on SQLite, reading a clock file the benchmark moves), so its work is
not counted. Time moves one minute per step, as in a real installation
(the integration ticks once a minute); every interval the household reads
its meters, signs and sends readings, places orders, follows the live
stream and updates its entities, and after settlement receives statements.

The figure is this process's CPU time (user + system) over INTERVALS
intervals with the entries loaded, minus the same walk with no entries
(Home Assistant's own timers and the benchmark's sensor updates), divided
by households × intervals. Prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import time
from datetime import UTC, timedelta
from pathlib import Path

from freezegun.api import TickingDateTimeFactory
from homeassistant.core import HomeAssistant
from sqlalchemy import text

from custom_components.p2p_energy.const import DOMAIN, SUBENTRY_METER, SUBENTRY_SOURCE
from grid_server.storage.db import Database
from p2p_energy_client.crypto import KeyPair
from p2p_energy_client.grid_client import GridClient
from tests.support.grid_server import sqlite_url
from tests.support.home_assistant import (
    GRID_ID,
    START,
    Member,
    add_asset,
    energy_sensor,
    meter,
    setup_member,
    source,
)
from tests.support.processes import GridProcess, Operator, SharedClock, grid_toml

HOUSEHOLDS = int(os.environ.get("P2P_BENCH_HOUSEHOLDS", "10"))
INTERVALS = int(os.environ.get("P2P_BENCH_INTERVALS", "12"))
MINUTE = timedelta(minutes=1)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _walk(
    hass: HomeAssistant,
    clock: TickingDateTimeFactory,
    shared: SharedClock,
    powers: dict[str, float],
    kwh: dict[str, float],
    minutes: int,
) -> float:
    """Move both clocks ``minutes`` minutes, one minute per step; the CPU seconds it took.

    The event loop's clock follows the moved clock, so Home Assistant's own
    timers (each membership's minute tick, the polling fallback) fire as
    they would. (Not ``async_fire_time_changed``: it runs *every* timer handle
    due within the jump at once, aiohttp's connection timeouts included,
    which tears down the live streams at every step.)
    """
    started = _cpu()
    for _ in range(minutes):
        moment = clock().replace(tzinfo=UTC) + MINUTE
        shared.set(moment)
        clock.move_to(moment)
        for entity_id, watts in powers.items():
            kwh[entity_id] = round(kwh[entity_id] + watts / 60_000, 6)
            energy_sensor(hass, entity_id, kwh[entity_id])
        await asyncio.sleep(0.01)  # timers fire; the live stream's events arrive
        await hass.async_block_till_done()
    return _cpu() - started


async def test_cpu_per_household_and_interval(
    hass: HomeAssistant, clock: TickingDateTimeFactory, tmp_path: Path
) -> None:
    # The test harness runs the loop in asyncio's debug mode, which records a
    # traceback for every callback: many times the integration's own cost.
    # Home Assistant does not run that way.
    hass.loop.set_debug(False)
    shared = SharedClock(tmp_path / "clock", START)
    server = GridProcess(
        "grid",
        sqlite_url(tmp_path),
        tmp_path,
        config=grid_toml(tmp_path / "grid.toml", grid_id=GRID_ID),
        clock=shared,
    )
    operator = Operator(server.url)
    powers: dict[str, float] = {}
    try:
        await server.run()
        members = []
        for n in range(HOUSEHOLDS):
            keys = KeyPair.generate()
            client = GridClient(server.url, keys)
            try:
                await client.join(await operator.invite(), f"House {n}")
            finally:
                await client.close()
            members.append(Member(keys, f"House {n}"))
            powers[f"sensor.pv_{n}"] = 2_000.0 + 300 * (n % 5)
            powers[f"sensor.load_{n}"] = 600.0 + 250 * (n % 4)
        kwh = dict.fromkeys(powers, 10.0)
        for entity_id in powers:
            energy_sensor(hass, entity_id, kwh[entity_id])

        # Baseline: the same walk with no entries.
        baseline = await _walk(hass, clock, shared, powers, kwh, 15 * 2)
        baseline_per_interval = baseline / 2

        for n, member in enumerate(members):
            entry = member.entry(server, url=server.url)  # type: ignore[arg-type]
            await setup_member(hass, entry)
            await add_asset(
                hass, entry.entry_id, SUBENTRY_SOURCE, source("Roof PV", f"sensor.pv_{n}")
            )
            await add_asset(
                hass, entry.entry_id, SUBENTRY_METER, meter("House", f"sensor.load_{n}")
            )
        # Two intervals to settle in (first readings and forecast, sessions, the
        # streams' first events), not counted.
        await _walk(hass, clock, shared, powers, kwh, 30)
        wall = time.perf_counter()
        loaded = await _walk(hass, clock, shared, powers, kwh, 15 * INTERVALS)
        wall = time.perf_counter() - wall
        entries = hass.config_entries.async_entries(DOMAIN)
        assert len(entries) == HOUSEHOLDS
        db = Database(sqlite_url(tmp_path))
        try:
            async with db.read() as conn:
                readings = int(await conn.scalar(text("SELECT count(*) FROM readings")) or 0)
                orders = int(await conn.scalar(text("SELECT count(*) FROM orders")) or 0)
        finally:
            await db.dispose()
        per = (loaded - baseline_per_interval * INTERVALS) / (HOUSEHOLDS * INTERVALS)
        print(
            json.dumps(
                {
                    "households": HOUSEHOLDS,
                    "intervals": INTERVALS,
                    "cpu_seconds_loaded": round(loaded, 3),
                    "cpu_seconds_baseline_per_interval": round(baseline_per_interval, 4),
                    "ms_cpu_per_household_interval": round(per * 1000, 2),
                    "target_ms": 5,
                    "met": per * 1000 < 5,
                    "readings_stored": readings,
                    "orders_stored": orders,
                    "wall_seconds": round(wall, 1),
                    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
                    "load_average": round(os.getloadavg()[0], 2),
                }
            )
        )
        for entry in entries:
            assert await hass.config_entries.async_unload(entry.entry_id)
        await hass.async_block_till_done()
    finally:
        await operator.close()
        await server.stop()
