"""What a verification found, and the report ``p2p-grid audit verify`` prints."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from ..audit_replay import Inconsistency


class Stop(Exception):
    """A chain-level inconsistency: what follows cannot be trusted to say anything."""


class Findings:
    """The inconsistencies the checkers found, in any order; the first in log order counts."""

    def __init__(self) -> None:
        self.problems: list[Inconsistency] = []

    def problem(self, seq: int, table: str, row: str, message: str) -> None:
        self.problems.append(Inconsistency(seq, table, row, message))

    def stop(self, seq: int, table: str, row: str, message: str) -> NoReturn:
        self.problem(seq, table, row, message)
        raise Stop

    def extend(self, found: Iterable[Inconsistency]) -> None:
        self.problems.extend(found)

    def first(self) -> Inconsistency | None:
        """In log order; at one entry, the log's own problem before the tables'."""
        if not self.problems:
            return None
        return min(self.problems, key=lambda p: (p.seq, p.table != "log_entries", p.table, p.row))


@dataclass
class VerifyReport:
    grid: str
    first_seq: int
    last_seq: int
    entries: int = 0
    envelopes: int = 0
    roots: int = 0
    anchors: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    state_checked: bool = False
    intervals_compared: int = 0
    seconds: float = 0.0
    problem: Inconsistency | None = None
    notes: list[str] = field(default_factory=list)

    anchors_checked_on_chain: int = 0
    signatures_checked: int = 0

    @property
    def ok(self) -> bool:
        return self.problem is None

    @property
    def entries_per_second(self) -> float:
        return self.entries / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "grid": self.grid,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "entries": self.entries,
            "envelopes": self.envelopes,
            "roots": self.roots,
            "anchors": self.anchors,
            "anchors_checked_on_chain": self.anchors_checked_on_chain,
            "signatures_checked": self.signatures_checked,
            "kinds": dict(sorted(self.kinds.items())),
            "state_checked": self.state_checked,
            "intervals_compared": self.intervals_compared,
            "seconds": round(self.seconds, 3),
            "entries_per_second": round(self.entries_per_second),
            "problem": None if self.problem is None else str(self.problem),
            "notes": self.notes,
        }


__all__ = ["Findings", "Stop", "VerifyReport"]
