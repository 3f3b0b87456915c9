"""The queries of the group-commit writer and its payload handlers (``grid_server.service``).

Reads load a whole batch's worth at once (the envelopes already accepted,
the senders, their assets, readings and order books, the intervals' states);
writes take the rows the handlers buffered and send one ``executemany`` per
table. Everything runs in the writer's transaction.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, delete, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from grid_server.domain.approval import AssetKind, Decision
from grid_server.domain.assets import AssetRow
from grid_server.domain.readings import RecordedReading
from grid_server.domain.registry import AssetVersion
from p2p_energy_client.models import OrderView
from p2p_energy_client.units import parse_price

from .cycle_queries import IN_LIST_SLICE
from .schema import (
    asset_decisions,
    assets,
    envelopes,
    intervals,
    invitations,
    orders,
    participants,
    reading_history,
    readings,
    sessions,
)

# --- the writer -------------------------------------------------------------------

_SHARED_LOCK = text("SELECT pg_advisory_xact_lock_shared(:k)")


async def lock_shared(conn: AsyncConnection, keys: Iterable[int]) -> None:
    """PostgreSQL: share the advisory locks ``keys`` until the transaction ends."""
    for key in keys:
        await conn.execute(_SHARED_LOCK, {"k": key})


async def stored_results(
    conn: AsyncConnection, identities: Collection[tuple[str, int]]
) -> dict[tuple[str, int], tuple[bytes, bytes, str]]:
    """Accepted envelopes among ``(sender, seq)`` identities: identity → (hash of the
    signed payload, answer stored, payload type)."""
    if not identities:
        return {}
    query = select(
        envelopes.c.sender,
        envelopes.c.seq,
        envelopes.c.payload_hash,
        envelopes.c.result,
        envelopes.c.type,
    ).where(
        envelopes.c.sender.in_({sender for sender, _ in identities}),
        envelopes.c.seq.in_({seq for _, seq in identities}),
    )
    wanted = set(identities)
    return {
        (r.sender, int(r.seq)): (bytes(r.payload_hash), bytes(r.result), r.type)
        for r in await conn.execute(query)
        if (r.sender, int(r.seq)) in wanted
    }


async def participants_by_address(
    conn: AsyncConnection, addresses: Collection[str], *, lock: bool = False
) -> list[Row[Any]]:
    """The participants among ``addresses``; ``lock``: ``FOR UPDATE``, in id order (the
    order every writer locks participants in, so two batches never wait in a circle)."""
    query = select(participants).where(participants.c.address.in_(addresses))
    if lock:
        query = query.order_by(participants.c.id).with_for_update()
    return list(await conn.execute(query))


async def insert_envelopes(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    await conn.execute(insert(envelopes), rows)


async def update_last_seqs(conn: AsyncConnection, last_seqs: Mapping[int, int]) -> None:
    """Each participant's last accepted payload sequence number (participant id → seq)."""
    await conn.execute(
        update(participants)
        .where(participants.c.id == bindparam("pid"))
        .values(last_seq=bindparam("new_seq")),
        [{"pid": pid, "new_seq": seq} for pid, seq in last_seqs.items()],
    )


# --- prefetch ---------------------------------------------------------------------


async def assets_of(conn: AsyncConnection, pids: Collection[int]) -> dict[int, list[AssetRow]]:
    """Every stored asset version of the participants (an empty list for one without)."""
    found: dict[int, list[AssetRow]] = {pid: [] for pid in pids}
    decisions = await asset_decisions_of(conn, pids)
    for r in await conn.execute(select(assets).where(assets.c.participant_id.in_(pids))):
        found[r.participant_id].append(asset_row(r, decisions.get((r.participant_id, r.asset_id))))
    return found


def asset_row(r: Any, decision: Decision | None) -> AssetRow:
    """An ``assets`` row as the domain sees it, with the operator's decision on the asset."""
    return AssetRow(
        r.asset_id,
        r.category,
        r.kind,
        r.name,
        r.rated_power_w,
        r.valid_from,
        r.valid_until,
        r.charge_meter,
        r.usable_capacity_wh,
        decision,
    )


async def asset_decisions_of(
    conn: AsyncConnection, pids: Collection[int] | None = None
) -> dict[tuple[int, str], Decision]:
    """The operator's decisions by (participant id, asset id) (of ``pids``, or all)."""
    query = select(asset_decisions)
    if pids is not None:
        query = query.where(asset_decisions.c.participant_id.in_(pids))
    return {
        (r.participant_id, r.asset_id): Decision(
            AssetKind(r.kind),
            r.declared_power_w,
            r.declared_capacity_wh,
            r.approved_power_w,
            r.approved_capacity_wh,
            r.note,
        )
        for r in await conn.execute(query)
    }


