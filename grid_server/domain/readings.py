"""The rules for metered readings: which of a ``readings`` envelope's values are taken, and how.

:func:`plan_readings` checks a whole envelope against the stored state it is
given (the participant's asset versions, its readings already recorded, the
intervals' states) and returns what to do with each reading, or raises the
:class:`~p2p_energy_client.protocol.ProtocolError` of the first offending
field. It changes nothing, so a refused envelope leaves no trace; the writer
records the plan afterwards.

Per reading, in this order: the interval has begun and its settlement window
is open, and it is not settled yet; the asset was declared during the
interval, and every version of it then is approved (automatically within the
grid's limits, or by the operator); the energy is at most what the asset (or, for a meter without a
rating, a household) can move in one interval; and then, against what is
recorded: nothing yet → ``accepted``; the same value → ``duplicate`` (a
retry); another value → ``corrected`` when the envelope says
``correction``, else ``reading_conflict``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from p2p_energy_client.protocol import ErrorCode, ProtocolError, Reading, Readings
from p2p_energy_client.units import format_utc

from .assets import AssetLimits, AssetRow, check_approved
from .schedule import Schedule


class ReadingStatus(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    CORRECTED = "corrected"


# Not frozen (a frozen dataclass is four times slower to build): these are made for
# every reading on the ingest hot path, and nothing changes them after but the
# writer, which turns ``envelope`` from a position in its batch into the chain's
# seq once it holds the chain head (grid_server.service.transaction.TxContext.place).
@dataclass(slots=True)
class RecordedReading:
    """A stored reading: its value, revision, the log seq of the envelope that sent it, when."""

    energy_wh: int
    revision: int
    envelope: int
    recorded_at: datetime


@dataclass(slots=True)
class PlannedReading:
    status: ReadingStatus
    reading: Reading
    previous: RecordedReading | None  # what a correction replaces


def plan_readings(
    body: Readings,
    *,
    assets: Sequence[AssetRow],
    recorded: Mapping[tuple[datetime, str], RecordedReading],
    interval_states: Mapping[datetime, str],
    limits: AssetLimits,
    now: datetime,
) -> list[PlannedReading]:
    """What to do with each reading of ``body`` (see the module documentation)."""
    by_asset: dict[str, list[AssetRow]] = defaultdict(list)
    for row in assets:
        by_asset[row.asset_id].append(row)
    plan: list[PlannedReading] = []
    for i, reading in enumerate(body.readings):
        path = f"payload.readings[{i}]"
        _check_interval_open(reading, interval_states, limits.schedule, now, path)
        _check_energy(reading, by_asset.get(reading.asset, ()), limits, path)
        previous = recorded.get((reading.interval, reading.asset))
        status = _status(reading, previous, body.correction, path)
        plan.append(PlannedReading(status, reading, previous))
    return plan


def _check_interval_open(
    reading: Reading,
    interval_states: Mapping[datetime, str],
    schedule: Schedule,
    now: datetime,
    path: str,
) -> None:
    schedule.check_reading_time(reading.interval, now, f"{path}.interval")
    if interval_states.get(reading.interval) == "settled":
        raise ProtocolError(
            ErrorCode.WINDOW_CLOSED,
            f"{path}.interval: {format_utc(reading.interval)} is already settled",
            f"{path}.interval",
        )


def _check_energy(
    reading: Reading, versions: Sequence[AssetRow], limits: AssetLimits, path: str
) -> None:
    """The asset was declared during the interval and can move this much energy in it."""
    schedule = limits.schedule
    end = reading.interval + schedule.length
    during = [v for v in versions if v.overlaps(reading.interval, end)]
    if not during:
        raise ProtocolError(
            ErrorCode.UNKNOWN_ASSET,
            f"{path}.asset: no asset {reading.asset!r} was declared during "
            f"{format_utc(reading.interval)}",
            f"{path}.asset",
        )
    for version in during:
        check_approved(limits.approval_of(version), f"{path}.asset")
    powers = [v.rated_power_w for v in during]
    limit = (
        schedule.max_energy_wh(limits.household_max_power_w)
        if any(p is None for p in powers)
        else schedule.max_energy_wh(max(p for p in powers if p is not None))
    )
    if reading.energy_wh > limit:
        raise ProtocolError(
            ErrorCode.OVER_CAPACITY,
            f"{path}.energy_wh: {reading.energy_wh} Wh is more than {limit} Wh, what "
            f"{reading.asset!r} can move in {schedule.interval_minutes} minutes",
            f"{path}.energy_wh",
        )


def _status(
    reading: Reading, previous: RecordedReading | None, correction: bool, path: str
) -> ReadingStatus:
    if previous is None:
        return ReadingStatus.ACCEPTED
    if previous.energy_wh == reading.energy_wh:
        return ReadingStatus.DUPLICATE
    if correction:
        return ReadingStatus.CORRECTED
    raise ProtocolError(
        ErrorCode.READING_CONFLICT,
        f"{path}.energy_wh: {previous.energy_wh} Wh is already recorded for "
        f"{reading.asset!r} in {format_utc(reading.interval)}; send correction=true "
        "to replace it",
        f"{path}.energy_wh",
    )
