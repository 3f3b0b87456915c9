"""The dashboard in headless Debian Chromium against a real, populated grid.

Every view loads without a console message or page error, the charts are
drawn from the same numbers the JSON carries, a cleared interval reaches the
open page over the live stream without a reload, the one-time login link
works, and the layout fits a phone. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, WebSocketRoute
from sqlalchemy import func, select

from grid_server.api.dashboard import login_link
from grid_server.config import SharingConfig
from grid_server.storage.schema import events
from tests.support.browser import ARTIFACTS, browser, chromium_path, watched_page
from tests.support.grid_server import OPERATOR_TOKEN, run_grid_server
from tests.support.neighbourhood import (
    Neighbourhood,
    grid_config,
    join_all,
    populate,
    trade_interval,
)

pytestmark = [
    pytest.mark.usefixtures("socket_enabled"),
    pytest.mark.skipif(chromium_path() is None, reason="Debian's chromium is not installed"),
]

TIMEOUT_MS = 10_000


async def values(page: Page, selector: str) -> list[int]:
    found: list[str] = await page.eval_on_selector_all(
        selector, "els => els.map(e => e.getAttribute('data-value'))"
    )
    return [int(float(v)) for v in found]


async def card(page: Page, card_id: str) -> str:
    return (await page.inner_text(f"#{card_id} .value")).strip()


async def open_view(page: Page, base: str, view: str, ready: str) -> None:
    """Navigate by the URL fragment (as the nav links do) and wait for the view's content."""
    await page.goto(f"{base}/dashboard/#{view}")
    await page.wait_for_selector(ready, timeout=TIMEOUT_MS)
    await page.wait_for_function(
        "() => !document.querySelector('[aria-busy=true]')", timeout=TIMEOUT_MS
    )


