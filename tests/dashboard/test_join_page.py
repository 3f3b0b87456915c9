"""``GET /join``, the page an invitation link opens, in headless Debian Chromium.

It reads the code from the link's fragment (never sent to the server), shows the
link to paste into Home Assistant with a working copy button, says what to do
without a code, speaks the browser's language, and loads nothing but itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Page, Request

from grid_server.api.join import choose_language
from p2p_energy_client.invitation import format_invitation
from tests.support.browser import ARTIFACTS, browser, chromium_path, watched_page
from tests.support.grid_server import run_grid_server

pytestmark = [
    pytest.mark.usefixtures("socket_enabled"),
    pytest.mark.skipif(chromium_path() is None, reason="Debian's chromium is not installed"),
]

TIMEOUT_MS = 10_000


def requests_of(page: Page) -> list[str]:
    seen: list[str] = []

    def on_request(request: Request) -> None:
        seen.append(request.url)

    page.on("request", on_request)
    return seen


async def test_the_link_to_paste_and_a_copy_button(tmp_path: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    async with run_grid_server(f"sqlite:///{tmp_path / 'grid.db'}") as grid:
        code = await grid.invite()
        link = format_invitation(grid.url, code)
        async with browser() as chromium, watched_page(chromium) as watched:
            page = watched.page
            await page.context.grant_permissions(
                ["clipboard-read", "clipboard-write"], origin=grid.url
            )
            requested = requests_of(page)
            # As a person might get it: lower case, with spaces, from a chat message.
            await page.goto(f"{grid.url}/join#{code.lower().replace('-', ' ')}")
            box = page.get_by_label("Your invitation link")
            await box.wait_for(timeout=TIMEOUT_MS)
            assert await box.input_value() == link
            assert await page.title() == "Join Test grid"
            heading = page.get_by_role("heading", level=1)
            assert await heading.inner_text() == "You are invited to join Test grid"
            assert not await page.is_visible("#no-code")
            assert not await page.is_visible("#from-address-bar")
            await page.get_by_role("button", name="Copy the link").click()
            status = page.get_by_role("status")
            await page.wait_for_function(
                "() => document.getElementById('copy-status').textContent !== ''",
                timeout=TIMEOUT_MS,
            )
            assert await status.inner_text() == "Copied. Now paste it into Home Assistant."
            assert await page.evaluate("navigator.clipboard.readText()") == link
            await page.screenshot(path=str(ARTIFACTS / "join-page.png"), full_page=True)
            # One request, the page itself, and the code was never in it.
            assert requested == [f"{grid.url}/join"]
            assert watched.problems() == []


async def test_without_a_code_it_says_what_to_ask_for(tmp_path: Path) -> None:
    async with run_grid_server(f"sqlite:///{tmp_path / 'grid.db'}") as grid:
        async with browser() as chromium, watched_page(chromium) as watched:
            page = watched.page
            for address in (f"{grid.url}/join", f"{grid.url}/join#not-a-code!"):
                await page.goto(address)
                await page.wait_for_selector("#no-code:not([hidden])", timeout=TIMEOUT_MS)
                text = await page.inner_text("#no-code")
                assert "This link has no invitation code" in text
                assert "Ask your grid's operator for the whole link" in text
                assert not await page.is_visible("#steps")
            assert watched.problems() == []


async def test_in_the_browsers_language_and_switched_by_hand(tmp_path: Path) -> None:
    async with run_grid_server(f"sqlite:///{tmp_path / 'grid.db'}") as grid:
        code = await grid.invite()
        async with browser() as chromium:
            context = await chromium.new_context(locale="de-DE")
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            await page.goto(f"{grid.url}/join#{code}")
            box = page.get_by_label("Ihr Einladungslink")
            await box.wait_for(timeout=TIMEOUT_MS)
            assert await page.get_attribute("html", "lang") == "de"
            assert await page.title() == "Test grid beitreten"
            # The switch keeps the code (it lives in the fragment).
            await page.get_by_role("link", name="English").click()
            await page.get_by_label("Your invitation link").wait_for(timeout=TIMEOUT_MS)
            assert page.url == f"{grid.url}/join?lang=en#{code}"
            assert await page.get_attribute("html", "lang") == "en"
            await context.close()
            assert errors == []


@pytest.mark.parametrize(
    ("query", "accept", "language"),
    [
        (None, None, "en"),
        (None, "de-DE,de;q=0.9,en;q=0.8", "de"),
        (None, "fr-FR,fr;q=0.9,de;q=0.5,en;q=0.4", "de"),
        (None, "en;q=0.3,de;q=0.7", "de"),
        (None, "de;q=0,en", "en"),
        (None, "fr, it", "en"),
        (None, "de;q=x", "en"),
        ("de", "en", "de"),
        ("xx", "de", "de"),
    ],
)
def test_language_choice(query: str | None, accept: str | None, language: str) -> None:
    assert choose_language(query, accept) == language
