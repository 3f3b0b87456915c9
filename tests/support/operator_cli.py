"""An operator's grid as ``p2p-grid`` finds it: a config file in a folder, a first start.

``write_config`` writes a small real-time grid's config (relative paths, as
examples/small-grid.toml has them; ``extra`` TOML at the end); ``first_start`` does what the first
``p2p-grid serve`` does to it (the database, the grid, its ledger key), so a
test can run the operator's commands against a grid that exists.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from grid_server.config import load_settings
from grid_server.service.wiring import build_grid


def write_config(
    folder: Path,
    *,
    grid_id: str = "our-street",
    public_url: str | None = "https://grid.example.org",
    database: str = "sqlite:///grid.db",
    extra: str = "",
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        "[server]",
        f'database_url = "{database}"',
        "[grid]",
        f'id = "{grid_id}"',
        'name = "Our street"',
        *([f'public_url = "{public_url}"'] if public_url is not None else []),
        "settlement_window_seconds = 600",
        "settlement_period_seconds = 3600",
        "[[grid.zones]]",
        'id = "street"',
        extra,
    ]
    path = folder / "grid.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def start_once(config: Path) -> None:
    grid = build_grid(load_settings(config))
    try:
        await grid.open()
    finally:
        await grid.db.dispose()


def first_start(config: Path) -> Path:
    """The grid of ``config`` made as its first ``p2p-grid serve`` makes it; its config."""
    asyncio.run(start_once(config))
    return config
