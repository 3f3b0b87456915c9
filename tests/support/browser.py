"""Headless Debian Chromium through Playwright, for a closed network.

Playwright's Python package drives the system's ``/usr/bin/chromium`` (no
``playwright install``, no downloads). Every console message and page error
is collected, so a test can assert that a page logged nothing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from playwright.async_api import Browser, ConsoleMessage, Page, Request, async_playwright

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def chromium_path() -> str | None:
    found = os.environ.get("P2P_CHROMIUM") or shutil.which("chromium")
    return found if found and Path(found).exists() else None


@dataclass
class Watched:
    """A page and everything it reported."""

    page: Page
    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        return [*self.errors, *self.console, *self.failed_requests]


@asynccontextmanager
async def browser() -> AsyncIterator[Browser]:
    path = chromium_path()
    assert path is not None, "Debian's chromium is needed (apt-get install chromium)"
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=path, args=CHROMIUM_FLAGS)
        try:
            yield launched
        finally:
            await launched.close()


@asynccontextmanager
async def watched_page(
    chromium: Browser, *, width: int = 1280, height: int = 900, scale: float = 1
) -> AsyncIterator[Watched]:
    context = await chromium.new_context(
        viewport={"width": width, "height": height},
        device_scale_factor=scale,
        locale="en-GB",
        timezone_id="UTC",
        color_scheme="light",
    )
    page = await context.new_page()
    watched = Watched(page)

    def on_console(message: ConsoleMessage) -> None:
        # Any warning or error the page logs is a failure; info and debug are not.
        if message.type in ("error", "warning", "assert"):
            watched.console.append(f"console {message.type}: {message.text} @ {message.location}")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: watched.errors.append(f"page error: {exc}"))

    def on_failed(request: Request) -> None:
        # ERR_ABORTED: the browser cancelled it (the test navigated away meanwhile).
        if request.failure != "net::ERR_ABORTED":
            watched.failed_requests.append(f"request failed: {request.url} ({request.failure})")

    page.on("requestfailed", on_failed)
    try:
        yield watched
    finally:
        await context.close()
