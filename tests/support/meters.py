"""Plausibility rules of a grid at the demo's location, shared by the meter tests."""

from __future__ import annotations

from functools import cache
from typing import Any

from grid_server.config import GridConfig
from grid_server.demo.models import Site
from grid_server.domain.plausibility import Rules

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
