"""Plausibility rules of a grid at the demo's location, shared by the meter tests."""

from __future__ import annotations

import asyncio
from functools import cache
from typing import Any

import httpx

from grid_server.config import GridConfig
from grid_server.demo.models import Site
from grid_server.domain.plausibility import Rules
from p2p_energy_client.grid_client import GridClient
from p2p_energy_client.models import Event
from tests.support.grid_server import OPERATOR_TOKEN, RunningGrid

DEMO_SITE = Site()  # Frankfurt am Main, where the demo's households live


def demo_grid(meters: dict[str, Any] | None = None, **grid: Any) -> GridConfig:
    """A grid config located at the demo's site, with ``[grid.meters]`` overrides."""
    location = {
        "latitude": DEMO_SITE.latitude,
        "longitude": DEMO_SITE.longitude,
        "altitude_m": DEMO_SITE.altitude_m,
    }
    return GridConfig.model_validate({**grid, "meters": {"location": location, **(meters or {})}})


@cache
def demo_rules() -> Rules:
    """The default rules at the demo's site (cached: the sun is computed once per day)."""
    return demo_grid().meter_rules()


async def operator_api(
    grid: RunningGrid, method: str, path: str, body: object = None
) -> httpx.Response:
    """One request to the operator API (``/api/v1/operator…``) with the operator's token."""
    async with httpx.AsyncClient(base_url=grid.url, timeout=10) as http:
        return await http.request(
            method,
            f"/api/v1/operator{path}",
            json=body,
            headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
        )


async def first_event(client: GridClient, kind: str, within: float = 10.0) -> Event:
    """The first event of ``kind`` on the household's stream (from its beginning)."""

    async def wait() -> Event:
        async for event in client.events():
            if event.kind == kind:
                return event
        raise AssertionError("the stream ended")

    return await asyncio.wait_for(wait(), within)
