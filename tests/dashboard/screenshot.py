"""Regenerate the dashboard screenshot (README, docs) from the real page over a running demo.

    .venv/bin/python -m tests.dashboard.screenshot            # writes docs/dashboard.png

Starts ``p2p-grid demo``'s machinery (30 simulated households, from a June
dawn, accelerated), lets the neighbourhood trade until the afternoon, logs
into the dashboard with a one-time link in headless Chromium, checks the
page logged nothing, and saves the overview. Takes a minute or two.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from grid_server.demo.runner import Demo, DemoOptions, Started
from tests.support.browser import browser, watched_page

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2026, 6, 15, 4, 0, tzinfo=UTC)  # a June dawn in Frankfurt (06:00 local)


async def make(out: Path, *, households: int, hours: float, speed: float, seed: int) -> None:
    with tempfile.TemporaryDirectory(prefix="p2p-shot-") as folder:
        demo = Demo(
            DemoOptions(
                households=households,
                speed=speed,
                seed=seed,
                start=START,
                port=0,
                database=Path(folder) / "grid.db",
            )
        )
        started: asyncio.Future[Started] = asyncio.get_running_loop().create_future()
        run = asyncio.create_task(demo.run(on_started=started.set_result))
        try:
            info = await asyncio.wait_for(asyncio.shield(started), 120)
            until = START + timedelta(hours=hours)
            while demo.clock.now() < until:
                if run.done():
                    run.result()
                    raise RuntimeError("the demo stopped early")
                print(f"  grid time {demo.clock.now():%H:%M} UTC", end="\r", file=sys.stderr)
                await asyncio.sleep(1)
            await shoot(info, out)
        finally:
            demo.stop_requested.set()
            result = await run
        s = result.summary
        print(
            f"{out}: {s.intervals_cleared} intervals cleared, {s.local_wh / 1000:.1f} kWh "
            f"matched locally, market savings {s.market_savings_nano / 1e9:.2f} EUR",
            file=sys.stderr,
        )


async def shoot(info: Started, out: Path) -> None:
    headers = {"Authorization": f"Bearer {info.operator_token}"}
    async with httpx.AsyncClient(base_url=info.url, headers=headers, timeout=10) as http:
        ticket = (await http.post("/dashboard/api/tickets")).json()
    async with browser() as chromium, watched_page(chromium, width=1280, height=900) as watched:
        page = watched.page
        await page.goto(info.url + ticket["path"])
        await page.wait_for_selector("#price-chart", timeout=20_000)
        await page.wait_for_selector("#live.ok", timeout=20_000)
        await page.wait_for_timeout(1500)  # one more live refresh, the clock ticking
        panels = page.locator("section[data-view=overview] .panel")
        # The cards and the charts: the top of the overview (the zone table is below).
        box = await panels.nth(1).bounding_box()
        assert box is not None
        out.parent.mkdir(parents=True, exist_ok=True)
        clip = {"x": 0, "y": 0, "width": 1280, "height": box["y"] + box["height"] + 16}
        await page.screenshot(path=str(out), full_page=True, clip=clip)
        problems = watched.problems()
        if problems:
            raise RuntimeError(f"the page reported problems: {problems}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard.png")
    parser.add_argument("--households", type=int, default=30)
    parser.add_argument("--hours", type=float, default=9.0, help="simulated hours from dawn")
    parser.add_argument("--speed", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    asyncio.run(
        make(
            args.out, households=args.households, hours=args.hours, speed=args.speed, seed=args.seed
        )
    )


if __name__ == "__main__":
    main()
