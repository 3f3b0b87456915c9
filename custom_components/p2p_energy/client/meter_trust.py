"""What the grid does not (yet) believe of the household's meters, as the household knows it.

An asset declared above the grid's approval limits waits for the operator;
until then the grid refuses its readings and orders with
``asset_not_approved`` (docs/operators/meters.md). Such readings are not
lost: they are *held* in the outbox, not sent, and go out when the operator
approves (an ``asset_approval`` event). In case that event never arrives (a
stream that was down, an older grid) they are offered again after a wait
that doubles from one interval up to six hours, so a waiting asset costs
the grid one refused request now and then, not one a minute. The grid's
settlement window still applies: a reading held past it is refused as late
when it is offered again.

A refused asset's readings can never be accepted as declared: they are set
aside by the household (as the grid would refuse them), and the asset stays
refused until the operator approves it after all or the owner declares more
(a new request; a lower rating is still covered by the refusal).

Orders are not per asset: the grid refuses the orders of a side (sell for
sources, buy for consumer meters) while an asset that could back it waits,
so the household holds that side the same way.

A reading the grid settled at its plausible bound (``reading_flagged``) is
remembered until the operator decides (``flag_decision``), so the owner sees
which payout waits and why.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Final

from .backoff import retry_delay
from .units import format_utc, parse_utc

WAITING: Final = "waiting"  # for the operator's approval
REFUSED: Final = "refused"  # by the operator, or above what anyone may declare
APPROVED_STATUSES: Final = frozenset({"approved", "automatic"})
RETRY_LONGEST: Final = timedelta(hours=6)
FLAGS_KEPT: Final = 100
# An order side and the role of the assets that back it.
SIDE_OF_ROLE: Final = {"source": "sell", "meter": "buy"}


@dataclass(frozen=True, slots=True)
class AssetHold:
    """Why the grid does not take an asset's readings (or a side's orders) now."""

    status: str  # WAITING or REFUSED
    message: str  # the grid's own words
    declared_power_w: int | None  # the rating the grid answered for
    tries: int = 0  # refusals in a row while waiting
    retry_at: datetime | None = None  # waiting: when held readings are offered again

    def holds(self, now: datetime) -> bool:
        """Whether what it holds stays unsent at ``now``."""
        return self.status == REFUSED or self.retry_at is None or now < self.retry_at

    def outdated(self, rated_power_w: int | None) -> bool:
        """The owner declared the asset anew, so the grid's answer may differ.

        Any change ends a wait (a lower rating may be within the limits, a
        higher one is a new request); a refusal covers every declaration that
        is not larger (docs/operators/meters.md), so only a larger one ends it.
        """
        if self.status == WAITING:
            return rated_power_w != self.declared_power_w
        return (rated_power_w or 0) > (self.declared_power_w or 0)

    def to_wire(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "message": self.message,
            "declared_power_w": self.declared_power_w,
            "tries": self.tries,
            "retry_at": None if self.retry_at is None else format_utc(self.retry_at),
        }

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> AssetHold:
        power = d.get("declared_power_w")
        return cls(
            str(d["status"]),
            str(d["message"]),
            None if power is None else int(power),
            int(d.get("tries", 0)),
            None if d.get("retry_at") is None else parse_utc(d["retry_at"]),
        )


@dataclass(frozen=True, slots=True)
class ReadingFlag:
    """A reading the grid settled at its plausible bound; its payout waits for the operator."""

    asset: str
    interval: datetime
    reading_wh: int
    bound_wh: int
    code: str  # over_rating, above_clear_sky, battery_over_discharge, not_approved, …
    reason: str  # the grid's own words

    @property
    def key(self) -> str:
        return f"{self.asset}|{format_utc(self.interval)}"

    def to_wire(self) -> dict[str, Any]:
        return {
            "asset": self.asset,
            "interval": format_utc(self.interval),
            "reading_wh": self.reading_wh,
            "bound_wh": self.bound_wh,
            "code": self.code,
            "reason": self.reason,
        }

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> ReadingFlag:
        return cls(
            str(d["asset"]),
            parse_utc(d["interval"]),
            int(d["reading_wh"]),
            int(d["bound_wh"]),
            str(d["code"]),
            str(d.get("reason", "")),
        )


@dataclass(slots=True)
class MeterTrust:
    """The holds per asset and per order side, and the undecided flags (JSON-able)."""

    assets: dict[str, AssetHold] = field(default_factory=dict)
    sides: dict[str, AssetHold] = field(default_factory=dict)  # "sell" / "buy"
    flags: dict[str, ReadingFlag] = field(default_factory=dict)  # oldest first

    # -- refusals ------------------------------------------------------------------------

    def refused_asset(
        self,
        asset_id: str,
        message: str,
        *,
        rated_power_w: int | None,
        now: datetime,
        interval: timedelta,
        absolute_power_w: int | None,
    ) -> AssetHold:
        """The grid refused a reading with ``asset_not_approved``: hold the asset's readings.

        Above what anyone may declare no approval can come: refused at once.
        """
        known = self.assets.get(asset_id)
        above = absolute_power_w is not None and (rated_power_w or 0) > absolute_power_w
        if known is not None and known.status == REFUSED:
            hold = replace(known, message=message)
        elif above:
            hold = AssetHold(REFUSED, message, rated_power_w)
        else:
            hold = _waiting(known, message, rated_power_w, now, interval)
        self.assets[asset_id] = hold
        return hold

    def refused_side(self, side: str, message: str, now: datetime, interval: timedelta) -> None:
        """The grid refused orders of ``side`` with ``asset_not_approved``: hold that side."""
        self.sides[side] = _waiting(self.sides.get(side), message, None, now, interval)

    def held_assets(self, now: datetime) -> set[str]:
        """Assets whose readings stay unsent at ``now``."""
        return {a for a, hold in self.assets.items() if hold.holds(now)}

    def refused_assets(self) -> set[str]:
        return {a for a, hold in self.assets.items() if hold.status == REFUSED}

    def held_sides(self, now: datetime, roles: Mapping[str, str]) -> set[str]:
        """Order sides to leave out at ``now``: held themselves, or backed by a held asset."""
        held = {side for side, hold in self.sides.items() if hold.holds(now)}
        for asset_id in self.held_assets(now):
            side = SIDE_OF_ROLE.get(roles.get(asset_id, ""))
            if side is not None:
                held.add(side)
        return held

    def accepted(self, asset_ids: Set[str]) -> None:
        """The grid took readings of these assets: they no longer wait."""
        for asset_id in asset_ids:
            hold = self.assets.get(asset_id)
            if hold is not None and hold.status == WAITING:
                del self.assets[asset_id]

    def accepted_side(self, side: str) -> None:
        self.sides.pop(side, None)

    def forget_outdated(self, ratings: Mapping[str, int | None]) -> None:
        """Drop holds of assets no longer declared, or declared anew (see AssetHold.outdated)."""
        for asset_id, hold in list(self.assets.items()):
            if asset_id not in ratings or hold.outdated(ratings[asset_id]):
                del self.assets[asset_id]

    # -- events ---------------------------------------------------------------------------

    def approval(self, data: Mapping[str, Any]) -> None:
        """The operator decided on an asset (an ``asset_approval`` event)."""
        asset_id = str(data["asset"])
        status = str(data.get("status", ""))
        if status in APPROVED_STATUSES:
            self.assets.pop(asset_id, None)
            # Orders are not per asset: a side held for it may go again.
            self.sides.clear()
        elif status == REFUSED:
            power = data.get("declared_power_w")
            self.assets[asset_id] = AssetHold(
                REFUSED, str(data.get("reason", "")), None if power is None else int(power)
            )

    def flagged(self, data: Mapping[str, Any]) -> ReadingFlag:
        """A ``reading_flagged`` event: remember it (the newest :data:`FLAGS_KEPT`)."""
        flag = ReadingFlag.from_wire(data)
        self.flags.pop(flag.key, None)
        self.flags[flag.key] = flag
        while len(self.flags) > FLAGS_KEPT:
            del self.flags[next(iter(self.flags))]
        return flag

    def decided(self, data: Mapping[str, Any]) -> ReadingFlag | None:
        """A ``flag_decision`` event: the operator decided; the flag is no longer open."""
        key = f"{data['asset']}|{format_utc(parse_utc(data['interval']))}"
        return self.flags.pop(key, None)

    # -- state ----------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        return {
            "assets": {k: v.to_wire() for k, v in self.assets.items()},
            "sides": {k: v.to_wire() for k, v in self.sides.items()},
            "flags": [f.to_wire() for f in self.flags.values()],
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any] | None) -> MeterTrust:
        state = state or {}
        flags = [ReadingFlag.from_wire(f) for f in state.get("flags", ())]
        return cls(
            {k: AssetHold.from_wire(v) for k, v in state.get("assets", {}).items()},
            {k: AssetHold.from_wire(v) for k, v in state.get("sides", {}).items()},
            {f.key: f for f in flags},
        )


def _waiting(
    known: AssetHold | None,
    message: str,
    rated_power_w: int | None,
    now: datetime,
    interval: timedelta,
) -> AssetHold:
    """One more refusal while waiting: offered again after a longer wait."""
    tries = (known.tries if known is not None and known.status == WAITING else 0) + 1
    wait = retry_delay(tries, first=interval.total_seconds(), longest=RETRY_LONGEST.total_seconds())
    return AssetHold(WAITING, message, rated_power_w, tries, now + timedelta(seconds=wait))
