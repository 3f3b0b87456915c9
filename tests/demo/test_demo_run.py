"""The demo end to end: a real grid server, simulated households, accelerated time."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_socket

from grid_server.cli.demo import summary_lines
from grid_server.demo.runner import Demo, DemoOptions, Started, Status
from grid_server.service.audit_verify import verify_log
from p2p_energy_client.units import format_utc

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
        # 18 s of real time for two simulated hours: at this speed the grid's
        # allowed clock skew (300 s) is 0.75 real seconds, enough on a busy machine.
        speed=400,
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
    # Paid on the local ledger: households paid what they owed, in full, and
    # the grid paid producers what reached the payout threshold.
    assert s.statements_due_micro > 0 and s.statements_credit_micro > 0
    assert s.statements_unpaid_due == 0 and result.over_cap == 0
    assert s.paid_micro == s.statements_due_micro
    assert s.payments > 0 and s.payouts > 0
    assert not s.payouts_pending
    # Money: every settled interval sums to zero, every statement equals its
    # lines, the ledger verifies and the grid's account matches the payments
    # and payouts; what households paid net went to the utility and the grid.
    assert s.reconciled, (s.interval_imbalances, s.statement_mismatches, s.ledger_mismatches)
    assert s.participants_net_micro == s.utility_income_micro + s.grid_income_micro

    # What the households learned from their live streams matches the grid's
    # records: every fill of the span reached its household, once.
    end = format_utc(s.end)
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT p.address, f.interval_start, f.order_id FROM fills f "
            "JOIN participants p ON p.id = f.participant_id WHERE f.interval_start < ?",
            (end.replace("T", " ").removesuffix("Z"),),
        ).fetchall()
        stored_assets = db.execute("SELECT COUNT(*) FROM assets").fetchone()[0]
    assert stored_assets == assets
    fills: dict[str, set[str]] = {h.address: set() for h in demo.households}
    for address, interval, order_id in rows:
        moment = datetime.fromisoformat(interval).replace(tzinfo=UTC)
        fills[address].add(f"{moment.isoformat()}|{order_id}")
    assert rows
    for household in demo.households:
        assert household.household is not None
        counted = {
            key
            for key in household.household.to_state()["counted_fills"]
            if datetime.fromisoformat(key.split("|")[0]) < s.end
        }
        assert counted == fills[household.address]

    # The audit log explains every table row: an honest demo verifies, tables included.
    report = await verify_log(f"sqlite:///{database}", workers=0)
    assert report.ok, report.problem
    assert report.state_checked and report.intervals_compared >= intervals
    assert {"ledger", "payment", "payout", "settlement"} <= set(report.kinds)


async def test_demo_with_sharing_shares_what_the_market_left(tmp_path: Path) -> None:
    """The same morning with sharing after delivery on: deviations are shared, the money
    still reconciles, and every household counted what the grid settled for it."""
    asyncio.get_running_loop().set_debug(False)
    options = DemoOptions(
        households=HOUSEHOLDS,
        speed=400,
        days=HOURS / 24,
        seed=3,
        start=START,
        port=0,
        database=tmp_path / "grid.db",
        settlement_period_seconds=3600,
        sharing=True,
    )
    demo = Demo(options)
    result = await demo.run(on_started=lambda _s: None, on_status=lambda _s: None)
    s = result.summary
    assert result.sharing and s.intervals_settled == HOURS * 4
    assert s.shared_in_wh == s.shared_out_wh > 0
    assert s.neighbourhood_wh == s.local_wh + s.shared_in_wh
    assert s.sharing_grid_micro > 0  # the grid's spread is its own line
    assert s.sharing_saved_micro > 0  # against the utility taking the same deviations
    assert s.reconciled, (s.interval_imbalances, s.statement_mismatches, s.ledger_mismatches)
    assert s.participants_net_micro == s.utility_income_micro + s.grid_income_micro
    lines = "\n".join(summary_lines(result))
    assert "shared after delivery" in lines and "stayed in the neighbourhood" in lines
    # Each shared Wh was received by one household and given by another; each
    # household counted its side from the grid's settled events.
    counted = 0
    for household in demo.households:
        assert household.household is not None
        counted += household.household.to_state()["totals"]["shared_wh"]
    assert counted == s.shared_in_wh + s.shared_out_wh
