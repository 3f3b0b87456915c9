"""The queries of meters we can believe: approvals, plausibility at settlement, held payouts.

``grid_server.service.meters`` uses them: the operator's decisions on assets
(``asset_decisions``), each interval's readings with the asset versions in
force (the plausibility check), the batteries' carried headroom, and the
flagged readings whose statements' payouts wait for the operator.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, delete, exists, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from grid_server.domain.approval import Decision

from .cycle_queries import IN_LIST_SLICE
from .schema import (
    asset_decisions,
    assets,
    battery_headroom,
    participants,
    reading_flags,
    readings,
    statements,
)

# --- decisions --------------------------------------------------------------------


async def participant_id(conn: AsyncConnection, address: str) -> int | None:
    value: int | None = await conn.scalar(
        select(participants.c.id).where(participants.c.address == address)
    )
    return value


async def current_versions(conn: AsyncConnection, pid: int | None = None) -> Sequence[Row[Any]]:
    """Asset versions in force now (of one participant, or of all) with the owner's address."""
    query = (
        select(assets, participants.c.address, participants.c.name.label("owner"))
        .join(participants, participants.c.id == assets.c.participant_id)
        .where(assets.c.valid_until.is_(None), participants.c.status != "removed")
        .order_by(participants.c.address, assets.c.asset_id)
    )
    if pid is not None:
        query = query.where(assets.c.participant_id == pid)
    return (await conn.execute(query)).all()


async def save_decision(
    conn: AsyncConnection, pid: int, asset_id: str, decision: Decision, now: datetime
) -> None:
    """The operator's decision on an asset (replaces an earlier one)."""
    await conn.execute(
        delete(asset_decisions).where(
            asset_decisions.c.participant_id == pid, asset_decisions.c.asset_id == asset_id
        )
    )
    await conn.execute(
        insert(asset_decisions).values(
            participant_id=pid,
            asset_id=asset_id,
            kind=str(decision.kind),
            declared_power_w=decision.declared_power_w,
            declared_capacity_wh=decision.declared_capacity_wh,
            approved_power_w=decision.approved_power_w,
            approved_capacity_wh=decision.approved_capacity_wh,
            note=decision.note,
            decided_at=now,
        )
    )


# --- plausibility at settlement ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class MeteredAsset:
    """One asset in force during an interval, with its reading (None: it sent none)."""

    participant_id: int
    asset_id: str
    category: str
    kind: str | None
    rated_power_w: int | None
    charge_meter: str | None
    usable_capacity_wh: int | None
    energy_wh: int | None


async def interval_assets(conn: AsyncConnection, t: datetime, end: datetime) -> list[MeteredAsset]:
    """Every reading of ``[t, end)`` and every battery in force then, with the version in force.

    Batteries without a reading are there too (their charging is carried);
    several versions overlapping the interval count once, the first. Two
    queries: the readings by their interval index, the batteries by kind.
    """
    during = (assets.c.valid_from < end) & (
        (assets.c.valid_until.is_(None)) | (assets.c.valid_until > t)
    )
    version = (
        assets.c.participant_id,
        assets.c.asset_id,
        assets.c.category,
        assets.c.kind,
        assets.c.rated_power_w,
        assets.c.charge_meter,
        assets.c.usable_capacity_wh,
        assets.c.valid_from,
    )
    read = (
        select(*version, readings.c.energy_wh)
        .select_from(readings)
        .join(
            assets,
            (assets.c.participant_id == readings.c.participant_id)
            & (assets.c.asset_id == readings.c.asset_id)
            & during,
        )
        .where(readings.c.interval_start == t)
    )
    batteries = select(*version).where(assets.c.kind == "battery", during)
    found: dict[tuple[int, str], MeteredAsset] = {}
    rows = [*(await conn.execute(read)).all(), *(await conn.execute(batteries)).all()]
    # The first version in force, with its reading when it sent one.
    rows.sort(key=lambda r: (r.participant_id, r.asset_id, r.valid_from))
    energy = {
        (r.participant_id, r.asset_id): int(r.energy_wh) for r in rows if "energy_wh" in r._fields
    }
    for r in rows:
        key = (r.participant_id, r.asset_id)
        if key not in found:
            found[key] = MeteredAsset(
                r.participant_id,
                r.asset_id,
                r.category,
                r.kind,
                r.rated_power_w,
                r.charge_meter,
                r.usable_capacity_wh,
                energy.get(key),
            )
    return list(found.values())


