"""The dashboard's meters view in headless Debian Chromium.

An asset declared above the grid's approval limit waits on the page and is
approved from it at a lower rating; the household's reading above that rating
shows as flagged with its statement, and paying it at the bound from the page
lets the payout through.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from grid_server.api.dashboard import login_link
from grid_server.config import LedgerConfig
from p2p_energy_client.protocol import Reading, SourceDecl, SourceKind
from tests.support.browser import ARTIFACTS, browser, chromium_path, watched_page
from tests.support.grid_server import run_grid_server
from tests.support.market import issue_statements, only_statement
from tests.support.meters import demo_grid

pytestmark = [
    pytest.mark.usefixtures("socket_enabled"),
    pytest.mark.skipif(chromium_path() is None, reason="Debian's chromium is not installed"),
]

TIMEOUT_MS = 10_000
BIG_PV = SourceDecl("pv", "Field", SourceKind.SOLAR, 50_000)


async def test_approve_an_asset_and_release_a_flagged_reading(tmp_path: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    database = f"sqlite:///{tmp_path / 'grid.db'}"
    config = demo_grid(
        id="test-grid",
        settlement_window_seconds=600,
        settlement_period_seconds=3600,
        ledger=LedgerConfig(payout_policy="float", payout_threshold_micro=1_000),
    )
    async with run_grid_server(database, grid=config) as grid:
        home = await grid.member("The Millers")
        await home.set_assets([BIG_PV], [])
        async with browser() as chromium, watched_page(chromium) as watched:
            page = watched.page
            await page.goto(login_link(grid.app, grid.url))
            await page.get_by_role("link", name="Meters").click()
            view = page.locator('[data-view="meters"]')
            approve = view.get_by_role("button", name="Approve The Millers pv")
            await approve.wait_for(timeout=TIMEOUT_MS)
            assert "rated_power_w 50000 W is above 30000 W" in await view.inner_text()
            await view.get_by_label("Approved rating (W) of The Millers pv").fill("10000")
            await approve.click()
            await page.wait_for_selector("text=No asset waits for approval.", timeout=TIMEOUT_MS)
            assets = await grid.grid.meters.assets()
            assert [(a["status"], a["approved_power_w"]) for a in assets] == [("approved", 10_000)]

            t = grid.grid.schedule.start_of(grid.clock.now()) + timedelta(minutes=15)
            grid.clock.set(t + timedelta(minutes=15, seconds=1))
            await grid.run_cycle()
            await home.send_readings([Reading(t, "pv", 12_000)])
            await issue_statements(grid, t)
            await grid.grid.payments.mint(grid.grid.payments.address, 10_000_000)
            assert (await grid.grid.payouts.run_once()).paid == []

            await page.reload()
            release = view.get_by_role("button", name="Pay at bound: The Millers pv")
            await release.wait_for(timeout=TIMEOUT_MS)
            row = view.locator("tbody tr").filter(has_text="over_rating")
            text = await row.inner_text()
            assert "12000 Wh" in text and "3334 Wh" in text and "over_rating" in text
            await page.screenshot(path=str(ARTIFACTS / "dashboard-meters.png"), full_page=True)
            await release.click()
            await page.wait_for_selector("text=settled at bound", timeout=TIMEOUT_MS)
            report = await grid.grid.payouts.run_once()
            assert [p["recipient"] for p in report.paid] == [home.address]
            assert (await only_statement(home)).status == "paid"
            assert watched.problems() == []
