"""``readings``: metered energy per interval and asset, all-or-nothing per envelope.

The rules are the domain's (:func:`grid_server.domain.readings.plan_readings`);
here the plan is recorded: buffered for the batch's bulk writes and applied to
the batch's view of the recorded readings, so a later envelope of the same
batch sees it.
"""

from __future__ import annotations

from grid_server.domain.readings import (
    PlannedReading,
    ReadingStatus,
    RecordedReading,
    plan_readings,
)
from grid_server.storage.ingest_queries import ReadingWrite
from p2p_energy_client.models import ReadingAck, ReadingsResult
from p2p_energy_client.protocol import Readings

from ..transaction import Handled, ParticipantRow, TxContext


def report_readings(ctx: TxContext, body: Readings, participant: ParticipantRow) -> Handled:
    recorded = ctx.readings.setdefault(participant.id, {})
    plan = plan_readings(
        body,
        assets=ctx.assets.get(participant.id, ()),
        recorded=recorded,
        interval_states=ctx.interval_states,
        limits=ctx.rules.limits,
        now=ctx.now,
    )
    counts = dict.fromkeys(ReadingStatus, 0)
    for planned in plan:
        counts[planned.status] += 1
        _record(ctx, participant.id, planned)
    ctx.count("readings_accepted", counts[ReadingStatus.ACCEPTED])
    ctx.count("readings_duplicate", counts[ReadingStatus.DUPLICATE])
    ctx.count("readings_corrected", counts[ReadingStatus.CORRECTED])
    result = ReadingsResult(
        counts[ReadingStatus.ACCEPTED],
        counts[ReadingStatus.DUPLICATE],
        counts[ReadingStatus.CORRECTED],
        tuple(ReadingAck(p.reading.interval, p.reading.asset, str(p.status)) for p in plan),
    )
    return Handled(result.to_wire(), participant.id)


def _record(ctx: TxContext, pid: int, planned: PlannedReading) -> None:
    """Buffer the write of one planned reading and note it in the batch's view."""
    if planned.status is ReadingStatus.DUPLICATE:
        return
    reading = planned.reading
    previous = planned.previous
    revision = 0 if previous is None else previous.revision + 1
    value = RecordedReading(reading.energy_wh, revision, ctx.next_log_pos(), ctx.now)
    ctx.reading_writes.append(ReadingWrite(pid, reading.interval, reading.asset, value, previous))
    ctx.readings[pid][(reading.interval, reading.asset)] = value