async def meter_versions(
    conn: AsyncConnection, t: datetime, end: datetime, keys: Iterable[tuple[int, str]]
) -> list[MeteredAsset]:
    """Consumer meters ``keys`` in force during ``[t, end)`` (charge meters without a reading)."""
    wanted = set(keys)
    if not wanted:
        return []
    pids = sorted({p for p, _ in wanted})
    rows: list[Row[Any]] = []
    for first in range(0, len(pids), IN_LIST_SLICE):
        rows += await conn.execute(
            select(assets).where(
                assets.c.participant_id.in_(pids[first : first + IN_LIST_SLICE]),
                assets.c.category == "meter",
                assets.c.valid_from < end,
                (assets.c.valid_until.is_(None)) | (assets.c.valid_until > t),
            )
        )
    rows.sort(key=lambda r: r.valid_from)
    found: dict[tuple[int, str], MeteredAsset] = {}
    for r in rows:
        key = (r.participant_id, r.asset_id)
        if key in wanted and key not in found:
            found[key] = MeteredAsset(
                r.participant_id, r.asset_id, "meter", None, r.rated_power_w, None, None, None
            )
    return list(found.values())


async def headrooms(conn: AsyncConnection) -> dict[tuple[int, str], tuple[datetime, int]]:
    """Each battery's carried headroom: (the interval it was carried from, Wh)."""
    rows = await conn.execute(select(battery_headroom))
    return {(r.participant_id, r.asset_id): (r.interval_start, int(r.headroom_wh)) for r in rows}


async def save_headrooms(
    conn: AsyncConnection, t: datetime, values: dict[tuple[int, str], int]
) -> None:
    """Each battery's headroom after ``t`` (every battery of these participants in force then).

    A participant's older rows go: its batteries not in ``values`` were not in force in ``t``.
    """
    if not values:
        return
    pids = sorted({p for p, _ in values})
    for first in range(0, len(pids), IN_LIST_SLICE):
        await conn.execute(
            delete(battery_headroom).where(
                battery_headroom.c.participant_id.in_(pids[first : first + IN_LIST_SLICE])
            )
        )
    await conn.execute(
        insert(battery_headroom),
        [
            {"participant_id": p, "asset_id": a, "interval_start": t, "headroom_wh": wh}
            for (p, a), wh in values.items()
        ],
    )


async def insert_flags(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(insert(reading_flags), rows)


# --- flags and held payouts -------------------------------------------------------


def held_statement() -> Any:
    """SQL: a statement with a flagged reading the operator has not decided on (payout waits)."""
    return exists().where(
        reading_flags.c.participant_id == statements.c.participant_id,
        reading_flags.c.decision.is_(None),
        reading_flags.c.interval_start >= statements.c.period_start,
        reading_flags.c.interval_start < statements.c.period_end,
    )


async def flags(conn: AsyncConnection, *, open_only: bool, limit: int) -> Sequence[Row[Any]]:
    """Flagged readings, newest first, with the owner's address (``open_only``: undecided)."""
    query = (
        select(reading_flags, participants.c.address, participants.c.name)
        .join(participants, participants.c.id == reading_flags.c.participant_id)
        .order_by(reading_flags.c.interval_start.desc(), participants.c.address)
        .limit(limit)
    )
    if open_only:
        query = query.where(reading_flags.c.decision.is_(None))
    return (await conn.execute(query)).all()


async def decide_flag(
    conn: AsyncConnection,
    pid: int,
    interval: datetime,
    asset_id: str,
    *,
    decision: str,
    note: str,
    now: datetime,
) -> Row[Any] | None:
    """Record the operator's decision on a held flag (compare-and-set); the flag, or None."""
    key = and_(
        reading_flags.c.participant_id == pid,
        reading_flags.c.interval_start == interval,
        reading_flags.c.asset_id == asset_id,
    )
    done = await conn.execute(
        update(reading_flags)
        .where(key, reading_flags.c.decision.is_(None))
        .values(decision=decision, note=note, decided_at=now)
    )
    if not done.rowcount:
        return None
    return (await conn.execute(select(reading_flags).where(key))).one()


async def accepted_unbooked(conn: AsyncConnection) -> Sequence[Row[Any]]:
    """Readings the operator accepted whose difference is not settled yet."""
    query = select(reading_flags).where(
        reading_flags.c.decision == "reading", reading_flags.c.booked_at.is_(None)
    )
    return (await conn.execute(query.order_by(reading_flags.c.interval_start))).all()


async def mark_booked(
    conn: AsyncConnection, pid: int, interval: datetime, asset_id: str, now: datetime
) -> None:
    await conn.execute(
        update(reading_flags)
        .where(
            reading_flags.c.participant_id == pid,
            reading_flags.c.interval_start == interval,
            reading_flags.c.asset_id == asset_id,
        )
        .values(booked_at=now)
    )


async def statement_of(conn: AsyncConnection, pid: int, interval: datetime) -> str | None:
    """The statement the interval landed on for the participant (None: not issued yet)."""
    value: str | None = await conn.scalar(
        select(statements.c.id).where(
            statements.c.participant_id == pid,
            statements.c.period_start <= interval,
            statements.c.period_end > interval,
        )
    )
    return value
