"""Fixtures: a grid on loopback (SQLite; PostgreSQL for the API tests when configured)."""

from __future__ import annotations

import asyncio

import pytest


@pytest.fixture(autouse=True)
async def _no_loop_debug() -> None:
    # Home Assistant's test plugin runs the loop in debug mode, several times
    # slower; the grid server runs without it, and so do these tests.
    asyncio.get_running_loop().set_debug(False)
