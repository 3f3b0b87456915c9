"""Which declared ratings the grid believes on a household's word, and what the operator decided.

Money follows a source's rating (orders are bounded by it, readings are
checked against it), and the rating is whatever the household declares. So
the grid believes a declaration only up to limits its configuration sets per
kind of asset (``[grid.meters.approval]``, docs/operators/meters.md): within
them an asset is approved automatically; above them it waits for the
operator, who approves it (possibly at a lower rating than declared) or
refuses it. Above the absolute maximum nobody may declare anything.

This module decides; it stores nothing. The operator's decision is data
(:class:`Decision`) that the caller keeps and passes back in.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from p2p_energy_client.protocol import MeterDecl, SourceDecl, SourceKind

POWER_FIELD = "rated_power_w"
CAPACITY_FIELD = "usable_capacity_wh"


class AssetKind(StrEnum):
    """The kinds of asset the approval limits distinguish: the source kinds, and meters."""

    SOLAR = "solar"
    WIND = "wind"
    BATTERY = "battery"
    OTHER = "other"
    METER = "meter"

    @classmethod
    def of_source(cls, kind: SourceKind) -> AssetKind:
        return cls(str(kind))


@dataclass(frozen=True, slots=True)
class ApprovalLimits:
    """What may be declared without the operator (per kind), and what nobody may declare."""

    solar_w: int
    wind_w: int
    battery_w: int
    battery_capacity_wh: int
    other_w: int
    meter_w: int
    absolute_power_w: int
    absolute_capacity_wh: int

    def power_limit(self, kind: AssetKind) -> int:
        return {
            AssetKind.SOLAR: self.solar_w,
            AssetKind.WIND: self.wind_w,
            AssetKind.BATTERY: self.battery_w,
            AssetKind.OTHER: self.other_w,
            AssetKind.METER: self.meter_w,
        }[kind]


@dataclass(frozen=True, slots=True)
class Declaration:
    """What a household declared for one asset (the fields approval looks at)."""

    asset: str
    kind: AssetKind
    rated_power_w: int | None  # None: a consumer meter declared without a rating
    usable_capacity_wh: int | None = None  # batteries only

    @classmethod
    def of(cls, decl: SourceDecl | MeterDecl) -> Declaration:
        if isinstance(decl, SourceDecl):
            return cls(
                decl.id,
                AssetKind.of_source(decl.kind),
                decl.rated_power_w,
                decl.usable_capacity_wh,
            )
        return cls(decl.id, AssetKind.METER, decl.rated_power_w)


@dataclass(frozen=True, slots=True)
class Excess:
    """One declared field above one limit: what the household and the operator are told."""

    asset: str
    field: str  # rated_power_w or usable_capacity_wh, as in the protocol
    declared: int
    limit: int
    absolute: bool  # above the absolute maximum (no approval possible)

    @property
    def unit(self) -> str:
        return "W" if self.field == POWER_FIELD else "Wh"

    @property
    def reason(self) -> str:
        what = (
            "the most anyone may declare on this grid"
            if self.absolute
            else "what the grid approves without the operator"
        )
        return (
            f"{self.asset}: {self.field} {self.declared} {self.unit} is above "
            f"{self.limit} {self.unit}, {what}"
        )


class Status(StrEnum):
    AUTOMATIC = "automatic"  # within the grid's limits: approved by its configuration
    APPROVED = "approved"  # the operator approved it (perhaps at a lower rating)
    PENDING = "pending"  # waits for the operator
    REFUSED = "refused"  # the operator refused it, or it is above the absolute maximum


@dataclass(frozen=True, slots=True)
class Decision:
    """The operator's decision on an asset, as data.

    It records what the operator saw (kind and declared values) and covers
    that declaration and any later one of the same kind that declares no
    more: a household cannot get around a decision by declaring less and
    then more again, nor around a refusal by declaring a little less. A
    larger declaration is a new request.
    """

    kind: AssetKind
    declared_power_w: int | None
    declared_capacity_wh: int | None
    approved_power_w: int | None  # None: refused
    approved_capacity_wh: int | None = None
    note: str = ""

    @classmethod
    def approve(
        cls,
        declared: Declaration,
        power_w: int | None = None,
        capacity_wh: int | None = None,
        note: str = "",
    ) -> Decision:
        """Approve ``declared`` at ``power_w`` (default: as declared), never above it."""
        power = declared.rated_power_w if power_w is None else power_w
        capacity = declared.usable_capacity_wh if capacity_wh is None else capacity_wh
        _check_approved(POWER_FIELD, power, declared.rated_power_w)
        _check_approved(CAPACITY_FIELD, capacity, declared.usable_capacity_wh)
        return cls(
            declared.kind,
            declared.rated_power_w,
            declared.usable_capacity_wh,
            power,
            capacity,
            note,
        )

    @classmethod
    def refuse(cls, declared: Declaration, note: str = "") -> Decision:
        return cls(
            declared.kind, declared.rated_power_w, declared.usable_capacity_wh, None, None, note
        )

    @property
    def refused(self) -> bool:
        return self.approved_power_w is None

    def covers(self, declared: Declaration) -> bool:
        """Whether this decision still answers ``declared`` (same kind, nothing larger)."""
        return (
            declared.kind == self.kind
            and _at_most(declared.rated_power_w, self.declared_power_w)
            and _at_most(declared.usable_capacity_wh, self.declared_capacity_wh)
        )


def _check_approved(field: str, approved: int | None, declared: int | None) -> None:
    if approved is None and declared is None:
        return
    if approved is None or declared is None:
        raise ValueError(f"{field}: approve a value only for what was declared")
    if not 1 <= approved <= declared:
        raise ValueError(f"{field}: the approved {approved} must be between 1 and {declared}")


def _at_most(value: int | None, seen: int | None) -> bool:
    """``value`` is no more than what the operator saw (an undeclared value is none)."""
    if value is None:
        return True
    return seen is not None and value <= seen


def _min(declared: int | None, approved: int | None) -> int | None:
    """The approved value, never above what is declared now (nothing if nothing is)."""
    if declared is None or approved is None:
        return declared
    return min(declared, approved)


@dataclass(frozen=True, slots=True)
class Approval:
    """The grid's answer for one asset: may it be settled, and at which rating."""

    asset: str
    status: Status
    power_w: int | None  # the rating the plausibility rules use (approved or as declared)
    capacity_wh: int | None
    excess: tuple[Excess, ...] = ()
    note: str = ""

    @property
    def usable(self) -> bool:
        """Readings and orders of the asset are accepted (else refused until approved)."""
        return self.status in (Status.AUTOMATIC, Status.APPROVED)

    @property
    def reason(self) -> str:
        """Why it is not usable (empty when it is), for errors and repair issues."""
        if self.status is Status.PENDING:
            return "; ".join(e.reason for e in self.excess) + ": waiting for the operator"
        if self.status is Status.REFUSED:
            if self.excess:
                return "; ".join(e.reason for e in self.excess)
            suffix = f": {self.note}" if self.note else ""
            return f"{self.asset}: the operator refused it{suffix}"
        return ""


