"""The dashboard's JSON, its login and its stream over real HTTP (SQLite and PostgreSQL).

The sums are checked against the grid's own rows, computed here independently
of :mod:`grid_server.service.dashboard`: savings fill by fill at the utility
prices in force, energy from the fills, money from the line items.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson
import pytest
from sqlalchemy import func, select

from grid_server.api.dashboard import COOKIE, STATIC
from grid_server.cli.audit import record as record_verification
from grid_server.demo import stats
from grid_server.demo.runner import dashboard_url
from grid_server.service.audit_verify import verify_log
from grid_server.storage.schema import (
    audit_roots,
    fills,
    line_items,
    log_entries,
    orders,
    participants,
    utility_prices,
    zone_results,
)
from p2p_energy_client.units import format_utc, micro_half_even
from tests.support.grid_server import OPERATOR_TOKEN, RunningGrid, run_grid_server
from tests.support.neighbourhood import (
    FLOAT,
    WALLET,
    Neighbourhood,
    grid_config,
    operator,
    populate,
    trade_interval,
)

pytestmark = pytest.mark.usefixtures("socket_enabled")

AUTH = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


@pytest.fixture
async def hood(database_url: str) -> Any:
    async with run_grid_server(database_url, grid=grid_config()) as grid:
        yield await populate(grid)


async def get(grid: RunningGrid, path: str, **kwargs: Any) -> Any:
    async with httpx.AsyncClient(base_url=grid.url, timeout=10, headers=AUTH) as http:
        response = await http.get(f"/dashboard/api/{path}", **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


async def prices_in_force(grid: RunningGrid) -> list[tuple[datetime, int, int]]:
    async with grid.grid.db.read() as conn:
        rows = await conn.execute(select(utility_prices).order_by(utility_prices.c.effective_from))
        return [(r.effective_from, int(r.retail_ticks), int(r.feed_in_ticks)) for r in rows]


def price_at(steps: list[tuple[datetime, int, int]], t: datetime) -> tuple[int, int]:
    found = steps[0]
    for step in steps:
        if step[0] <= t:
            found = step
    return found[1], found[2]


async def fill_rows(grid: RunningGrid) -> list[Any]:
    async with grid.grid.db.read() as conn:
        return list(
            await conn.execute(
                select(fills, participants.c.address).join(
                    participants, participants.c.id == fills.c.participant_id
                )
            )
        )


# --- sums ------------------------------------------------------------------------------


async def test_savings_and_energy_reconcile_with_fills(hood: Neighbourhood) -> None:
    grid = hood.grid
    # A new utility price from the next interval on: savings use each interval's prices.
    schedule = grid.grid.schedule
    upcoming = schedule.last_gate_closed(grid.clock.now()) + schedule.length
    await operator(
        grid,
        "POST",
        "/prices",
        {"effective_from": format_utc(upcoming), "retail": "0.3500", "feed_in": "0.0600"},
    )
    third = await trade_interval(hood, 2)
    assert third == upcoming

    steps = await prices_in_force(grid)
    rows = await fill_rows(grid)
    assert {r.interval_start for r in rows if r.filled_wh} == set(hood.intervals)
    expected_nano = 0
    by_interval: dict[datetime, int] = {}
    for r in rows:
        retail, feed_in = price_at(steps, r.interval_start)
        gain = (
            (r.price_ticks - feed_in) * r.filled_wh
            if r.side == "sell"
            else (retail - r.price_ticks) * r.filled_wh
        )
        assert gain >= 0  # nobody is worse off than at the status quo
        expected_nano += gain
        by_interval[r.interval_start] = by_interval.get(r.interval_start, 0) + gain
    assert expected_nano > 0
    sold = sum(r.filled_wh for r in rows if r.side == "sell")
    bought = sum(r.filled_wh for r in rows if r.side == "buy")

    data = await get(grid, "overview")
    totals = data["totals"]
    assert int(totals["savings_nano"]) == expected_nano
    # Shown in micro-units rounded half to even (the rule of ``units.nano_to_micro``).
    shown = micro_half_even(expected_nano)
    assert abs(shown * 1000 - expected_nano) <= 500
    assert totals["savings_micro"] == shown
    assert totals["savings"] == f"{shown // 10**6}.{shown % 10**6:06d}"
    # Energy: what participants sold went to neighbours or to the utility, and
    # what they bought came from neighbours or from the utility.
    assert totals["sold_wh"] == sold and totals["bought_wh"] == bought
    assert totals["local_wh"] + totals["to_utility_wh"] == sold
    assert totals["local_wh"] + totals["from_utility_wh"] == bought
    # The window's series adds up to the same (every interval is in the last 24 h).
    series = data["series"]
    assert sum(p["savings_nano"] for p in series) == data["window_savings_nano"] == expected_nano
    assert sum(p["local_wh"] for p in series) == totals["local_wh"]
    for point in series:
        t = datetime.fromisoformat(point["interval"])
        assert point["savings_nano"] == by_interval.get(t, 0)
        assert point["local_wh"] + point["to_utility_wh"] == point["sold_wh"]
        assert point["local_wh"] + point["from_utility_wh"] == point["bought_wh"]
        assert (point["retail_ticks"], point["feed_in_ticks"]) == price_at(steps, t)
    assert {datetime.fromisoformat(p["interval"]) for p in series if p["sold_wh"]} == set(
        hood.intervals
    )
    # The demo's summary (the same queries, over a range of intervals) agrees.
    summary = await stats.summary(
        grid.grid, min(hood.intervals), max(hood.intervals) + timedelta(1)
    )
    assert summary.market_savings_nano == expected_nano
    assert summary.local_wh == totals["local_wh"]

    # Per household: traded energy from its fills, money from its line items,
    # savings adding up to the community's.
    async with grid.grid.db.read() as conn:
        lines = {
            r.address: int(r.total)
            for r in await conn.execute(
                select(participants.c.address, func.sum(line_items.c.amount_micro).label("total"))
                .join(line_items, line_items.c.participant_id == participants.c.id)
                .group_by(participants.c.address)
            )
        }
    people = (await get(grid, "participants"))["participants"]
    assert {p["name"] for p in people} == set(hood.members)
    # Pages, by zone and name.
    assert [(p["zone"], p["name"]) for p in people] == sorted(
        (p["zone"], p["name"]) for p in people
    )
    page = await get(grid, "participants", params={"limit": 2, "offset": 2})
    assert (page["total"], page["limit"], page["offset"]) == (5, 2, 2)
    assert [p["name"] for p in page["participants"]] == [p["name"] for p in people[2:4]]
    south = await get(grid, "participants", params={"zone": "south"})
    assert sorted(p["name"] for p in south["participants"]) == ["Cy", "Di"]
    total_nano = 0
    for p in people:
        own = [r for r in rows if r.address == p["address"]]
        assert p["sold_wh"] == sum(r.filled_wh for r in own if r.side == "sell")
        assert p["bought_wh"] == sum(r.filled_wh for r in own if r.side == "buy")
        assert p["net_micro"] == lines.get(p["address"], 0)
        total_nano += p["savings_nano"]
    assert total_nano == expected_nano
    # Settled money balances: what households paid net went to the utility and the grid.
    assert sum(lines.values()) == summary.participants_net_micro


async def check_market_view(hood: Neighbourhood) -> None:
    """Curves from the orders, clearing points and flows from the results, the fills."""
    grid = hood.grid
    t = hood.intervals[0]
    data = await get(grid, "market", params={"interval": format_utc(t)})
    assert data["interval"] == format_utc(t) and data["state"] == "settled"
    assert (data["retail"], data["feed_in"]) == ("0.3000", "0.0800")
    async with grid.grid.db.read() as conn:
        book = list(await conn.execute(select(orders).where(orders.c.interval_start == t)))
        results = {
            r.zone: r
            for r in await conn.execute(
                select(zone_results).where(zone_results.c.interval_start == t)
            )
        }
    rows = [r for r in await fill_rows(grid) if r.interval_start == t]
    assert data["orders"] == len(book) == data["fills_total"] == len(data["fills"])
    for zone in data["zones"]:
        mine = [o for o in book if o.zone == zone["id"]]
        sells = sorted((o.price_ticks, o.energy_wh) for o in mine if o.side == "sell")
        buys = sorted(((o.price_ticks, o.energy_wh) for o in mine if o.side == "buy"), reverse=True)
        # Step curves in merit order, cumulative, one step per price level.
        for curve, side in ((zone["supply"], sells), (zone["demand"], buys)):
            assert [p for p, _ in curve] == sorted(
                {p for p, _ in side}, reverse=curve is zone["demand"]
            )
            assert (curve[-1][1] if curve else 0) == sum(wh for _, wh in side)
            assert all(a[1] < b[1] for a, b in pairwise(curve))
        result = results[zone["id"]]
        assert zone["result"]["price_ticks"] == result.price_ticks
        zone_fills = [r for r in rows if r.zone == zone["id"]]
        assert zone["result"]["sold_wh"] == sum(r.filled_wh for r in zone_fills if r.side == "sell")
        assert zone["result"]["bought_wh"] == sum(
            r.filled_wh for r in zone_fills if r.side == "buy"
        )
    links = {link["zone"]: link for link in data["links"]}
    assert set(links) == {"north", "south"}
    assert links["north"]["flow_to_parent_wh"] == results["north"].flow_to_parent_wh == 800
    assert links["north"]["capacity_up_wh"] == 800  # congested: the north price is lower
    prices = {z["id"]: z["result"]["price_ticks"] for z in data["zones"]}
    assert prices["north"] < prices["root"]
    assert sorted((f["name"], f["order_id"], f["filled_wh"]) for f in data["fills"]) == sorted(
        (
            next(n for n, c in hood.members.items() if c.address == r.address),
            r.order_id,
            r.filled_wh,
        )
        for r in rows
    )
    # Without an interval: the latest that had orders; navigation between cleared ones.
    latest = await get(grid, "market")
    assert latest["interval"] == format_utc(hood.intervals[-1])
    assert latest["previous"] is not None and format_utc(t) in latest["recent"]
    refused = await _raw(grid, "GET", "/dashboard/api/market?interval=2026-11-27T10:07:00Z", AUTH)
    assert refused.status_code == 422


async def test_market_payments_statements_overdue_and_audit(hood: Neighbourhood) -> None:
    grid = hood.grid
    await check_market_view(hood)
    data = await get(grid, "payments")
    ledger = data["ledger"]
    members = len(hood.members)
    assert ledger["kind"] == "local" and ledger["minted"] == WALLET * members + FLOAT
    assert ledger["balances_total"] == ledger["minted"]
    (paid,) = data["payments"]
    assert paid["tx_id"] == hood.paid[0] and paid["name"] == "Cy"
    assert data["transfers"][0]["index"] == ledger["entries"]
    by_tx = {e["tx_id"]: e for e in data["transfers"]}
    assert by_tx[hood.paid[0]]["sender_name"] == "Cy"
    assert by_tx[hood.paid[0]]["recipient_name"] == "the grid"
    assert by_tx[hood.paid[0]]["amount"] == paid["credited"] > 0
    done = [p for p in data["payouts"] if p["state"] == "done"]
    assert {p["name"] for p in done} == {"Ada", "Bo"}  # the producers were paid out
    for payout in done:
        assert by_tx[payout["tx_id"]]["sender_name"] == "the grid"
    assert data["overdue"] == []
    statuses = data["statements"]
    assert statuses["paid"]["count"] == 3  # Cy's, and the two producers' credits
    assert statuses["issued"]["count"] == 2  # Di and Ed have not paid yet

    # A week and a day later the two unpaid statements are overdue.
    grid.clock.advance(days=8)
    late = await get(grid, "payments")
    assert sorted(o["name"] for o in late["overdue"]) == ["Di", "Ed"]
    assert all(o["overdue_seconds"] > 0 and o["paid_micro"] == 0 for o in late["overdue"])
    people = {p["name"]: p for p in (await get(grid, "participants"))["participants"]}
    assert people["Di"]["statements"]["overdue"] == 1
    assert people["Cy"]["statements"] == {
        "count": 1,
        "paid": 1,
        "open": 0,
        "overdue": 0,
        "due_micro": paid["credited"],
        "paid_micro": paid["credited"],
    }
    detail = await get(grid, f"participants/{hood['Cy'].address}")
    (statement,) = detail["statements"]
    assert statement["status"] == "paid" and not statement["overdue"]
    assert [(p["direction"], p["tx_id"]) for p in statement["payments"]] == [("in", hood.paid[0])]
    assert detail["balance_micro"] == WALLET - paid["credited"]
    ada = await get(grid, f"participants/{hood['Ada'].address}")
    assert [p["direction"] for p in ada["statements"][0]["payments"]] == ["out"]
    missing = await _raw(grid, "GET", "/dashboard/api/participants/0xnobody", AUTH)
    assert missing.status_code == 404

    audit = await get(grid, "audit")
    async with grid.grid.db.read() as conn:
        head = await conn.scalar(select(func.max(log_entries.c.seq)))
        roots = await conn.scalar(select(func.count()).select_from(audit_roots))
    assert audit["head"]["seq"] == head and len(audit["head"]["hash"]) == 64
    assert audit["entries"][0]["seq"] == head
    assert audit["roots_total"] == roots > 0
    assert audit["anchoring"]["enabled"] is False  # the local ledger anchors nothing
    assert all(r["anchor"] is None for r in audit["roots"])
    assert audit["verification"] is None
    # ``p2p-grid audit verify`` records its result; the view shows the latest.
    report = await verify_log(grid.grid.settings.database_url, workers=0)
    assert report.ok, report.problem
    await record_verification(grid.grid.settings.database_url, report)
    checked = (await get(grid, "audit"))["verification"]
    assert checked["ok"] is True and checked["problem"] is None
    assert (checked["first_seq"], checked["last_seq"]) == (1, report.last_seq)
    assert checked["entries"] == report.entries and checked["tables_compared"] is True


# --- login -----------------------------------------------------------------------------


async def _raw(
    grid: RunningGrid, method: str, path: str, headers: dict[str, str] | None = None, **kw: Any
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=grid.url, timeout=10) as http:
        return await http.request(method, path, headers=headers, **kw)


async def test_login_cookie_tickets_and_pages(tmp_path: Path) -> None:
    async with run_grid_server(f"sqlite:///{tmp_path / 'grid.db'}", grid=grid_config()) as grid:
        async with httpx.AsyncClient(base_url=grid.url, timeout=10) as http:
            # The page and its files are public; the data is not.
            page = await http.get("/dashboard/")
            assert page.status_code == 200 and "text/html" in page.headers["content-type"]
            assert "default-src 'none'" in page.headers["content-security-policy"]
            for target in ("/", "/dashboard"):
                moved = await http.get(target)
                assert (moved.status_code, moved.headers["location"]) == (307, "/dashboard/")
            # What the demo prints: a one-time login link (tested below).
            demo_link = dashboard_url(grid.app, grid.url)
            assert demo_link is not None
            assert demo_link.startswith(f"{grid.url}/dashboard/login?ticket=")
            script = await http.get("/dashboard/static/app.js")
            assert script.status_code == 200 and "javascript" in script.headers["content-type"]
            assert script.content == (STATIC / "app.js").read_bytes()
            etag = script.headers["etag"]
            cached = await http.get("/dashboard/static/app.js", headers={"If-None-Match": etag})
            assert cached.status_code == 304 and not cached.content
            for missing in ("nothing.js", "..%2Fdashboard.py", "%2E%2E%2F%2E%2E%2Fapp.py"):
                assert (await http.get(f"/dashboard/static/{missing}")).status_code == 404
            for path in ("overview", "market", "participants", "payments", "audit"):
                refused = await http.get(f"/dashboard/api/{path}")
                assert refused.status_code == 401
                assert refused.json()["error"]["code"] == "unauthenticated"
            wrong = await http.get("/dashboard/api/overview", headers={"Authorization": "Bearer x"})
            assert wrong.status_code == 401
            assert (await http.get("/dashboard/api/session")).json() == {
                "authenticated": False,
                "operator_token_configured": True,
            }

            # Log in with the token: an HttpOnly, SameSite=Strict cookie for /dashboard.
            bad = await http.post("/dashboard/api/session", json={"token": "guess"})
            assert bad.status_code == 401
            good = await http.post("/dashboard/api/session", json={"token": OPERATOR_TOKEN})
            assert good.status_code == 200
            cookie = good.headers["set-cookie"]
            assert cookie.startswith(f"{COOKIE}=") and OPERATOR_TOKEN not in cookie
            for attribute in ("HttpOnly", "SameSite=strict", "Path=/dashboard", "Max-Age="):
                assert attribute.lower() in cookie.lower()
            assert (await http.get("/dashboard/api/overview")).status_code == 200
            assert (await http.get("/dashboard/api/session")).json()["authenticated"] is True
            value = http.cookies[COOKIE]
            tampered = value[:-1] + ("A" if value[-1] != "A" else "B")
            http.cookies.set(COOKIE, tampered, path="/dashboard")
            assert (await http.get("/dashboard/api/overview")).status_code == 401  # tampered
            http.cookies.set(COOKIE, value, path="/dashboard")
            out = await http.delete("/dashboard/api/session")
            assert out.status_code == 200 and 'p2p_dashboard=""' in out.headers["set-cookie"]
            # Logging out ends the session on the server: a copy of the cookie is worthless.
            http.cookies.set(COOKIE, value, path="/dashboard")
            assert (await http.get("/dashboard/api/overview")).status_code == 401

        # A one-time login link: works once, then sends the browser to the login form.
        async with httpx.AsyncClient(base_url=grid.url, timeout=10) as http:
            issued = await http.post("/dashboard/api/tickets", headers=AUTH)
            assert issued.status_code == 201
            link = issued.json()["path"]
            assert OPERATOR_TOKEN not in link and OPERATOR_TOKEN not in demo_link
            first = await http.get(link)
            assert (first.status_code, first.headers["location"]) == (303, "/dashboard/")
            assert COOKIE in http.cookies
            assert (await http.get("/dashboard/api/payments")).status_code == 200
        async with httpx.AsyncClient(base_url=grid.url, timeout=10) as http:
            again = await http.get(link)
            assert (again.status_code, again.headers["location"]) == (
                303,
                "/dashboard/?login=expired",
            )
            assert COOKIE not in http.cookies
            forged = await http.get(link[:-4] + "0000")
            assert forged.headers["location"] == "/dashboard/?login=expired"
            demo = await http.get(demo_link.removeprefix(grid.url))
            assert (demo.status_code, demo.headers["location"]) == (303, "/dashboard/")

            # Guessing the token is limited per address, in the body or as a bearer:
            # the first client's wrong bearer and wrong guess above count too (same address).
            allowed = grid.grid.settings.auth_failures_per_hour
            codes = [
                (await http.post("/dashboard/api/session", json={"token": f"guess{i}"})).status_code
                for i in range(allowed - 1)
            ]
            assert codes == [401] * (allowed - 2) + [429]
            limited = await http.post("/dashboard/api/session", json={"token": OPERATOR_TOKEN})
            assert limited.status_code == 429


async def test_grid_without_operator_token_refuses_every_login(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'grid.db'}"
    async with run_grid_server(db, grid=grid_config(), operator_token=None) as grid:
        async with httpx.AsyncClient(base_url=grid.url, timeout=10) as http:
            state = (await http.get("/dashboard/api/session")).json()
            assert state == {"authenticated": False, "operator_token_configured": False}
            assert (
                await http.post("/dashboard/api/session", json={"token": "x"})
            ).status_code == 401
            empty = await http.get("/dashboard/api/overview", headers={"Authorization": "Bearer x"})
            assert empty.status_code == 401


def test_page_loads_nothing_from_outside() -> None:
    """No CDN, no web fonts: every URL the page's files name is on this server."""
    svg_namespace = "http://www.w3.org/2000/svg"
    files = sorted(STATIC.iterdir())
    assert {f.name for f in files} >= {"index.html", "app.js", "dashboard.css", "charts.js"}
    for file in files:
        text = file.read_text().replace(svg_namespace, "")
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), file.name
        assert "@import" not in text and "@font-face" not in text, file.name
    html = (STATIC / "index.html").read_text()
    for ref in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert ref.startswith(("static/", "#")), ref


