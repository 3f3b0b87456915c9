"""Live events: rows in the ``events`` table, and a wake-up for in-process listeners.

A listener remembers the last event id it delivered and reads newer rows
from the database, so a reconnecting client that passes ``since`` misses
nothing. ``notify`` wakes every waiting listener of this process; other
workers learn about new rows through PostgreSQL ``NOTIFY p2p_events`` (when
listening is enabled) or, at worst, by polling every few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncConnection

from grid_server.storage.schema import events

NOTIFY_CHANNEL = "p2p_events"
# The addressee of an event for the operator only (its stream and dashboard), not
# public and no participant's: stored without a participant and not public.
OPERATOR = -1


class EventHub:
    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait(self, seconds: float) -> None:
        """Return at the next notification or after ``seconds``, whichever comes first."""
        event = self._event
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)


async def add_events(
    conn: AsyncConnection,
    rows: list[tuple[int | None, str, dict[str, Any]]],
    now: datetime,
    *,
    postgres: bool,
) -> None:
    """Insert ``(participant_id, None for public or OPERATOR, kind, data)`` events in the
    caller's transaction."""
    if not rows:
        return
    await conn.execute(
        insert(events),
        [
            {
                "participant_id": None if pid == OPERATOR else pid,
                "kind": kind,
                "body": orjson.dumps(data).decode(),
                "created_at": now,
                "public": pid is None,
            }
            for pid, kind, data in rows
        ],
    )
    if postgres:
        # Delivered to listening workers when the transaction commits.
        await conn.execute(text(f"NOTIFY {NOTIFY_CHANNEL}"))