async def test_every_view_charts_and_a_live_update(tmp_path: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    async with run_grid_server(f"sqlite:///{tmp_path / 'grid.db'}", grid=grid_config()) as grid:
        hood = await populate(grid)
        async with browser() as chromium, watched_page(chromium) as watched:
            page = watched.page
            # The page's live stream passes through here, so the test can cut it.
            streams: list[tuple[WebSocketRoute, WebSocketRoute]] = []

            def through(ws: WebSocketRoute) -> None:
                streams.append((ws, ws.connect_to_server()))

            await page.route_web_socket(re.compile(r".*/dashboard/api/stream.*"), through)
            # Logged out: the form asks for the operator token, the nav is hidden.
            await page.goto(f"{grid.url}/")
            await page.wait_for_selector("#login:not([hidden])", timeout=TIMEOUT_MS)
            assert not await page.is_visible("nav")
            await page.get_by_label("Operator token").fill(OPERATOR_TOKEN)
            await page.get_by_role("button", name="Log in").click()
            await page.wait_for_selector("#price-chart", timeout=TIMEOUT_MS)
            assert page.url.endswith("/dashboard/")
            assert await page.is_visible("nav")
            await page.wait_for_selector("#live.ok", timeout=TIMEOUT_MS)

            await check_overview(page, hood)
            await page.screenshot(path=str(ARTIFACTS / "dashboard-overview.png"), full_page=True)
            await check_live_update(page, hood)
            await page.screenshot(
                path=str(ARTIFACTS / "dashboard-overview-live.png"), full_page=True
            )
            await check_reconnect(page, hood, streams)
            await check_other_views(page, hood)
            assert watched.problems() == []


async def check_overview(page: Page, hood: Neighbourhood) -> None:
    grid = hood.grid
    assert await page.title() == "Overview · grid dashboard"
    assert await page.inner_text("#grid-name") == "Linden Street"
    assert await page.get_attribute("nav a[data-nav=overview]", "aria-current") == "page"
    data = await _json(page, "overview")
    series = data["series"]
    zones = {zone for point in series for zone in point["price_ticks"]}
    # One point per zone and interval in the price chart, at the JSON's prices.
    assert len(zones) == 3
    prices = await values(page, "#price-chart circle.point")
    assert sorted(prices) == sorted(t for p in series for t in p["price_ticks"].values())
    assert await page.locator("#price-chart line.ref").count() == 2  # retail and feed-in
    # The energy bars add up to the JSON's energy.
    local = await values(page, "#energy-chart .layer.local rect.bar")
    assert sum(local) == sum(p["local_wh"] for p in series) == data["totals"]["local_wh"] > 0
    from_utility = await values(page, "#energy-chart .layer.from-utility rect.bar")
    to_utility = await values(page, "#energy-chart .layer.to-utility rect.bar")
    assert sum(from_utility) == data["totals"]["from_utility_wh"]
    assert sum(to_utility) == data["totals"]["to_utility_wh"]
    assert await page.locator("#savings-chart circle.point").count() == len(series)
    assert await card(page, "savings") == _euros(data["totals"]["savings_micro"])
    assert await card(page, "intervals-cleared") == str(data["totals"]["intervals_cleared"])
    # Every chart has a title, a description and a table of its data.
    for chart in ("price-chart", "energy-chart", "savings-chart"):
        labelled = await page.get_attribute(f"#{chart}", "aria-labelledby")
        assert labelled is not None and len(labelled.split()) == 2
        assert await page.get_attribute(f"#{chart}", "role") == "img"
    await page.get_by_text("Data table").first.click()
    rows = page.locator("details[data-key=prices][open] tbody tr")
    assert await rows.count() == len(series)
    # The grid's clock, the current interval and the countdown to the next gate closure.
    assert grid.clock.now().strftime("%H:%M") == "11:11"
    assert await page.inner_text("#grid-clock") == "27 Nov 11:11 UTC"
    assert await card(page, "current-interval") == "11:00–11:15"
    assert await card(page, "gate-closure") == "14 min 00 s"  # 11:30's gate closes at 11:25


async def check_live_update(page: Page, hood: Neighbourhood) -> None:
    """The grid clears an interval; the open page shows it without reloading."""
    await page.evaluate("window.__notReloaded = true")
    cleared_before = int(await card(page, "intervals-cleared"))
    savings_before = await card(page, "savings")
    renders = int(await page.evaluate("document.body.dataset.renders"))
    t = await trade_interval(hood, 2)
    await page.wait_for_function(
        f"() => Number(document.querySelector('#intervals-cleared .value').textContent) > "
        f"{cleared_before}",
        timeout=TIMEOUT_MS,
    )
    await page.wait_for_function(
        "() => !document.querySelector('[aria-busy=true]')", timeout=TIMEOUT_MS
    )
    assert await page.evaluate("window.__notReloaded") is True
    assert int(await page.evaluate("document.body.dataset.renders")) > renders
    data = await _json(page, "overview")
    assert await card(page, "intervals-cleared") == str(data["totals"]["intervals_cleared"])
    # The new interval traded, so the savings figure grew, and the charts show it.
    assert await card(page, "savings") == _euros(data["totals"]["savings_micro"])
    assert await card(page, "savings") != savings_before
    assert t.strftime("%Y-%m-%dT%H:%M:%SZ") in [p["interval"] for p in data["series"]]
    assert len(await values(page, "#savings-chart circle.point")) == len(data["series"])
    assert "cleared" in await page.inner_text("#live")


async def check_reconnect(
    page: Page, hood: Neighbourhood, streams: list[tuple[WebSocketRoute, WebSocketRoute]]
) -> None:
    """The stream drops; what the grid did meanwhile arrives after the page reconnects."""
    grid = hood.grid
    async with grid.grid.db.read() as conn:
        seen = int(await conn.scalar(select(func.max(events.c.id))) or 0)
    assert len(streams) == 1
    # The first connection began before the live update's events.
    assert int(streams[0][0].url.rpartition("since=")[2]) < seen
    cleared_before = int(await card(page, "intervals-cleared"))
    page_side, server_side = streams[0]
    await server_side.close()
    await page_side.close(code=1012, reason="test: the grid restarts")
    await page.wait_for_selector("#live.warn", timeout=TIMEOUT_MS)  # "Reconnecting in 1 s"
    await trade_interval(hood, 0, meter=False)  # while the page is not connected
    await page.wait_for_function(
        f"() => Number(document.querySelector('#intervals-cleared .value').textContent) > "
        f"{cleared_before}",
        timeout=TIMEOUT_MS,
    )
    await page.wait_for_selector("#live.ok", timeout=TIMEOUT_MS)
    # It resumed from the last event it had seen, with no reload.
    assert len(streams) == 2 and streams[1][0].url.endswith(f"?since={seen}")
    assert await page.evaluate("window.__notReloaded") is True


async def check_other_views(page: Page, hood: Neighbourhood) -> None:
    base = hood.grid.url
    await open_view(page, base, "market", ".zone-curve")
    market = await _json(page, "market")
    assert await page.locator(".zone-curve").count() == len(market["zones"]) == 3
    for zone in market["zones"]:
        curve = f".zone-curve[data-zone={zone['id']}]"
        supply = await values(page, f"{curve} .series.supply circle.point")
        demand = await values(page, f"{curve} .series.demand circle.point")
        assert sum(supply) == (zone["supply"][-1][1] if zone["supply"] else 0)
        assert sum(demand) == (zone["demand"][-1][1] if zone["demand"] else 0)
        assert await page.locator(f"{curve} .clearing circle.mark").count() == 2
    assert sum(len(z["supply"]) + len(z["demand"]) for z in market["zones"]) > 0
    flows = await values(page, "#flow-chart rect.flow")
    assert flows == [link["flow_to_parent_wh"] for link in market["links"]]
    assert await page.locator("section[aria-labelledby=h-fills] tbody tr").count() == len(
        market["fills"]
    )
    # Step back one interval with the button.
    await page.get_by_role("button", name="← Earlier").click()
    await page.wait_for_function(
        f"() => location.hash === '#market/{market['previous']}'", timeout=TIMEOUT_MS
    )
    await page.wait_for_selector(
        f"#interval-select option[value='{market['previous']}'][selected]",
        state="attached",
        timeout=TIMEOUT_MS,
    )

    await open_view(page, base, "participants", "section[data-view=participants] tbody tr")
    rows = page.locator("section[data-view=participants] tbody tr")
    assert await rows.count() == len(hood.members)
    await page.get_by_role("link", name="Cy").click()
    await page.wait_for_selector("text=Household: Cy", timeout=TIMEOUT_MS)
    assert hood.paid[0][:10] in await page.inner_text("section[data-view=participants]")

    await open_view(page, base, "payments", "#statement-counts")
    text = await page.inner_text("section[data-view=payments]")
    assert hood.paid[0][:14] in text and "No statement is overdue." in text
    assert await card(page, "statement-counts") == "3 paid"

    await open_view(page, base, "audit", "#chain-head")
    audit = await _json(page, "audit")
    assert await card(page, "chain-head") == f"entry {audit['head']['seq']}"
    assert "not recorded" in await page.inner_text("section[data-view=audit]")


async def test_new_grid_login_link_phone_layout_and_logout(tmp_path: Path) -> None:
    async with run_grid_server(f"sqlite:///{tmp_path / 'grid.db'}", grid=grid_config()) as grid:
        hood = await join_all(grid)  # nothing traded yet
        async with (
            browser() as chromium,
            watched_page(chromium, width=390, height=844, scale=2) as watched,
        ):
            page = watched.page
            ARTIFACTS.mkdir(exist_ok=True)
            # The demo's one-time link logs in and leaves no ticket in the address bar.
            link = login_link(grid.app, grid.url)
            await page.goto(link)
            await page.wait_for_selector("text=No interval cleared", timeout=TIMEOUT_MS)
            assert page.url == f"{grid.url}/dashboard/"
            await page.wait_for_selector("#live.ok", timeout=TIMEOUT_MS)
            # A new grid: every view says what is not there yet.
            for view, ready in (
                ("market", ".zone-curve"),
                ("participants", "section[data-view=participants] tbody tr"),
                ("payments", "text=No payment yet."),
                ("audit", "text=No interval has been closed yet."),
            ):
                await open_view(page, grid.url, view, ready)
            await open_view(page, grid.url, "overview", "text=No interval cleared")
            # The first cleared interval draws the charts, live.
            await trade_interval(hood, 0)
            await page.wait_for_selector("#energy-chart", timeout=TIMEOUT_MS)
            await page.wait_for_function(
                "() => !document.querySelector('[aria-busy=true]')", timeout=TIMEOUT_MS
            )
            # Nothing wider than a phone's screen: the page does not scroll sideways.
            assert await page.evaluate("document.documentElement.scrollWidth") <= 390
            await page.screenshot(path=str(ARTIFACTS / "dashboard-phone.png"), full_page=True)
            await open_view(page, grid.url, "market", ".zone-curve .clearing")
            assert await page.evaluate("document.documentElement.scrollWidth") <= 390
            await page.get_by_role("button", name="Log out").click()
            await page.wait_for_selector("#login:not([hidden])", timeout=TIMEOUT_MS)
            # The link was used once; again, the form says so.
            await page.goto(link)
            await page.wait_for_selector("text=That login link was used", timeout=TIMEOUT_MS)
            assert page.url == f"{grid.url}/dashboard/"
            assert watched.problems() == []


async def _json(page: Page, path: str) -> Any:
    """What the page itself fetched: the same JSON, read with the browser's cookie."""
    return await page.evaluate(f"fetch('api/{path}').then(r => r.json())")


def _energy(wh: int) -> str:
    """As the page writes energy (``energy`` in util.js)."""
    if abs(wh) >= 10_000:
        return f"{wh / 1000:.1f} kWh"
    return f"{wh / 1000:.2f} kWh" if abs(wh) >= 1000 else f"{wh} Wh"


def _euros(micro: int) -> str:
    return (
        f"€{micro / 1_000_000:,.2f}"
        if abs(micro) >= 100_000 or micro == 0
        else (f"€{micro / 1_000_000:,.4f}")
    )


async def test_sharing_after_delivery_shows_next_to_the_market(tmp_path: Path) -> None:
    """On a grid that shares: the card, the energy chart's shared layer and the participants'
    column carry the JSON's numbers, and nothing logs an error."""
    config = grid_config().model_copy(update={"sharing": SharingConfig(enabled=True)})
    async with run_grid_server(f"sqlite:///{tmp_path / 'grid.db'}", grid=config) as grid:
        await populate(grid)
        async with browser() as chromium, watched_page(chromium) as watched:
            page = watched.page
            await page.goto(login_link(grid.app, grid.url))
            await page.wait_for_selector("#energy-chart", timeout=TIMEOUT_MS)
            data = await _json(page, "overview")
            shared = data["totals"]["shared_wh"]
            assert shared > 0 and data["grid"]["sharing"]["enabled"]
            bars = await values(page, "#energy-chart .layer.shared rect.bar")
            assert sum(bars) == sum(p["shared_wh"] for p in data["series"]) == shared
            assert await card(page, "shared-energy") == _energy(shared)
            await open_view(
                page, grid.url, "participants", "section[data-view=participants] tbody tr"
            )
            assert await page.get_by_text("Shared after delivery (in / out)").count() == 1
            await page.screenshot(path=str(ARTIFACTS / "dashboard-sharing.png"), full_page=True)
            assert watched.problems() == []