# --- live ------------------------------------------------------------------------------


async def test_stream_sends_the_clock_and_new_events_and_resumes(hood: Neighbourhood) -> None:
    grid = hood.grid
    url = grid.url.replace("http", "ws") + "/dashboard/api/stream"
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url) as ws:  # no credentials
            refused = orjson.loads((await ws.receive(timeout=5)).data)
            assert refused["error"]["code"] == "unauthenticated"
            assert (await ws.receive(timeout=5)).type == aiohttp.WSMsgType.CLOSE
            assert ws.close_code == 4401
        before = (await get(grid, "overview"))["last_event"]
        async with session.ws_connect(url, headers=AUTH) as ws:
            hello = orjson.loads((await ws.receive(timeout=5)).data)
            assert hello["type"] == "hello" and hello["last"] == before
            assert hello["clock"] == {
                "now": grid.clock.now().strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "speed": 0.0,
            }
            t = await trade_interval(hood, 2, meter=False)
            last = (await get(grid, "overview"))["last_event"]
            assert last > before
            live = await _events_until(ws, last)
            assert format_utc(t) in live["cleared"]
            assert live["kinds"]["market_result"] >= 1 and live["kinds"]["fills"] >= 1
        # Reconnecting with the last id seen: nothing is lost, nothing repeated.
        async with session.ws_connect(f"{url}?since={before}", headers=AUTH) as ws:
            assert orjson.loads((await ws.receive(timeout=5)).data)["last"] == before
            replay = await _events_until(ws, last)
            assert replay == live
        async with session.ws_connect(f"{url}?since={last}", headers=AUTH) as ws:
            assert orjson.loads((await ws.receive(timeout=5)).data)["type"] == "hello"
            quiet = orjson.loads((await ws.receive(timeout=5)).data)
            assert quiet["type"] == "clock"


async def _events_until(ws: aiohttp.ClientWebSocketResponse, last: int) -> dict[str, Any]:
    """The stream's event messages up to event ``last``, merged (the batches may differ)."""
    merged: dict[str, Any] = {"kinds": {}, "cleared": []}

    async def wait() -> dict[str, Any]:
        while True:
            message = orjson.loads((await ws.receive()).data)
            if message["type"] != "events":
                continue
            for kind, n in message["kinds"].items():
                merged["kinds"][kind] = merged["kinds"].get(kind, 0) + n
            merged["cleared"] += message["cleared"]
            assert message["last"] <= last
            if message["last"] == last:
                return merged

    return await asyncio.wait_for(wait(), 10)
