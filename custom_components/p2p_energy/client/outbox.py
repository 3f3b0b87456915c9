"""Readings waiting to be sent, kept in order until the grid acknowledges them.

The grid treats a reading it already has with the same value as a duplicate,
so sending one again is harmless; a reading leaves the outbox only once the
grid has acknowledged it (accepted or duplicate), and never before. Readings
the grid refuses for good (its settlement window closed, an asset it does
not know) are set aside with the reason instead of blocking the queue.
The state is JSON-able so Home Assistant can keep it in its storage.
"""

from __future__ import annotations

from collections.abc import Iterable, Set
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .protocol import Reading
from .units import parse_utc

MAX_REJECTED_KEPT = 200


@dataclass(frozen=True, slots=True)
class Rejected:
    reading: Reading
    code: str
    message: str


@dataclass(slots=True)
class Outbox:
    pending: dict[tuple[datetime, str], Reading] = field(default_factory=dict)
    rejected: list[Rejected] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.pending)

    def add(self, readings: Iterable[Reading]) -> None:
        """Queue readings; a newer value for the same interval and asset replaces an unsent one."""
        for reading in readings:
            self.pending[(reading.interval, reading.asset)] = reading

    def batch(self, limit: int, skip: Set[str] = frozenset()) -> list[Reading]:
        """The oldest ``limit`` readings, in interval order, without those of ``skip``'s assets."""
        ready = (r for r in self.pending.values() if r.asset not in skip)
        return sorted(ready, key=lambda r: (r.interval, r.asset))[:limit]

    def acknowledge(self, readings: Iterable[Reading]) -> None:
        for reading in readings:
            key = (reading.interval, reading.asset)
            if self.pending.get(key) == reading:
                del self.pending[key]

    def set_aside(self, reading: Reading, code: str, message: str) -> None:
        """Take a reading the grid will never accept out of the queue, keeping why."""
        self.pending.pop((reading.interval, reading.asset), None)
        self.rejected.append(Rejected(reading, code, message))
        del self.rejected[:-MAX_REJECTED_KEPT]

    def to_state(self) -> dict[str, Any]:
        return {
            "pending": [r.to_wire() for r in self.batch(len(self.pending))],
            "rejected": [
                {"reading": r.reading.to_wire(), "code": r.code, "message": r.message}
                for r in self.rejected
            ],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Outbox:
        outbox = cls()
        outbox.add(_reading(item) for item in state.get("pending", []))
        outbox.rejected = [
            Rejected(_reading(item["reading"]), item["code"], item["message"])
            for item in state.get("rejected", [])
        ]
        return outbox


def _reading(item: dict[str, Any]) -> Reading:
    return Reading(parse_utc(item["interval"]), item["asset"], int(item["energy_wh"]))
