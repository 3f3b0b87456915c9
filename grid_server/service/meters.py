"""Meters we can believe, in the running grid: approvals, plausibility at settlement, held payouts.

The rules are the domain's (:mod:`grid_server.domain.approval`,
:mod:`grid_server.domain.plausibility`, :mod:`grid_server.domain.clear_sky`);
this module applies them to the stored grid:

* :class:`MeterChecks` runs inside the settlement of an interval (the
  cycle's transaction): each reading is checked against the approved rating
  of its asset version, the clear sky at the grid's location and, for
  batteries, what they charged. A reading above its bound is kept as sent,
  settled at the bound, flagged (``reading_flags``, an audit log entry, an
  event on the household's stream), and the payouts of the statement its
  interval lands on wait (:func:`grid_server.storage.meter_queries.held_statement`).
  A reading the operator later accepts is settled in full: the difference
  is booked with the utility in the next interval settled.
* :class:`Meters` is the operator's side (CLI, API, dashboard): the assets
  and their approval, approving or refusing one, the flags, deciding one.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, cast

import numpy as np
from sqlalchemy.ext.asyncio import AsyncConnection

from grid_server.domain.approval import (
    Approval,
    ApprovalLimits,
    AssetKind,
    Decision,
    absolute_excess,
    decide,
)
from grid_server.domain.assets import declaration_of
from grid_server.domain.clock import Clock
from grid_server.domain.plausibility import (
    MEANING,
    RULES,
    FlagCode,
    IntervalReadings,
    Rules,
    check_interval,
    kind_codes,
)
from grid_server.domain.schedule import Schedule
from grid_server.storage import audit_log
from grid_server.storage import cycle_queries as cq
from grid_server.storage import ingest_queries as iq
from grid_server.storage import meter_queries as mq
from grid_server.storage.db import Database
from grid_server.storage.meter_queries import MeteredAsset
from p2p_energy_client.protocol import canonical_json
from p2p_energy_client.units import energy_cost_nano, format_utc, micro_ceil, micro_floor

from .events import add_events
from .operator import OperatorError
from .settlement_port import LineOut
from .transaction import Event, LogItem

# The operator's answers to a flagged reading.
SETTLE_AT_BOUND: Final = "bound"  # pay what was settled (at the plausible bound)
ACCEPT_READING: Final = "reading"  # the reading was right: settle the difference too
FLAG_DECISIONS: Final = (SETTLE_AT_BOUND, ACCEPT_READING)
# The line kinds an accepted reading books (the utility takes the other side).
ACCEPTED_LINE: Final = "accepted_reading"
NOT_APPROVED: Final = "not_approved"


@dataclass(frozen=True, slots=True)
class FlagRow:
    """One flagged reading, as stored and logged."""

    participant_id: int
    address: str
    asset_id: str
    category: str
    interval: datetime
    reading_wh: int
    bound_wh: int
    code: str

    @property
    def reason(self) -> str:
        meaning = (
            "what an asset the operator has not approved may deliver"
            if self.code == NOT_APPROVED
            else MEANING[FlagCode(self.code)]
        )
        return (
            f"{self.asset_id}: {self.reading_wh} Wh in the interval {format_utc(self.interval)} "
            f"is more than {self.bound_wh} Wh, {meaning} ({self.code}); "
            f"it is settled at {self.bound_wh} Wh and its payout waits for the operator"
        )

    def to_wire(self) -> dict[str, Any]:
        return {
            "participant": self.address,
            "asset": self.asset_id,
            "interval": format_utc(self.interval),
            "reading_wh": self.reading_wh,
            "bound_wh": self.bound_wh,
            "code": self.code,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class CheckedInterval:
    """What settlement counts per participant, and what was flagged."""

    produced: dict[int, int]
    consumed: dict[int, int]
    flags: list[FlagRow]
    headroom: dict[tuple[int, str], int]


@dataclass(kw_only=True, eq=False)
class MeterChecks:
    """The plausibility check of one interval at settlement (see the module documentation)."""

    grid_id: str
    db: Database
    schedule: Schedule
    rules: Rules
    limits: ApprovalLimits

    async def check(self, conn: AsyncConnection, t: datetime) -> CheckedInterval:
        """Check every reading of ``t``; the energy to settle per participant and the flags."""
        end = t + self.schedule.length
        rows = await mq.interval_assets(conn, t, end)
        rows += await mq.meter_versions(conn, t, end, _missing_charge_meters(rows))
        # All of them: the operator decides on few assets (and an IN list has a size limit).
        decisions = await iq.asset_decisions_of(conn) if rows else {}
        approvals = [
            decide(declaration_of(r), self.limits, decisions.get((r.participant_id, r.asset_id)))
            for r in rows
        ]
        verdict = await self._verdict(conn, t, rows, approvals)
        settle, bounds, codes = verdict.settle, verdict.bounds, verdict.codes
        for i, a in enumerate(approvals):
            # Accepted while approved, refused since: nothing is paid until approved again.
            if not a.usable and rows[i].energy_wh:
                codes[i] = NOT_APPROVED
        produced: dict[int, int] = defaultdict(int)
        consumed: dict[int, int] = defaultdict(int)
        for i, r in enumerate(rows):
            if r.energy_wh is not None:  # not the rows of batteries and meters that sent none
                (produced if r.category == "source" else consumed)[r.participant_id] += settle[i]
        flagged = {r.participant_id for r, code in zip(rows, codes, strict=True) if code}
        addresses, _ = await cq.addresses_and_zones(conn, flagged)
        flags = [
            FlagRow(
                r.participant_id,
                addresses[r.participant_id],
                r.asset_id,
                r.category,
                t,
                r.energy_wh or 0,
                bounds[i],
                code,
            )
            for i, (r, code) in enumerate(zip(rows, codes, strict=True))
            if code is not None
        ]
        return CheckedInterval(dict(produced), dict(consumed), flags, verdict.headroom)

    async def _verdict(
        self,
        conn: AsyncConnection,
        t: datetime,
        rows: list[MeteredAsset],
        approvals: list[Approval],
    ) -> _Verdict:
        """The plausibility rules on the rows of usable assets (the others settle at 0)."""
        verdict = _Verdict.empty(len(rows))
        usable = [i for i, a in enumerate(approvals) if a.usable]
        if not usable:
            return verdict
        readings = _interval_readings([rows[i] for i in usable], [approvals[i] for i in usable])
        carried = await mq.headrooms(conn)
        previous = np.array(
            [
                _previous(carried.get(_key(rows[usable[j]])), t, self.schedule)
                for j in readings.battery_rows
            ],
            dtype=np.int64,
        )
        result = check_interval(
            self.rules, t, int(self.schedule.length.total_seconds()), readings, previous
        )
        checked = result.checked
        # Each array once: settle_wh and flagged are computed per access, and indexing
        # them per reading made this quadratic (150,000 readings: tens of seconds).
        settle = cast(list[int], checked.settle_wh.tolist())
        bounds = cast(list[int], checked.bound_wh.tolist())
        flagged = cast(list[bool], checked.flagged.tolist())
        rules = cast(list[int], checked.rule.tolist())
        for j, i in enumerate(usable):
            verdict.settle[i] = settle[j]
            verdict.bounds[i] = bounds[j]
            if flagged[j]:
                verdict.codes[i] = str(RULES[rules[j]])
        for j, row in enumerate(result.battery_rows):
            verdict.headroom[_key(rows[usable[int(row)]])] = int(result.headroom_wh[j])
        return verdict

    async def record(
        self, conn: AsyncConnection, t: datetime, checked: CheckedInterval, now: datetime
    ) -> tuple[list[LogItem], list[Event]]:
        """Store the flags and the carried headroom; the flags' log entry and events.

        The caller appends the entry with its own, last (see
        :mod:`grid_server.storage.audit_log`), and adds the events.
        """
        await mq.save_headrooms(conn, t, checked.headroom)
        if not checked.flags:
            return [], []
        await mq.insert_flags(
            conn,
            [
                {
                    "participant_id": f.participant_id,
                    "interval_start": f.interval,
                    "asset_id": f.asset_id,
                    "category": f.category,
                    "reading_wh": f.reading_wh,
                    "bound_wh": f.bound_wh,
                    "code": f.code,
                    "flagged_at": now,
                }
                for f in checked.flags
            ],
        )
        record = {
            "interval": format_utc(t),
            "flags": [
                {k: v for k, v in f.to_wire().items() if k != "reason"} for f in checked.flags
            ],
        }
        events: list[Event] = [
            (f.participant_id, "reading_flagged", f.to_wire()) for f in checked.flags
        ]
        return [("reading_flags", format_utc(t), canonical_json(record))], events

    async def accepted_lines(self, conn: AsyncConnection, now: datetime) -> list[LineOut]:
        """Lines for readings the operator accepted since the last settlement (booked once).

        A source's difference is sold to the utility at the feed-in price of
        its interval, a meter's bought from it at the retail price: what
        settlement does with energy beyond a household's traded position.
        """
        lines: list[LineOut] = []
        for f in await mq.accepted_unbooked(conn):
            extra = int(f.reading_wh) - int(f.bound_wh)
            prices = await cq.prices_at(conn, f.interval_start)
            if f.category == "source":
                micro = micro_floor(energy_cost_nano(prices.feed_in_ticks, extra))
                price, amount = prices.feed_in_ticks, -micro
            else:
                micro = micro_ceil(energy_cost_nano(prices.retail_ticks, extra))
                price, amount = prices.retail_ticks, micro
            lines.append(LineOut(f.participant_id, ACCEPTED_LINE, extra, price, amount))
            lines.append(LineOut(None, f"utility:{ACCEPTED_LINE}", extra, price, -amount))
            await mq.mark_booked(conn, f.participant_id, f.interval_start, f.asset_id, now)
        return lines


@dataclass(slots=True)
class _Verdict:
    """Per row: the energy to settle, its bound, its flag code (None: plausible)."""

    settle: list[int]
    bounds: list[int]
    codes: list[str | None]
    headroom: dict[tuple[int, str], int]

    @classmethod
    def empty(cls, n: int) -> _Verdict:
        return cls([0] * n, [0] * n, [None] * n, {})


def _key(row: MeteredAsset) -> tuple[int, str]:
    return (row.participant_id, row.asset_id)


def _previous(carried: tuple[datetime, int] | None, t: datetime, schedule: Schedule) -> int:
    """The headroom carried from the interval before ``t`` (-1: none, the battery starts full)."""
    if carried is None or carried[0] != t - schedule.length:
        return -1
    return carried[1]


def _missing_charge_meters(rows: list[MeteredAsset]) -> set[tuple[int, str]]:
    """Charge meters that batteries link but that sent no reading in the interval."""
    present = {_key(r) for r in rows}
    return {
        (r.participant_id, r.charge_meter)
        for r in rows
        if r.charge_meter is not None and (r.participant_id, r.charge_meter) not in present
    }


def _interval_readings(rows: list[MeteredAsset], approvals: list[Approval]) -> IntervalReadings:
    """The rows as the plausibility rules take them (approved ratings, battery links)."""
    index = {_key(r): i for i, r in enumerate(rows)}
    kinds = [declaration_of(r).kind for r in rows]
    charge_row = []
    for r, kind in zip(rows, kinds, strict=True):
        link = index.get((r.participant_id, r.charge_meter)) if r.charge_meter else None
        ok = link is not None and kind is AssetKind.BATTERY and kinds[link] is AssetKind.METER
        charge_row.append(link if ok and link is not None else -1)
    return IntervalReadings(
        [r.asset_id for r in rows],
        kind_codes(kinds),
        np.array([a.power_w or 0 for a in approvals], dtype=np.int64),
        np.array([r.energy_wh or 0 for r in rows], dtype=np.int64),
        np.array(charge_row, dtype=np.int64),
        np.array([a.capacity_wh or 0 for a in approvals], dtype=np.int64),
    )


@dataclass(frozen=True, kw_only=True, eq=False)
class Meters:
    """The operator's side: approve or refuse assets, decide on flagged readings."""

    grid_id: str
    db: Database
    clock: Clock
    limits: ApprovalLimits

    async def assets(self, *, waiting_only: bool = False) -> list[dict[str, Any]]:
        """Every asset in force with the grid's answer for it (``waiting_only``: pending)."""
        async with self.db.read() as conn:
            rows = await mq.current_versions(conn)
            decisions = await iq.asset_decisions_of(conn)
        out = []
        for r in rows:
            approval = decide(
                declaration_of(r), self.limits, decisions.get((r.participant_id, r.asset_id))
            )
            if waiting_only and approval.status != "pending":
                continue
            out.append(_asset_wire(r, approval))
        return out

    async def decide_asset(
        self,
        address: str,
        asset_id: str,
        *,
        approve: bool,
        power_w: int | None = None,
        capacity_wh: int | None = None,
        note: str = "",
    ) -> dict[str, Any]:
        """Approve (possibly at a lower rating) or refuse a household's asset; logged."""
        now = self.clock.now()
        async with self.db.write() as conn:
            pid = await mq.participant_id(conn, address)
            if pid is None:
                raise OperatorError("not_found", f"no participant {address!r}", "address")
            row = next(
                (r for r in await mq.current_versions(conn, pid) if r.asset_id == asset_id), None
            )
            if row is None:
                raise OperatorError("not_found", f"{address} has no asset {asset_id!r}", "asset")
            declared = declaration_of(row)
            above = absolute_excess(declared, self.limits)
            if approve and above:
                # Stored, it would cover every smaller declaration of the asset too.
                raise OperatorError("invalid_field", above[0].reason, above[0].field)
            try:
                decision = (
                    Decision.approve(declared, power_w, capacity_wh, note)
                    if approve
                    else Decision.refuse(declared, note)
                )
            except ValueError as exc:
                field = str(exc).split(":", 1)[0]
                raise OperatorError("invalid_field", str(exc), field) from exc
            approval = decide(declared, self.limits, decision)
            await mq.save_decision(conn, pid, asset_id, decision, now)
            record = {
                "action": "asset_decision",
                "participant": address,
                "asset": asset_id,
                "kind": str(decision.kind),
                "declared_power_w": decision.declared_power_w,
                "declared_capacity_wh": decision.declared_capacity_wh,
                "approved_power_w": decision.approved_power_w,
                "approved_capacity_wh": decision.approved_capacity_wh,
                "note": note,
                "status": str(approval.status),
            }
            wire = _asset_wire(row, approval)
            await self._log_and_tell(conn, now, record, (pid, "asset_approval", wire))
        return wire

    async def flags(self, *, open_only: bool = True, limit: int = 500) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            rows = await mq.flags(conn, open_only=open_only, limit=limit)
            return [await _flag_wire(conn, r) for r in rows]

    async def decide_flag(
        self, address: str, interval: datetime, asset_id: str, decision: str, note: str = ""
    ) -> dict[str, Any]:
        """Settle a flagged reading at its bound or accept it; its statement's payout goes on."""
        if decision not in FLAG_DECISIONS:
            raise OperatorError(
                "invalid_field", f"decision must be one of {', '.join(FLAG_DECISIONS)}", "decision"
            )
        now = self.clock.now()
        async with self.db.write() as conn:
            pid = await mq.participant_id(conn, address)
            if pid is None:
                raise OperatorError("not_found", f"no participant {address!r}", "address")
            row = await mq.decide_flag(
                conn, pid, interval, asset_id, decision=decision, note=note, now=now
            )
            if row is None:
                raise OperatorError(
                    "not_found",
                    f"no undecided flag for {address}/{asset_id} in {format_utc(interval)}",
                    "asset",
                )
            record = {
                "action": "flag_decision",
                "participant": address,
                "asset": asset_id,
                "interval": format_utc(interval),
                "decision": decision,
                "note": note,
            }
            decided = {**record, "statement": await mq.statement_of(conn, pid, interval)}
            # The household learns the decision as it learned the flag (its repair
            # issue goes, its payout goes on), with the note, as an asset's refusal has it.
            told = {k: decided[k] for k in ("asset", "interval", "decision", "note", "statement")}
            await self._log_and_tell(conn, now, record, (pid, "flag_decision", told))
            return decided

    async def _log_and_tell(
        self, conn: AsyncConnection, now: datetime, record: dict[str, Any], event: Event
    ) -> None:
        """The operator's decision in the audit log, and the household's event about it."""
        ref = f"{record['participant']}/{record['asset']}"
        await audit_log.append(
            conn, self.db, self.grid_id, [("operator", ref, canonical_json(record))], now
        )
        await add_events(conn, [event], now, postgres=self.db.is_postgres)


def _asset_wire(row: Any, approval: Approval) -> dict[str, Any]:
    return {
        "participant": row.address,
        "name": row.owner,
        "asset": row.asset_id,
        "category": row.category,
        "kind": row.kind,
        "declared_power_w": row.rated_power_w,
        "declared_capacity_wh": row.usable_capacity_wh,
        "status": str(approval.status),
        "approved_power_w": approval.power_w,
        "approved_capacity_wh": approval.capacity_wh,
        "reason": approval.reason,
    }


async def _flag_wire(conn: AsyncConnection, r: Any) -> dict[str, Any]:
    flag = FlagRow(
        r.participant_id,
        r.address,
        r.asset_id,
        r.category,
        r.interval_start,
        int(r.reading_wh),
        int(r.bound_wh),
        r.code,
    )
    return {
        **flag.to_wire(),
        "name": r.name,
        "flagged_at": format_utc(r.flagged_at),
        "decision": r.decision,
        "decided_at": None if r.decided_at is None else format_utc(r.decided_at),
        "statement": await mq.statement_of(conn, r.participant_id, r.interval_start),
    }
