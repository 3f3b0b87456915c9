"""What each accepted payload type does, inside the writer's transaction.

Every handler validates the whole payload against the stored state first and
only then changes anything (or buffers the change for the batch's bulk
insert), so a refused envelope leaves no trace and a batch is all-or-nothing.
Errors name the first offending field.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, delete, insert, select, update

from grid_server.domain.registry import (
    AssetVersion,
    InvitationState,
    check_assets_for_role,
    check_invitation,
    code_hash,
    diff_assets,
)
from grid_server.storage.schema import (
    assets,
    intervals,
    invitations,
    orders,
    participants,
    reading_history,
    readings,
    sessions,
)
from p2p_energy_client.models import (
    AssetsView,
    OrderBook,
    OrderView,
    Participant,
    ReadingAck,
    ReadingsResult,
    SessionToken,
)
from p2p_energy_client.protocol import (
    Assets,
    ErrorCode,
    Join,
    MeterDecl,
    Orders,
    Payment,
    ProtocolError,
    Readings,
    Side,
    SourceDecl,
    SourceKind,
    Transfer,
    canonical_json,
)
from p2p_energy_client.units import format_utc

from .ingest import ParticipantRow, Submission, TxContext

if TYPE_CHECKING:
    from collections.abc import Iterable


@dataclass(slots=True)
class AssetRow:
    asset_id: str
    category: str
    kind: str | None
    name: str
    rated_power_w: int | None
    valid_from: datetime
    valid_until: datetime | None

    @property
    def version(self) -> AssetVersion:
        return AssetVersion(self.asset_id, self.category, self.kind, self.name, self.rated_power_w)

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return self.valid_from < end and (self.valid_until is None or self.valid_until > start)


@dataclass(slots=True)
class Handled:
    answer: dict[str, Any]
    participant_id: int
    # What is stored for duplicate answers, when it must differ from ``answer``.
    stored: dict[str, Any] | None = None


# --- prefetch -------------------------------------------------------------------


async def prefetch(ctx: TxContext, batch: list[Submission]) -> None:
    """Load in a few queries what the batch's handlers will look at."""
    pids: set[int] = set()
    reading_keys: set[tuple[int, datetime]] = set()
    order_keys: set[tuple[int, datetime]] = set()
    touched: set[datetime] = set()
    for sub in batch:
        participant = ctx.participants.get(sub.envelope.sender)
        if participant is None:
            continue
        pids.add(participant.id)
        body = sub.envelope.payload.body
        if isinstance(body, Readings):
            for r in body.readings:
                reading_keys.add((participant.id, r.interval))
                touched.add(r.interval)
        elif isinstance(body, Orders):
            order_keys.add((participant.id, body.interval))
            touched.add(body.interval)
    conn = ctx.conn
    asset_cache: dict[int, list[AssetRow]] = defaultdict(list)
    if pids:
        for row in await conn.execute(select(assets).where(assets.c.participant_id.in_(pids))):
            asset_cache[row.participant_id].append(
                AssetRow(
                    row.asset_id,
                    row.category,
                    row.kind,
                    row.name,
                    row.rated_power_w,
                    row.valid_from,
                    row.valid_until,
                )
            )
    ctx.cache["assets"] = asset_cache
    reading_cache: dict[tuple[int, datetime, str], tuple[int, int, int, datetime]] = {}
    if reading_keys:
        rpids = {p for p, _ in reading_keys}
        rintervals = {i for _, i in reading_keys}
        query = select(
            readings.c.participant_id,
            readings.c.interval_start,
            readings.c.asset_id,
            readings.c.energy_wh,
            readings.c.revision,
            readings.c.envelope,
            readings.c.recorded_at,
        ).where(readings.c.participant_id.in_(rpids), readings.c.interval_start.in_(rintervals))
        for row in await conn.execute(query):
            reading_cache[(row.participant_id, row.interval_start, row.asset_id)] = (
                row.energy_wh,
                row.revision,
                row.envelope,
                row.recorded_at,
            )
    ctx.cache["readings"] = reading_cache
    # The books the batch's orders envelopes change: (participant, interval) → id → order.
    books: dict[tuple[int, datetime], dict[str, OrderView]] = {key: {} for key in order_keys}
    if order_keys:
        query = select(orders).where(
            orders.c.participant_id.in_({p for p, _ in order_keys}),
            orders.c.interval_start.in_({i for _, i in order_keys}),
        )
        for row in await conn.execute(query):
            book = books.get((row.participant_id, row.interval_start))
            if book is not None:
                book[row.order_id] = _order_view(row)
    ctx.cache["order_books"] = books
    states: dict[datetime, str] = {}
    if touched:
        for row in await conn.execute(
            select(intervals.c.start, intervals.c.state).where(intervals.c.start.in_(touched))
        ):
            states[row.start] = row.state
    ctx.cache["interval_state"] = states
    # Payments and transfers: ledger accounts, statements (see payment_batch).
    await ctx.grid.payments.prefetch(ctx, batch)