async def recorded_readings(
    conn: AsyncConnection, keys: Collection[tuple[int, datetime]]
) -> dict[int, dict[tuple[datetime, str], RecordedReading]]:
    """Readings of the (participant, interval) pairs (and of other pairs of the same ids)."""
    found: dict[int, dict[tuple[datetime, str], RecordedReading]] = {}
    query = select(
        readings.c.participant_id,
        readings.c.interval_start,
        readings.c.asset_id,
        readings.c.energy_wh,
        readings.c.revision,
        readings.c.envelope,
        readings.c.recorded_at,
    ).where(
        readings.c.participant_id.in_({p for p, _ in keys}),
        readings.c.interval_start.in_({i for _, i in keys}),
    )
    for r in await conn.execute(query):
        found.setdefault(r.participant_id, {})[(r.interval_start, r.asset_id)] = RecordedReading(
            r.energy_wh, r.revision, r.envelope, r.recorded_at
        )
    return found


async def order_books(
    conn: AsyncConnection, keys: Collection[tuple[int, datetime]]
) -> dict[tuple[int, datetime], dict[str, OrderView]]:
    """The stored order books of the (participant, interval) pairs: order id → order."""
    books: dict[tuple[int, datetime], dict[str, OrderView]] = {key: {} for key in keys}
    query = select(orders).where(
        orders.c.participant_id.in_({p for p, _ in keys}),
        orders.c.interval_start.in_({i for _, i in keys}),
    )
    for r in await conn.execute(query):
        book = books.get((r.participant_id, r.interval_start))
        if book is not None:
            book[r.order_id] = _order_view(r)
    return books


async def order_book(conn: AsyncConnection, pid: int, interval: datetime) -> dict[str, OrderView]:
    query = select(orders).where(
        orders.c.interval_start == interval, orders.c.participant_id == pid
    )
    return {r.order_id: _order_view(r) for r in await conn.execute(query)}


def _order_view(row: Any) -> OrderView:
    return OrderView(row.order_id, row.side, row.energy_wh, row.price, row.zone)


async def interval_states(
    conn: AsyncConnection, starts: Collection[datetime]
) -> dict[datetime, str]:
    query = select(intervals.c.start, intervals.c.state).where(intervals.c.start.in_(starts))
    return {r.start: r.state for r in await conn.execute(query)}


# --- join and session -------------------------------------------------------------


async def lock_invitations(conn: AsyncConnection, digests: Collection[bytes]) -> None:
    """PostgreSQL: lock the invitations ``FOR UPDATE`` in code hash order (see audit_log)."""
    query = (
        select(invitations.c.code_hash)
        .where(invitations.c.code_hash.in_(digests))
        .order_by(invitations.c.code_hash)
        .with_for_update()
    )
    await conn.execute(query)


async def invitation(conn: AsyncConnection, digest: bytes) -> Row[Any] | None:
    query = select(invitations).where(invitations.c.code_hash == digest)
    return (await conn.execute(query)).one_or_none()


async def reactivate_participant(
    conn: AsyncConnection, pid: int, *, name: str, zone: str, role: str, seq: int
) -> None:
    await conn.execute(
        update(participants)
        .where(participants.c.id == pid)
        .values(name=name, zone=zone, role=role, status="active", last_seq=seq)
    )


async def insert_participant(
    conn: AsyncConnection,
    *,
    address: str,
    public_key: bytes,
    name: str,
    zone: str,
    role: str,
    seq: int,
    now: datetime,
) -> int:
    pid = await conn.scalar(
        insert(participants)
        .values(
            address=address,
            public_key=public_key,
            name=name,
            zone=zone,
            role=role,
            status="active",
            last_seq=seq,
            joined_at=now,
        )
        .returning(participants.c.id)
    )
    assert pid is not None
    return int(pid)


async def claim_invitation(conn: AsyncConnection, digest: bytes, pid: int, now: datetime) -> bool:
    """Compare-and-set: of two joins racing for one code exactly one gets True."""
    used = await conn.execute(
        update(invitations)
        .where(invitations.c.code_hash == digest, invitations.c.used_at.is_(None))
        .values(used_at=now, used_by=pid)
    )
    return used.rowcount == 1


async def insert_session(
    conn: AsyncConnection, token_hash: bytes, pid: int, now: datetime, expires: datetime
) -> None:
    await conn.execute(
        insert(sessions).values(
            token_hash=token_hash, participant_id=pid, created_at=now, expires_at=expires
        )
    )


# --- assets -----------------------------------------------------------------------


async def retire_assets(
    conn: AsyncConnection, pid: int, asset_ids: Collection[str], now: datetime
) -> None:
    await conn.execute(
        update(assets)
        .where(
            assets.c.participant_id == pid,
            assets.c.asset_id.in_(asset_ids),
            assets.c.valid_until.is_(None),
        )
        .values(valid_until=now)
    )


