"""The Energy dashboard set up as the households' guide says: a picture from a real Home Assistant.

    ./scripts/energy-dashboard-picture     # writes docs/households/energy-dashboard.png

Starts ``p2p-grid serve`` and ``python -m homeassistant`` as
tests/integration/test_real_home_assistant.py does, joins the grid from an
invitation link through the config flow, saves the Energy dashboard's grid
(docs/households/home-assistant.md, "The Energy dashboard, step by step")
through the websocket API, logs the owner into the real frontend in
headless Chromium, opens the grid consumption's dialog on the Energy
configuration page (/config/energy) and saves it. Takes about a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from tests.support.browser import browser, watched_page
from tests.support.real_home_assistant import (
    HomeAssistantApi,
    HomeAssistantProcess,
    add_membership,
    energy_grid_prefs,
    operator,
    real_grid,
)

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "households" / "energy-dashboard.png"


async def make(out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="p2p-energy-picture-") as folder:
        async with real_grid(Path(folder) / "grid") as grid:
            home_assistant = HomeAssistantProcess(Path(folder))
            try:
                home_assistant.start()
                await home_assistant.ready()
                api = await home_assistant.onboard()
                try:
                    await api.finish_onboarding()
                    link = (await operator(grid, "invite", "--no-qr")).strip()
                    membership = await add_membership(api, link, "Household")
                    await api.command("energy/save_prefs", **energy_grid_prefs(membership))
                    await shoot(api, out)
                finally:
                    await api.close()
            finally:
                await home_assistant.stop()


async def shoot(api: HomeAssistantApi, out: Path) -> None:
    """Log in as the frontend does (its tokens in localStorage); picture the grid's cost."""
    tokens = {
        **api.tokens,
        "hassUrl": api.url,
        "clientId": api.client_id,
        "expires": int(time.time() * 1000) + api.tokens["expires_in"] * 1000,
    }
    async with browser() as chromium, watched_page(chromium, width=1024, height=760) as watched:
        page = watched.page
        await page.add_init_script(
            f"window.localStorage.setItem('hassTokens', {json.dumps(json.dumps(tokens))});"
        )
        await page.goto(f"{api.url}/config/energy")
        await page.get_by_text("Grid consumption").first.wait_for(timeout=60_000)
        await page.wait_for_load_state("networkidle")
        # The grid consumption's edit button (the first of the grid card's
        # icon buttons): its dialog shows the cost entity as steps 1 and 2 set it.
        await page.locator("ha-energy-grid-settings ha-icon-button").first.click()
        await page.get_by_text("Use an entity tracking the total costs").wait_for(timeout=30_000)
        await page.wait_for_timeout(2000)  # the dialog's animation, fonts and icons settle
        out.parent.mkdir(parents=True, exist_ok=True)
        png = await page.screenshot(path=str(out))
    print(f"{out}: {len(png) // 1024} KB", file=sys.stderr)
    if watched.errors:
        raise RuntimeError(f"the page reported errors: {watched.errors}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    asyncio.run(make(parser.parse_args().out))


if __name__ == "__main__":
    main()
