"""Who is a member, looked up from an envelope's key before any signature work.

Verifying an Ed25519 signature over the canonical JSON of a large payload is
the costliest thing intake does; a key that is no member of the grid is
refused before it (``NOT_MEMBER``), at the cost of one indexed lookup.
Members in good standing are remembered (bounded), so a member's envelope
costs no lookup at all. A remembered status may be stale (a suspension in
another worker): the writer checks membership and status again in its
transaction, so this only ever refuses early, never admits for good.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

from grid_server.storage import ingest_queries as q
from grid_server.storage.db import Database
from p2p_energy_client.protocol import ErrorCode, ProtocolError

MAX_REMEMBERED: Final = 100_000


class Membership:
    def __init__(self, db: Database, max_remembered: int = MAX_REMEMBERED) -> None:
        self.db = db
        self.max_remembered = max_remembered
        self._active: OrderedDict[str, None] = OrderedDict()

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
        async with self.db.read() as conn:
            rows = await q.participants_by_address(conn, [address])
        if not rows:
            raise ProtocolError(
                ErrorCode.NOT_MEMBER, "this key is not a member of the grid", "public_key"
            )
        status = rows[0].status
        if status != "active":
            raise ProtocolError(
                ErrorCode.SUSPENDED, f"the participant is {status}", "payload.sender"
            )
        if len(self._active) >= self.max_remembered:
            self._active.popitem(last=False)
        self._active[address] = None

    def forget(self, address: str) -> None:
        """The participant was suspended or removed (in this process)."""
        self._active.pop(address, None)