async def insert_assets(
    conn: AsyncConnection, pid: int, versions: Iterable[AssetVersion], now: datetime
) -> None:
    await conn.execute(
        insert(assets),
        [
            {
                "participant_id": pid,
                "asset_id": v.asset_id,
                "category": v.category,
                "kind": v.kind,
                "name": v.name,
                "rated_power_w": v.rated_power_w,
                "valid_from": now,
                "valid_until": None,
                "charge_meter": v.charge_meter,
                "usable_capacity_wh": v.usable_capacity_wh,
            }
            for v in versions
        ],
    )


# --- readings ---------------------------------------------------------------------


@dataclass(slots=True)  # not frozen: one per reading on the ingest hot path (see RecordedReading)
class ReadingWrite:
    """A reading to store; a correction also keeps the value it replaces in the history."""

    participant_id: int
    interval: datetime
    asset: str
    value: RecordedReading
    replaces: RecordedReading | None = None


async def write_readings(conn: AsyncConnection, writes: list[ReadingWrite]) -> None:
    """New readings, then the history of corrected ones, then the corrections (in order)."""
    new = [w for w in writes if w.replaces is None]
    corrected = [w for w in writes if w.replaces is not None]
    if new:
        await conn.execute(insert(readings), [_reading_row(w) for w in new])
    if corrected:
        await conn.execute(insert(reading_history), [_history_row(w) for w in corrected])
        await conn.execute(_CORRECT, [_correction_row(w) for w in corrected])


_CORRECT = (
    update(readings)
    .where(
        readings.c.participant_id == bindparam("k_pid"),
        readings.c.interval_start == bindparam("k_interval"),
        readings.c.asset_id == bindparam("k_asset"),
    )
    .values(
        energy_wh=bindparam("energy_wh"),
        envelope=bindparam("envelope"),
        recorded_at=bindparam("recorded_at"),
        revision=bindparam("revision"),
    )
)


def _value(value: RecordedReading) -> dict[str, Any]:
    return {
        "energy_wh": value.energy_wh,
        "envelope": value.envelope,
        "recorded_at": value.recorded_at,
        "revision": value.revision,
    }


def _reading_row(w: ReadingWrite) -> dict[str, Any]:
    return {
        "participant_id": w.participant_id,
        "interval_start": w.interval,
        "asset_id": w.asset,
        **_value(w.value),
    }


def _history_row(w: ReadingWrite) -> dict[str, Any]:
    """The replaced value, when and by which envelope it was replaced."""
    assert w.replaces is not None
    return {
        **_reading_row(replace(w, value=w.replaces)),
        "replaced_at": w.value.recorded_at,
        "replaced_by": w.value.envelope,
    }


def _correction_row(w: ReadingWrite) -> dict[str, Any]:
    """The new value of a corrected reading, keyed for the update (``k_*``)."""
    return {
        "k_pid": w.participant_id,
        "k_interval": w.interval,
        "k_asset": w.asset,
        **_value(w.value),
    }


# --- orders -----------------------------------------------------------------------


async def delete_order_books(
    conn: AsyncConnection, changed: Collection[tuple[int, datetime]]
) -> None:
    """The stored books ``(participant, interval)`` that a batch replaces, deleted."""
    # One statement per interval and slice of households, not one per book (at 100,000
    # households on PostgreSQL the per-book deletes were what the orders phase waited
    # on: 227 s), and not a list of (interval, participant) pairs either: PostgreSQL
    # plans that as an OR of row comparisons, which still held it 0.48 of the time.
    # "interval_start = … AND participant_id IN (…)" walks the primary key.
    by_interval: dict[datetime, list[int]] = {}
    for pid, interval in sorted(changed):
        by_interval.setdefault(interval, []).append(pid)
    for interval, pids in by_interval.items():
        for first in range(0, len(pids), IN_LIST_SLICE):
            await conn.execute(
                delete(orders).where(
                    orders.c.interval_start == interval,
                    orders.c.participant_id.in_(pids[first : first + IN_LIST_SLICE]),
                )
            )


async def insert_order_books(
    conn: AsyncConnection,
    changed: Mapping[tuple[int, datetime], int],
    books: Mapping[tuple[int, datetime], Mapping[str, OrderView]],
    now: datetime,
) -> None:
    """The changed books (deleted before), each order carrying the log seq of the envelope
    that last changed its book (``changed``)."""
    rows = [
        {
            "interval_start": interval,
            "participant_id": pid,
            "order_id": o.id,
            "side": o.side,
            "energy_wh": o.energy_wh,
            "price": o.price,
            "price_ticks": parse_price(o.price),
            "zone": o.zone,
            "envelope": envelope_seq,
            "placed_at": now,
        }
        for (pid, interval), envelope_seq in changed.items()
        for o in books[(pid, interval)].values()
    ]
    if rows:
        await conn.execute(insert(orders), rows)