async def apply(ctx: TxContext, sub: Submission, participant: ParticipantRow | None) -> Handled:
    body = sub.envelope.payload.body
    if isinstance(body, Join):
        return await _join(ctx, sub, body, participant)
    assert participant is not None
    if isinstance(body, Readings):
        return _readings(ctx, sub, body, participant)
    if isinstance(body, Orders):
        return await _orders(ctx, sub, body, participant)
    if isinstance(body, Assets):
        return await _assets(ctx, body, participant)
    if sub.envelope.payload.type == "session":
        return await _session(ctx, participant)
    if isinstance(body, Payment):
        answer = await ctx.grid.payments.apply_payment(ctx, sub, body, participant)
        return Handled(answer, participant.id)
    if isinstance(body, Transfer):
        answer = await ctx.grid.payments.apply_transfer(ctx, sub, body, participant)
        return Handled(answer, participant.id)
    raise ProtocolError(
        ErrorCode.INVALID_FIELD,
        f"payload.type: {sub.envelope.payload.type!r} is not accepted by this grid yet",
        "payload.type",
    )


# --- join -------------------------------------------------------------------------


async def _join(
    ctx: TxContext, sub: Submission, body: Join, participant: ParticipantRow | None
) -> Handled:
    env = sub.envelope
    if participant is not None and participant.status == "active":
        raise ProtocolError(
            ErrorCode.ALREADY_REGISTERED, "this key is already a member of the grid", "public_key"
        )
    conn = ctx.conn
    digest = code_hash(body.invitation)
    row = (
        await conn.execute(select(invitations).where(invitations.c.code_hash == digest))
    ).one_or_none()
    state = None if row is None else InvitationState(row.used_at, row.revoked_at, row.expires_at)
    check_invitation(state, ctx.now)
    assert row is not None
    grid_config = ctx.grid.config
    zone = row.zone or grid_config.join_zone
    role = row.role or "prosumer"
    header = env.payload.header
    pid: int | None
    if participant is not None:
        # A suspended or removed household comes back with a fresh invitation
        # from the operator under the same key (and keeps its history).
        pid = participant.id
        await conn.execute(
            update(participants)
            .where(participants.c.id == pid)
            .values(name=body.name, zone=zone, role=role, status="active", last_seq=header.seq)
        )
    else:
        pid = await conn.scalar(
            insert(participants)
            .values(
                address=header.sender,
                public_key=env.public_key,
                name=body.name,
                zone=zone,
                role=role,
                status="active",
                last_seq=header.seq,
                joined_at=ctx.now,
            )
            .returning(participants.c.id)
        )
    assert pid is not None
    # Compare-and-set: of two joins racing for one code exactly one wins.
    used = await conn.execute(
        update(invitations)
        .where(invitations.c.code_hash == digest, invitations.c.used_at.is_(None))
        .values(used_at=ctx.now, used_by=pid)
    )
    if used.rowcount != 1:
        raise ProtocolError(
            ErrorCode.INVITATION_USED, "this invitation was already used", "payload.invitation"
        )
    joined_at = participant.joined_at if participant is not None else ctx.now
    ctx.participants[header.sender] = ParticipantRow(
        int(pid), header.sender, body.name, zone, role, "active", header.seq, joined_at
    )
    if participant is None:
        ctx.cache["assets"][int(pid)] = []
    # The grid's decision (zone and role come from the invitation, which is not
    # in the log) is logged after the batch's envelopes, for audit replay.
    joined = {"address": header.sender, "zone": zone, "role": role, "envelope": ctx.next_log_seq()}
    ctx.cache.setdefault("join_log", []).append(
        ("participant", header.sender, canonical_json(joined))
    )
    if _flush_join_log not in ctx.flushers:
        ctx.flushers.append(_flush_join_log)
    answer = Participant(
        header.sender, body.name, zone, role, "active", joined_at, header.seq, AssetsView((), ())
    )
    return Handled(answer.to_wire(), int(pid))


