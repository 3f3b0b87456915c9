"""Who is a member, looked up from an envelope's key before any signature work.

Verifying an Ed25519 signature over the canonical JSON of a large payload is
the costliest thing intake does; a key that is no member of the grid is
refused before it (``NOT_MEMBER``), at the cost of one indexed lookup.
Members in good standing are remembered (bounded), so a member's envelope
costs no lookup at all. A remembered status may be stale (a suspension in
another worker): the writer checks membership and status again in its
transaction, so this only ever refuses early, never admits for good.

Keys not remembered are looked up together: every key waiting while a
lookup runs goes into the next one, one query on one pooled connection.
Each worker meets every member once after it starts (with several workers,
a household's envelopes land on any of them), and one connection per key
would overflow the pool at once: measured with two workers, 1,570 new
PostgreSQL connections in 25 s, the cost of which made two workers slower
than one.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from itertools import islice
from typing import Final

from grid_server.storage import ingest_queries as q
from grid_server.storage.db import Database
from p2p_energy_client.protocol import ErrorCode, ProtocolError

MAX_REMEMBERED: Final = 100_000
LOOKUP_BATCH: Final = 1_000  # keys looked up in one query (well within the driver's limit)


class Membership:
    def __init__(self, db: Database, max_remembered: int = MAX_REMEMBERED) -> None:
        self.db = db
        self.max_remembered = max_remembered
        self._active: OrderedDict[str, None] = OrderedDict()
        # Keys waiting for the next lookup → their status (None: no member).
        self._waiting: dict[str, asyncio.Future[str | None]] = {}
        self._lookups: asyncio.Task[None] | None = None

    def remembers(self, address: str) -> bool:
        """An active member seen before (no lookup needed)."""
        if address in self._active:
            self._active.move_to_end(address)
            return True
        return False

    async def check(self, address: str) -> None:
        """Refuse a key that is not an active member (NOT_MEMBER, SUSPENDED)."""
        if self.remembers(address):
            return
        status = await self._status(address)
        if status is None:
            raise ProtocolError(
                ErrorCode.NOT_MEMBER, "this key is not a member of the grid", "public_key"
            )
        if status != "active":
            raise ProtocolError(
                ErrorCode.SUSPENDED, f"the participant is {status}", "payload.sender"
            )
        if len(self._active) >= self.max_remembered:
            self._active.popitem(last=False)
        self._active[address] = None

    async def _status(self, address: str) -> str | None:
        """The key's participant status, None for no member (looked up with the others)."""
        future = self._waiting.get(address)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._waiting[address] = future
            if self._lookups is None or self._lookups.done():
                self._lookups = asyncio.create_task(self._look_up(), name="p2p-membership")
        # Shielded: a request that gives up does not cancel the answer others wait for.
        return await asyncio.shield(future)

    async def _look_up(self) -> None:
        """Look up every waiting key, a batch at a time, until none waits."""
        while self._waiting:
            batch = {a: self._waiting.pop(a) for a in list(islice(self._waiting, LOOKUP_BATCH))}
            try:
                async with self.db.read() as conn:
                    rows = await q.participants_by_address(conn, list(batch))
            except Exception as exc:  # each waiting request answers with it
                for future in batch.values():
                    if not future.done():
                        future.set_exception(exc)
                continue
            found = {r.address: r.status for r in rows}
            for address, future in batch.items():
                if not future.done():
                    future.set_result(found.get(address))

    def forget(self, address: str) -> None:
        """The participant was suspended or removed (in this process)."""
        self._active.pop(address, None)
