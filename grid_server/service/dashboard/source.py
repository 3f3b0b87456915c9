"""What the dashboard's views read from: the database, the grid's clock and set-up."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from grid_server.config import GridConfig
from grid_server.domain.clock import Clock
from grid_server.domain.schedule import Schedule
from grid_server.storage.db import Database


@dataclass(frozen=True, slots=True)
class Source:
    """Only what the views use; the routes build it from the running grid.

    ``ledger_address`` is the grid's own account; ``unit_of`` names the
    unit amounts of a ledger (``local``, ``iota``) are counted in.
    """

    db: Database
    clock: Clock
    config: GridConfig
    schedule: Schedule
    ledger_address: str
    unit_of: Callable[[str], str]

    @property
    def grid_id(self) -> str:
        return self.config.id

    @property
    def ledger_unit(self) -> str:
        return self.unit_of(str(self.config.ledger.kind))


__all__ = ["Source"]