async def _flush_join_log(ctx: TxContext) -> None:
    ctx.log_items.extend(ctx.cache.pop("join_log", []))


# --- session ----------------------------------------------------------------------


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def _session(ctx: TxContext, participant: ParticipantRow) -> Handled:
    token = secrets.token_urlsafe(32)
    expires = ctx.now + timedelta(seconds=ctx.grid.settings.session_ttl_seconds)
    await ctx.conn.execute(
        insert(sessions).values(
            token_hash=token_hash(token),
            participant_id=participant.id,
            created_at=ctx.now,
            expires_at=expires,
        )
    )
    answer = SessionToken(token, expires, participant.address).to_wire()
    return Handled(answer, participant.id, stored={**answer, "token": None})


# --- assets -----------------------------------------------------------------------


def current_assets(rows: Iterable[AssetRow]) -> dict[str, AssetRow]:
    return {r.asset_id: r for r in rows if r.valid_until is None}


def assets_view(rows: Iterable[AssetRow]) -> AssetsView:
    sources: list[SourceDecl] = []
    meters: list[MeterDecl] = []
    for r in sorted(rows, key=lambda r: r.asset_id):
        if r.category == "source":
            assert r.kind is not None
            assert r.rated_power_w is not None
            sources.append(SourceDecl(r.asset_id, r.name, SourceKind(r.kind), r.rated_power_w))
        else:
            meters.append(MeterDecl(r.asset_id, r.name, r.rated_power_w))
    return AssetsView(tuple(sources), tuple(meters))


async def _assets(ctx: TxContext, body: Assets, participant: ParticipantRow) -> Handled:
    check_assets_for_role(participant.role, body)
    rows: list[AssetRow] = ctx.cache["assets"].setdefault(participant.id, [])
    current = current_assets(rows)
    retire, start = diff_assets({k: v.version for k, v in current.items()}, body)
    conn = ctx.conn
    now = ctx.now
    if retire:
        await conn.execute(
            update(assets)
            .where(
                assets.c.participant_id == participant.id,
                assets.c.asset_id.in_(retire),
                assets.c.valid_until.is_(None),
            )
            .values(valid_until=now)
        )
        for aid in retire:
            current[aid].valid_until = now
    if start:
        new_rows = [
            AssetRow(v.asset_id, v.category, v.kind, v.name, v.rated_power_w, now, None)
            for v in start
        ]
        await conn.execute(
            insert(assets),
            [
                {
                    "participant_id": participant.id,
                    "asset_id": r.asset_id,
                    "category": r.category,
                    "kind": r.kind,
                    "name": r.name,
                    "rated_power_w": r.rated_power_w,
                    "valid_from": r.valid_from,
                    "valid_until": None,
                }
                for r in new_rows
            ],
        )
        rows.extend(new_rows)
    return Handled(assets_view(current_assets(rows).values()).to_wire(), participant.id)


