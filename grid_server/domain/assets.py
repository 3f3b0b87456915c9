"""Declared assets over time: each stored version of a source or meter and when it was in force.

A household declares its complete set of assets; every change retires the
versions that changed and starts new ones (:func:`grid_server.domain.registry.diff_assets`),
so readings and orders are checked against the version in force during
their interval, not against today's declaration.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from .registry import AssetVersion
from .schedule import Schedule


@dataclass(slots=True)
class AssetRow:
    """One stored version of an asset (see the ``assets`` table) and its validity."""

    asset_id: str
    category: str  # source, meter
    kind: str | None
    name: str
    rated_power_w: int | None
    valid_from: datetime
    valid_until: datetime | None  # None: still in force

    @property
    def version(self) -> AssetVersion:
        return AssetVersion(self.asset_id, self.category, self.kind, self.name, self.rated_power_w)

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return self.valid_from < end and (self.valid_until is None or self.valid_until > start)


def current_assets(rows: Iterable[AssetRow]) -> dict[str, AssetRow]:
    """The versions in force now (not retired), by asset id."""
    return {r.asset_id: r for r in rows if r.valid_until is None}


@dataclass(frozen=True, slots=True)
class AssetLimits:
    """What a household may move in an interval: the schedule, and the power of a household
    whose meters carry no rating (the grid config's ``household_max_power_w``)."""

    schedule: Schedule
    household_max_power_w: int
