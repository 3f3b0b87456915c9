"""The grid's clock and what happened since an event id: the dashboard's live stream."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from grid_server.domain.clock import Clock, SystemClock
from grid_server.storage import events
from grid_server.storage.events import last_event_id
from p2p_energy_client.models import format_utc_ms

MAX_CLEARED = 100  # intervals named per update; the page reloads the view anyway


def clock_speed(clock: Clock) -> float:
    """How fast grid time runs against real time (0: it only moves when told to)."""
    if isinstance(clock, SystemClock):
        return 1.0
    if getattr(clock, "running", True) is False:
        return 0.0
    speed = getattr(clock, "speed", None)
    return float(speed) if isinstance(speed, (int, float)) else 0.0


def clock_view(clock: Clock) -> dict[str, Any]:
    return {"now": format_utc_ms(clock.now()), "speed": clock_speed(clock)}


async def events_after(conn: AsyncConnection, since: int) -> dict[str, Any] | None:
    """What happened after event ``since``: counts by kind, the newest id, cleared intervals.

    One aggregate over the new rows however many households they concern
    (each household's fills and settlements are events of their own).
    """
    rows = await events.counts_after(conn, since)
    if not rows:
        return None
    kinds = {str(r[0]): int(r[1]) for r in rows}
    last = max(int(r[2]) for r in rows)
    cleared: list[str] = []
    if "market_result" in kinds:
        for body in await events.public_bodies(conn, "market_result", since, last, MAX_CLEARED):
            interval = orjson.loads(body).get("interval")
            if isinstance(interval, str):
                cleared.append(interval)
    return {"last": last, "kinds": kinds, "cleared": cleared}


__all__ = ["clock_speed", "clock_view", "events_after", "last_event_id"]