# --- readings ---------------------------------------------------------------------


def _readings(
    ctx: TxContext, sub: Submission, body: Readings, participant: ParticipantRow
) -> Handled:
    schedule = ctx.grid.schedule
    now = ctx.now
    length = schedule.length
    asset_rows: list[AssetRow] = ctx.cache["assets"].get(participant.id, [])
    by_asset: dict[str, list[AssetRow]] = defaultdict(list)
    for row in asset_rows:
        by_asset[row.asset_id].append(row)
    cache = ctx.cache["readings"]
    states = ctx.cache["interval_state"]
    household_max = schedule.max_energy_wh(ctx.grid.config.household_max_power_w)
    plan: list[tuple[str, Any]] = []
    for i, reading in enumerate(body.readings):
        path = f"payload.readings[{i}]"
        schedule.check_reading_time(reading.interval, now, f"{path}.interval")
        if states.get(reading.interval) == "settled":
            raise ProtocolError(
                ErrorCode.WINDOW_CLOSED,
                f"{path}.interval: {format_utc(reading.interval)} is already settled",
                f"{path}.interval",
            )
        end = reading.interval + length
        versions = [v for v in by_asset.get(reading.asset, ()) if v.overlaps(reading.interval, end)]
        if not versions:
            raise ProtocolError(
                ErrorCode.UNKNOWN_ASSET,
                f"{path}.asset: no asset {reading.asset!r} was declared during "
                f"{format_utc(reading.interval)}",
                f"{path}.asset",
            )
        powers = [v.rated_power_w for v in versions]
        limit = (
            household_max
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
        key = (participant.id, reading.interval, reading.asset)
        existing = cache.get(key)
        if existing is None:
            plan.append(("accepted", reading))
        elif existing[0] == reading.energy_wh:
            plan.append(("duplicate", reading))
        elif body.correction:
            plan.append(("corrected", reading))
        else:
            raise ProtocolError(
                ErrorCode.READING_CONFLICT,
                f"{path}.energy_wh: {existing[0]} Wh is already recorded for "
                f"{reading.asset!r} in {format_utc(reading.interval)}; send correction=true "
                "to replace it",
                f"{path}.energy_wh",
            )
    # Everything is valid: record it (buffered for the batch's bulk writes).
    envelope_seq = ctx.next_log_seq()
    acks: list[ReadingAck] = []
    counts = {"accepted": 0, "duplicate": 0, "corrected": 0}
    for status, reading in plan:
        counts[status] += 1
        acks.append(ReadingAck(reading.interval, reading.asset, status))
        key = (participant.id, reading.interval, reading.asset)
        if status == "accepted":
            ctx.defer(
                "reading_insert",
                {
                    "participant_id": participant.id,
                    "interval_start": reading.interval,
                    "asset_id": reading.asset,
                    "energy_wh": reading.energy_wh,
                    "envelope": envelope_seq,
                    "recorded_at": now,
                    "revision": 0,
                },
            )
            cache[key] = (reading.energy_wh, 0, envelope_seq, now)
        elif status == "corrected":
            old_wh, revision, old_env, old_at = cache[key]
            ctx.defer(
                "reading_history",
                {
                    "participant_id": participant.id,
                    "interval_start": reading.interval,
                    "asset_id": reading.asset,
                    "energy_wh": old_wh,
                    "envelope": old_env,
                    "recorded_at": old_at,
                    "revision": revision,
                    "replaced_at": now,
                    "replaced_by": envelope_seq,
                },
            )
            ctx.defer(
                "reading_update",
                {
                    "k_pid": participant.id,
                    "k_interval": reading.interval,
                    "k_asset": reading.asset,
                    "energy_wh": reading.energy_wh,
                    "envelope": envelope_seq,
                    "recorded_at": now,
                    "revision": revision + 1,
                },
            )
            cache[key] = (reading.energy_wh, revision + 1, envelope_seq, now)
    if _flush_readings not in ctx.flushers:
        ctx.flushers.append(_flush_readings)
    ctx.count("readings_accepted", counts["accepted"])
    ctx.count("readings_duplicate", counts["duplicate"])
    ctx.count("readings_corrected", counts["corrected"])
    result = ReadingsResult(
        counts["accepted"], counts["duplicate"], counts["corrected"], tuple(acks)
    )
    return Handled(result.to_wire(), participant.id)


async def _flush_readings(ctx: TxContext) -> None:
    conn = ctx.conn
    if rows := ctx.deferred.pop("reading_insert", None):
        await conn.execute(insert(readings), rows)
    if rows := ctx.deferred.pop("reading_history", None):
        await conn.execute(insert(reading_history), rows)
    if rows := ctx.deferred.pop("reading_update", None):
        await conn.execute(
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
            ),
            rows,
        )