def absolute_excess(declared: Declaration, limits: ApprovalLimits) -> tuple[Excess, ...]:
    """Fields above what nobody may declare: such a declaration is refused outright."""
    out = []
    if declared.rated_power_w is not None and declared.rated_power_w > limits.absolute_power_w:
        out.append(
            Excess(
                declared.asset,
                POWER_FIELD,
                declared.rated_power_w,
                limits.absolute_power_w,
                absolute=True,
            )
        )
    capacity = declared.usable_capacity_wh
    if capacity is not None and capacity > limits.absolute_capacity_wh:
        out.append(
            Excess(
                declared.asset,
                CAPACITY_FIELD,
                capacity,
                limits.absolute_capacity_wh,
                absolute=True,
            )
        )
    return tuple(out)


def approval_excess(declared: Declaration, limits: ApprovalLimits) -> tuple[Excess, ...]:
    """Fields above what the grid approves without the operator."""
    out = []
    power_limit = limits.power_limit(declared.kind)
    if declared.rated_power_w is not None and declared.rated_power_w > power_limit:
        out.append(Excess(declared.asset, POWER_FIELD, declared.rated_power_w, power_limit, False))
    capacity = declared.usable_capacity_wh
    if capacity is not None and capacity > limits.battery_capacity_wh:
        out.append(
            Excess(declared.asset, CAPACITY_FIELD, capacity, limits.battery_capacity_wh, False)
        )
    return tuple(out)


def decide(
    declared: Declaration, limits: ApprovalLimits, decision: Decision | None = None
) -> Approval:
    """Approved automatically, approved or refused by the operator, or waiting for the operator.

    The absolute maximum wins over everything; then an operator's decision
    that covers the declaration; then the grid's limits.
    """
    absolute = absolute_excess(declared, limits)
    if absolute:
        return Approval(declared.asset, Status.REFUSED, None, None, absolute)
    if decision is not None and decision.covers(declared):
        if decision.refused:
            return Approval(declared.asset, Status.REFUSED, None, None, (), decision.note)
        return Approval(
            declared.asset,
            Status.APPROVED,
            _min(declared.rated_power_w, decision.approved_power_w),
            _min(declared.usable_capacity_wh, decision.approved_capacity_wh),
            (),
            decision.note,
        )
    excess = approval_excess(declared, limits)
    if excess:
        return Approval(declared.asset, Status.PENDING, None, None, excess)
    return Approval(
        declared.asset, Status.AUTOMATIC, declared.rated_power_w, declared.usable_capacity_wh
    )
