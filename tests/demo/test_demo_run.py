"""The demo end to end: a real grid server, simulated households, accelerated time."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_socket

from grid_server.demo.runner import Demo, DemoOptions, Started, Status

pytestmark = pytest.mark.usefixtures("socket_enabled")

START = datetime(2026, 6, 15, 9, 0, tzinfo=UTC)  # a June morning: the sun is up
HOURS = 2
HOUSEHOLDS = 8


@pytest.fixture(autouse=True)
def _loopback(socket_enabled: None) -> None:
    pytest_socket.socket_allow_hosts(["127.0.0.1"])


async def test_demo_trades_settles_and_reconciles(tmp_path: Path) -> None:
    # Home Assistant's test plugin runs the loop in debug mode, several times
    # slower; the demo runs without it, and so does this test.
    asyncio.get_running_loop().set_debug(False)
    database = tmp_path / "grid.db"
    options = DemoOptions(
        households=HOUSEHOLDS,
        # 12 s of real time for two simulated hours; slow enough that envelope
        # timestamps stay within the grid's allowed skew on a busy machine.
        speed=600,
        days=HOURS / 24,
        seed=3,
        start=START,
        port=0,
        database=database,
        settlement_period_seconds=3600,
    )
    demo = Demo(options)
    started: list[Started] = []
    statuses: list[Status] = []
    result = await demo.run(on_started=started.append, on_status=statuses.append, status_every=0.5)

    assert started and started[0].url.startswith("http://127.0.0.1:")
    assert started[0].database == database
    assert statuses and statuses[-1].stats.intervals_cleared > 0
    assert not result.interrupted
    s = result.summary
    intervals = HOURS * 4
    assert (s.start, s.end) == (START, START + timedelta(hours=HOURS))
    assert s.intervals_cleared == intervals
    assert s.intervals_settled == intervals
    # Every asset of every household reported every interval.
    assets = sum(len(spec.assets) for spec in demo.specs)
    assert s.readings == assets * intervals
    # The sun shines on a June morning: neighbours traded with each other.
    assert s.orders > 0
    assert s.local_wh > 0
    # Statements for both settlement periods, one per household with line items.
    assert 0 < s.statements <= HOUSEHOLDS * HOURS
    # Money: every settled interval sums to zero, every statement equals its lines,
    # and what households paid net went to the utility and the grid.
    assert s.reconciled, (s.interval_imbalances, s.statement_mismatches)
    assert s.participants_net_micro == s.utility_income_micro + s.grid_income_micro

    # What the households learned from their live streams matches the grid's records.
    with sqlite3.connect(database) as db:
        fills = dict(
            db.execute(
                "SELECT p.address, SUM(CASE WHEN f.side = 'sell' THEN f.filled_wh ELSE 0 END) "
                "FROM fills f JOIN participants p ON p.id = f.participant_id GROUP BY p.address"
            ).fetchall()
        )
        stored_assets = db.execute("SELECT COUNT(*) FROM assets").fetchone()[0]
    assert stored_assets == assets
    for household in demo.households:
        assert household.household is not None
        totals = household.household.snapshot(START).totals
        assert totals.sold_wh == (fills.get(household.address) or 0)