# --- orders -----------------------------------------------------------------------


async def _orders(
    ctx: TxContext, sub: Submission, body: Orders, participant: ParticipantRow
) -> Handled:
    schedule = ctx.grid.schedule
    interval = body.interval
    schedule.check_order_time(interval, ctx.now, "payload.interval")
    state = ctx.cache["interval_state"].get(interval)
    if state not in (None, "open"):
        raise ProtocolError(
            ErrorCode.GATE_CLOSED,
            f"payload.interval: {format_utc(interval)} is already {state}",
            "payload.interval",
        )
    conn = ctx.conn
    books: dict[tuple[int, datetime], dict[str, OrderView]] = ctx.cache.setdefault(
        "order_books", {}
    )
    key = (participant.id, interval)
    existing = books.get(key)
    if existing is None:  # not prefetched (joined in this batch, or called directly)
        existing = {
            row.order_id: _order_view(row)
            for row in await conn.execute(
                select(orders).where(
                    orders.c.interval_start == interval, orders.c.participant_id == participant.id
                )
            )
        }
    book: dict[str, OrderView] = {} if body.replace_all else dict(existing)
    for order_id in body.cancel:
        # Cancelling an order that is not (or no longer) there is a no-op.
        book.pop(order_id, None)
    placed_index: dict[str, int] = {}
    for i, spec in enumerate(body.place):
        book[spec.id] = OrderView(
            spec.id, str(spec.side), spec.energy_wh, spec.price, participant.zone
        )
        placed_index[spec.id] = i
    if len(book) > 200:
        raise ProtocolError(
            ErrorCode.INVALID_FIELD,
            "payload.place: at most 200 orders per participant and interval",
            "payload.place",
        )
    _check_order_capacity(ctx, participant, interval, book, placed_index)
    first_buy = next((i for i, o in enumerate(body.place) if o.side == Side.BUY), None)
    if first_buy is not None:
        await ctx.grid.payments.check_buy_allowed(
            conn, participant.id, ctx.now, f"payload.place[{first_buy}].side"
        )
    # Valid: the book replaces the stored one when the batch is written (every
    # order then carries the envelope that last changed the book).
    books[key] = book
    ctx.cache.setdefault("order_envelopes", {})[key] = ctx.next_log_seq()
    if _flush_orders not in ctx.flushers:
        ctx.flushers.append(_flush_orders)
    ctx.count("orders_placed", len(body.place))
    result = OrderBook(
        interval, schedule.gate_closure(interval), tuple(sorted(book.values(), key=_order_key))
    )
    return Handled(result.to_wire(), participant.id)


