"""The dashboard's invitations view in headless Debian Chromium.

The operator issues invitations from the page, sees each once as a link to
copy and a QR code a phone reads (the pixels the browser drew, decoded with
ZXing), a household joins with one, and the list follows; an invitation is
revoked from the page. Without a public URL the page says how to set it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from grid_server.api.dashboard import login_link
from grid_server.config import GridConfig, ZoneConfig
from p2p_energy_client.invitation import parse_invitation
from tests.support.browser import ARTIFACTS, browser, chromium_path, watched_page
from tests.support.grid_server import run_grid_server
from tests.support.qr import decode_rgba

pytestmark = [
    pytest.mark.usefixtures("socket_enabled"),
    pytest.mark.skipif(chromium_path() is None, reason="Debian's chromium is not installed"),
]

TIMEOUT_MS = 10_000
PUBLIC_URL = "https://grid.example.org"

# The QR image as the browser drew it: its pixels, through a canvas.
PIXELS = """img => {
  const canvas = document.createElement("canvas");
  canvas.width = img.naturalWidth * 2;
  canvas.height = img.naturalHeight * 2;
  const context = canvas.getContext("2d");
  context.imageSmoothingEnabled = false;
  context.drawImage(img, 0, 0, canvas.width, canvas.height);
  const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
  return [canvas.width, canvas.height, Array.from(data)];
}"""


def grid_config(public_url: str | None) -> GridConfig:
    return GridConfig(
        id="test-grid",
        name="Test grid",
        public_url=public_url,
        zones=(ZoneConfig(id="root", name="Transformer"), ZoneConfig(id="feeder-1", parent="root")),
        default_zone="feeder-1",
    )


async def test_issue_copy_scan_join_revoke(tmp_path: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    database = f"sqlite:///{tmp_path / 'grid.db'}"
    async with run_grid_server(database, grid=grid_config(PUBLIC_URL)) as grid:
        async with browser() as chromium, watched_page(chromium) as watched:
            page = watched.page
            await page.context.grant_permissions(
                ["clipboard-read", "clipboard-write"], origin=grid.url
            )
            await page.goto(login_link(grid.app, grid.url))
            await page.get_by_role("link", name="Invitations").click()
            await page.wait_for_selector("#invite-form", timeout=TIMEOUT_MS)
            view = page.locator('[data-view="invitations"]')
            assert await view.get_by_text("No invitation issued yet.").is_visible()
            assert not await page.is_visible(".notice")
            assert await view.get_by_label("Zone").input_value() == "feeder-1"
            await view.get_by_label("Role").select_option("prosumer")
            await view.get_by_label("How many").fill("2")
            await view.get_by_role("button", name="Issue").click()
            await page.wait_for_selector(".issued-list li >> nth=1", timeout=TIMEOUT_MS)
            links = [await view.get_by_label(f"Invitation link {n}").input_value() for n in (1, 2)]
            assert all(parse_invitation(link).grid_url == PUBLIC_URL for link in links)
            # Each QR code, as drawn, reads as its link.
            for n, link in enumerate(links, start=1):
                image = view.get_by_role("img", name=f"QR code of the invitation link {n}")
                width, height, rgba = await image.evaluate(PIXELS)
                assert decode_rgba(width, height, rgba) == [link]
            await page.locator(".issued .copy-row button").first.click()
            await page.wait_for_selector(".copied:text('Copied')", timeout=TIMEOUT_MS)
            assert await page.evaluate("navigator.clipboard.readText()") == links[0]
            await page.screenshot(path=str(ARTIFACTS / "dashboard-invitations.png"), full_page=True)

            # A household joins with the first; the list shows it used, the new ones stay.
            first, second = (parse_invitation(link).code for link in links)
            await grid.client().join(first, "The Smiths")
            await view.get_by_label("Code or link of an unused invitation").fill(links[1])
            await view.get_by_role("button", name="Revoke").click()
            await page.wait_for_selector(f"text=Revoked {second}.", timeout=TIMEOUT_MS)
            rows = view.locator("table tbody tr")
            assert await rows.count() == 2
            states = {
                (await rows.nth(i).locator("th").inner_text()).removesuffix("-…"): (
                    await rows.nth(i).locator(".badge").inner_text()
                )
                for i in range(2)
            }
            assert states == {first[:4]: "used", second[:4]: "revoked"}
            assert await page.is_visible(".issued-list")
            await view.get_by_role("button", name="Done: hide these").click()
            await page.wait_for_selector(".issued-list", state="detached", timeout=TIMEOUT_MS)
            assert watched.problems() == []


async def test_without_a_public_url(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'grid.db'}"
    async with run_grid_server(database, grid=grid_config(None)) as grid:
        async with browser() as chromium, watched_page(chromium) as watched:
            page = watched.page
            await page.goto(login_link(grid.app, grid.url))
            await page.goto(f"{grid.url}/dashboard/#invitations")
            view = page.locator('[data-view="invitations"]')
            notice = page.locator(".notice")
            await notice.wait_for(timeout=TIMEOUT_MS)
            assert "This grid has no public URL" in await notice.inner_text()
            await view.get_by_role("button", name="Issue").click()
            box = view.get_by_label("Invitation code 1")
            await box.wait_for(timeout=TIMEOUT_MS)
            code = await box.input_value()
            assert parse_invitation(code).grid_url is None
            assert await page.locator(".issued img").count() == 0
            assert watched.problems() == []
