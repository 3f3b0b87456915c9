"""Declared assets over time: each stored version of a source or meter and when it was in force.

A household declares its complete set of assets; every change retires the
versions that changed and starts new ones (:func:`grid_server.domain.registry.diff_assets`),
so readings and orders are checked against the version in force during
their interval, not against today's declaration.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from p2p_energy_client.protocol import ErrorCode, ProtocolError

from .approval import Approval, ApprovalLimits, AssetKind, Decision, Declaration, decide
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
    charge_meter: str | None = None
    usable_capacity_wh: int | None = None
    decision: Decision | None = None  # the operator's latest decision on the asset

    @property
    def version(self) -> AssetVersion:
        return AssetVersion(
            self.asset_id,
            self.category,
            self.kind,
            self.name,
            self.rated_power_w,
            self.charge_meter,
            self.usable_capacity_wh,
        )

    @property
    def declaration(self) -> Declaration:
        return declaration_of(self)

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return self.valid_from < end and (self.valid_until is None or self.valid_until > start)


class StoredAsset(Protocol):
    """An asset version as stored (an :class:`AssetRow`, or a row of the ``assets`` table)."""

    @property
    def asset_id(self) -> str: ...
    @property
    def category(self) -> str: ...
    @property
    def kind(self) -> str | None: ...
    @property
    def rated_power_w(self) -> int | None: ...
    @property
    def usable_capacity_wh(self) -> int | None: ...


def declaration_of(row: StoredAsset) -> Declaration:
    """A stored asset version as approval sees it (a meter's kind is ``meter``)."""
    kind = AssetKind.METER if row.category == "meter" else AssetKind(str(row.kind))
    return Declaration(row.asset_id, kind, row.rated_power_w, row.usable_capacity_wh)


def current_assets(rows: Iterable[AssetRow]) -> dict[str, AssetRow]:
    """The versions in force now (not retired), by asset id."""
    return {r.asset_id: r for r in rows if r.valid_until is None}


@dataclass(frozen=True, slots=True)
class AssetLimits:
    """What a household may move in an interval: the schedule, the power of a household
    whose meters carry no rating (the grid config's ``household_max_power_w``), and what it
    may declare without the operator (``[grid.meters.approval]``)."""

    schedule: Schedule
    household_max_power_w: int
    approval: ApprovalLimits = field(kw_only=True)

    def approval_of(self, row: AssetRow) -> Approval:
        """The grid's answer for one asset version: usable, and at which rating."""
        return decide(row.declaration, self.approval, row.decision)


def check_approved(approval: Approval, field: str) -> None:
    """Refuse what an asset that waits for the operator, or was refused, sends."""
    if not approval.usable:
        raise ProtocolError(ErrorCode.ASSET_NOT_APPROVED, f"{field}: {approval.reason}", field)