async def _flush_orders(ctx: TxContext) -> None:
    """The books the batch changed: the stored ones deleted, the new inserted (executemany)."""
    changed: dict[tuple[int, datetime], int] = ctx.cache.pop("order_envelopes", {})
    if not changed:
        return
    books: dict[tuple[int, datetime], dict[str, OrderView]] = ctx.cache["order_books"]
    conn = ctx.conn
    await conn.execute(
        delete(orders).where(
            orders.c.interval_start == bindparam("k_interval"),
            orders.c.participant_id == bindparam("k_pid"),
        ),
        [{"k_interval": interval, "k_pid": pid} for pid, interval in changed],
    )
    rows = [
        {
            "interval_start": interval,
            "participant_id": pid,
            "order_id": o.id,
            "side": o.side,
            "energy_wh": o.energy_wh,
            "price": o.price,
            "price_ticks": _ticks(o.price),
            "zone": o.zone,
            "envelope": envelope_seq,
            "placed_at": ctx.now,
        }
        for (pid, interval), envelope_seq in changed.items()
        for o in books[(pid, interval)].values()
    ]
    if rows:
        await conn.execute(insert(orders), rows)


def _order_view(row: Any) -> OrderView:
    return OrderView(row.order_id, row.side, row.energy_wh, row.price, row.zone)


def _order_key(order: OrderView) -> tuple[str, str]:
    return (order.side, order.id)


def _ticks(price: str) -> int:
    from p2p_energy_client.units import parse_price  # noqa: PLC0415

    return parse_price(price)


def _check_order_capacity(
    ctx: TxContext,
    participant: ParticipantRow,
    interval: datetime,
    book: dict[str, OrderView],
    placed_index: dict[str, int],
) -> None:
    schedule = ctx.grid.schedule
    end = interval + schedule.length
    rows: list[AssetRow] = ctx.cache["assets"].get(participant.id, [])
    # Sources and meters as they will stand then: declared now and not retired.
    live = [r for r in rows if r.overlaps(interval, end) and r.valid_until is None]
    sources = [r for r in live if r.category == "source"]
    meters = [r for r in live if r.category == "meter"]

    def first_placed(side: Side) -> str:
        ids = [oid for oid, o in book.items() if o.side == side and oid in placed_index]
        index = min((placed_index[oid] for oid in ids), default=0)
        return f"payload.place[{index}]"

    sells = sum(o.energy_wh for o in book.values() if o.side == Side.SELL)
    buys = sum(o.energy_wh for o in book.values() if o.side == Side.BUY)
    if sells:
        if not sources:
            raise ProtocolError(
                ErrorCode.NO_SOURCES,
                f"{first_placed(Side.SELL)}: selling needs a declared source valid at "
                f"{format_utc(interval)}",
                f"{first_placed(Side.SELL)}.side",
            )
        limit = schedule.max_energy_wh(sum(r.rated_power_w or 0 for r in sources))
        if sells > limit:
            field = f"{first_placed(Side.SELL)}.energy_wh"
            raise ProtocolError(
                ErrorCode.OVER_CAPACITY,
                f"{field}: sell orders total {sells} Wh; the declared sources can deliver "
                f"{limit} Wh in {schedule.interval_minutes} minutes",
                field,
            )
    if buys:
        powers = [r.rated_power_w for r in meters]
        if meters and all(p is not None for p in powers):
            limit = schedule.max_energy_wh(sum(p or 0 for p in powers))
            what = "the declared meters can take"
        else:
            limit = schedule.max_energy_wh(ctx.grid.config.household_max_power_w)
            what = "a household may buy"
        if buys > limit:
            field = f"{first_placed(Side.BUY)}.energy_wh"
            raise ProtocolError(
                ErrorCode.OVER_CAPACITY,
                f"{field}: buy orders total {buys} Wh; {what} {limit} Wh in "
                f"{schedule.interval_minutes} minutes",
                field,
            )


__all__ = ["AssetRow", "Handled", "apply", "assets_view", "prefetch", "token_hash"]
