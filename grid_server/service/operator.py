"""What the operator can do: invitations, participants, prices, zones, interval inspection.

Shared by the operator HTTP API and the ``p2p-grid`` CLI. Changes that affect
the market (prices, zones, a participant's status) are appended to the audit
log as ``operator`` entries in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update

from grid_server.domain.registry import check_role, code_hash, new_invitation_code
from grid_server.storage import audit_log
from grid_server.storage.schema import (
    fills,
    intervals,
    invitations,
    orders,
    participants,
    readings,
    utility_prices,
    zone_results,
    zones,
)
from p2p_energy_client.protocol import canonical_json, check_id
from p2p_energy_client.units import format_price, format_utc, parse_price

from .grid import GridService


class OperatorError(ValueError):
    """An operator request that cannot be carried out (``code`` as in ErrorCode)."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.field = field


@dataclass(frozen=True, slots=True)
class IssuedInvitation:
    code: str
    zone: str | None
    role: str | None
    expires_at: datetime | None

    def to_wire(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "zone": self.zone,
            "role": self.role,
            "expires_at": None if self.expires_at is None else format_utc(self.expires_at),
        }


async def _log(grid: GridService, conn: Any, ref: str, record: dict[str, Any]) -> None:
    await audit_log.append(
        conn, grid.db, grid.grid_id, [("operator", ref, canonical_json(record))], grid.clock.now()
    )


async def create_invitation(
    grid: GridService,
    *,
    zone: str | None = None,
    role: str | None = None,
    expires_at: datetime | None = None,
) -> IssuedInvitation:
    return (await create_invitations(grid, 1, zone=zone, role=role, expires_at=expires_at))[0]


async def create_invitations(
    grid: GridService,
    count: int,
    *,
    zone: str | None = None,
    role: str | None = None,
    expires_at: datetime | None = None,
) -> list[IssuedInvitation]:
    """Issue ``count`` one-time codes in one transaction (only their hashes are stored)."""
    if role is not None:
        try:
            check_role(role)
        except ValueError as exc:
            raise OperatorError("invalid_field", str(exc), "role") from exc
    if not 1 <= count <= 100_000:
        raise OperatorError("invalid_field", "count must be between 1 and 100000", "count")
    codes = [new_invitation_code() for _ in range(count)]
    now = grid.clock.now()
    async with grid.db.write() as conn:
        if (
            zone is not None
            and await conn.scalar(select(zones.c.id).where(zones.c.id == zone)) is None
        ):
            raise OperatorError("not_found", f"no zone {zone!r}", "zone")
        await conn.execute(
            insert(invitations),
            [
                {
                    "code_hash": code_hash(code),
                    "hint": code[:4],
                    "zone": zone,
                    "role": role,
                    "created_at": now,
                    "expires_at": expires_at,
                }
                for code in codes
            ],
        )
    return [IssuedInvitation(code, zone, role, expires_at) for code in codes]


async def revoke_invitation(grid: GridService, code: str) -> None:
    async with grid.db.write() as conn:
        result = await conn.execute(
            update(invitations)
            .where(invitations.c.code_hash == code_hash(code), invitations.c.revoked_at.is_(None))
            .values(revoked_at=grid.clock.now())
        )
        if result.rowcount != 1:
            raise OperatorError("not_found", "no such unrevoked invitation", "code")


async def list_invitations(grid: GridService) -> list[dict[str, Any]]:
    async with grid.db.read() as conn:
        rows = await conn.execute(select(invitations).order_by(invitations.c.created_at))
        out = []
        for r in rows:
            out.append(
                {
                    "hint": r.hint,
                    "zone": r.zone,
                    "role": r.role,
                    "created_at": format_utc(r.created_at),
                    "expires_at": None if r.expires_at is None else format_utc(r.expires_at),
                    "used": r.used_at is not None,
                    "revoked": r.revoked_at is not None,
                }
            )
        return out


async def list_participants(grid: GridService) -> list[dict[str, Any]]:
    async with grid.db.read() as conn:
        rows = await conn.execute(select(participants).order_by(participants.c.id))
        return [
            {
                "address": r.address,
                "name": r.name,
                "zone": r.zone,
                "role": r.role,
                "status": r.status,
                "joined_at": format_utc(r.joined_at),
                "last_seq": r.last_seq,
            }
            for r in rows
        ]


async def set_participant_status(grid: GridService, address: str, status: str) -> None:
    """Suspend, reinstate (``active``) or remove a participant.

    A suspended or removed participant's envelopes are refused (SUSPENDED)
    and its orders are left out of clearing; its history stays.
    """
    if status not in ("active", "suspended", "removed"):
        raise OperatorError(
            "invalid_field", "status must be active, suspended or removed", "status"
        )
    now = grid.clock.now()
    async with grid.db.write() as conn:
        current = await conn.scalar(
            select(participants.c.status).where(participants.c.address == address)
        )
        if current is None:
            raise OperatorError("not_found", f"no participant {address}", "address")
        if current == "removed" and status != "removed":
            raise OperatorError("forbidden", "a removed participant cannot come back", "status")
        await conn.execute(
            update(participants)
            .where(participants.c.address == address)
            .values(status=status, status_changed_at=now)
        )
        await _log(
            grid, conn, address, {"action": "status", "participant": address, "status": status}
        )


async def set_price(grid: GridService, effective_from: datetime, retail: str, feed_in: str) -> None:
    """Add (or replace, if still in the future) the utility prices from an interval on."""
    grid.schedule.check_interval(effective_from, "effective_from")
    try:
        retail_ticks, feed_in_ticks = parse_price(retail), parse_price(feed_in)
    except ValueError as exc:
        raise OperatorError("invalid_field", str(exc), "retail") from exc
    if feed_in_ticks < 0 or retail_ticks < feed_in_ticks:
        raise OperatorError("invalid_field", "prices need 0 <= feed_in <= retail", "feed_in")
    now = grid.clock.now()
    if effective_from <= grid.schedule.last_gate_closed(now):
        raise OperatorError(
            "gate_closed",
            "prices can only change for intervals whose gate is open",
            "effective_from",
        )
    async with grid.db.write() as conn:
        exists = await conn.scalar(
            select(utility_prices.c.effective_from).where(
                utility_prices.c.effective_from == effective_from
            )
        )
        values = {
            "retail": retail,
            "feed_in": feed_in,
            "retail_ticks": retail_ticks,
            "feed_in_ticks": feed_in_ticks,
            "created_at": now,
        }
        if exists is None:
            await conn.execute(
                insert(utility_prices).values(effective_from=effective_from, **values)
            )
        else:
            await conn.execute(
                update(utility_prices)
                .where(utility_prices.c.effective_from == effective_from)
                .values(**values)
            )
        await _log(
            grid,
            conn,
            format_utc(effective_from),
            {
                "action": "price",
                "effective_from": format_utc(effective_from),
                "retail": format_price(retail_ticks),
                "feed_in": format_price(feed_in_ticks),
            },
        )


async def upsert_zone(
    grid: GridService,
    zone_id: str,
    *,
    parent: str | None,
    fee: str = "0",
    capacity_up_wh: int | None = None,
    capacity_down_wh: int | None = None,
    name: str | None = None,
) -> None:
    """Add a zone or change one's fee and capacities (from the next clearing on)."""
    try:
        check_id(zone_id, "id")
        fee_ticks = parse_price(fee)
    except ValueError as exc:
        raise OperatorError("invalid_field", str(exc), "fee") from exc
    if fee_ticks < 0:
        raise OperatorError("invalid_field", "fee must not be negative", "fee")
    for value, field in (
        (capacity_up_wh, "capacity_up_wh"),
        (capacity_down_wh, "capacity_down_wh"),
    ):
        if value is not None and value < 0:
            raise OperatorError("invalid_field", "capacity must not be negative", field)
    now = grid.clock.now()
    async with grid.db.write() as conn:
        existing = (await conn.execute(select(zones).where(zones.c.id == zone_id))).one_or_none()
        if parent is None and (existing is None or existing.parent is not None):
            raise OperatorError("invalid_field", "only the root zone has no parent", "parent")
        if parent is not None:
            if await conn.scalar(select(zones.c.id).where(zones.c.id == parent)) is None:
                raise OperatorError("not_found", f"no zone {parent!r}", "parent")
            # Walking up from the parent must not reach this zone (no cycles).
            cursor: str | None = parent
            while cursor is not None:
                if cursor == zone_id:
                    raise OperatorError("invalid_field", "that parent would make a cycle", "parent")
                cursor = await conn.scalar(select(zones.c.parent).where(zones.c.id == cursor))
        values = {
            "name": name,
            "parent": parent,
            "fee": fee,
            "fee_ticks": fee_ticks,
            "capacity_up_wh": capacity_up_wh,
            "capacity_down_wh": capacity_down_wh,
            "updated_at": now,
        }
        if existing is None:
            await conn.execute(insert(zones).values(id=zone_id, **values))
        else:
            await conn.execute(update(zones).where(zones.c.id == zone_id).values(**values))
        await _log(
            grid,
            conn,
            zone_id,
            {
                "action": "zone",
                "id": zone_id,
                **{k: v for k, v in values.items() if k != "updated_at"},
            },
        )


async def list_intervals(
    grid: GridService, since: datetime, until: datetime
) -> list[dict[str, Any]]:
    async with grid.db.read() as conn:
        rows = await conn.execute(
            select(intervals)
            .where(intervals.c.start >= since, intervals.c.start < until)
            .order_by(intervals.c.start)
            .limit(5000)
        )
        return [
            {
                "interval": format_utc(r.start),
                "state": r.state,
                "orders": r.orders,
                "welfare": r.welfare,
                "cleared_at": None if r.cleared_at is None else format_utc(r.cleared_at),
                "settled_at": None if r.settled_at is None else format_utc(r.settled_at),
                "clearing_ms": r.clearing_ms,
                "settlement_ms": r.settlement_ms,
            }
            for r in rows
        ]


async def interval_detail(grid: GridService, t: datetime) -> dict[str, Any]:
    async with grid.db.read() as conn:
        row = (await conn.execute(select(intervals).where(intervals.c.start == t))).one_or_none()
        n_orders = await conn.scalar(
            select(func.count()).select_from(orders).where(orders.c.interval_start == t)
        )
        n_readings = await conn.scalar(
            select(func.count()).select_from(readings).where(readings.c.interval_start == t)
        )
        filled = await conn.scalar(
            select(func.coalesce(func.sum(fills.c.filled_wh), 0)).where(fills.c.interval_start == t)
        )
        zone_rows = await conn.execute(
            select(zone_results)
            .where(zone_results.c.interval_start == t)
            .order_by(zone_results.c.zone)
        )
        return {
            "interval": format_utc(t),
            "state": "open" if row is None else row.state,
            "gate_closure": format_utc(grid.schedule.gate_closure(t)),
            "window_close": format_utc(grid.schedule.window_close(t)),
            "orders": int(n_orders or 0),
            "readings": int(n_readings or 0),
            "filled_wh": int(filled or 0),
            "welfare": None if row is None else row.welfare,
            "zones": [
                {
                    "zone": z.zone,
                    "price": format_price(z.price_ticks),
                    "bought_wh": z.bought_wh,
                    "sold_wh": z.sold_wh,
                    "utility_buy_wh": z.utility_buy_wh,
                    "utility_sell_wh": z.utility_sell_wh,
                    "flow_to_parent_wh": z.flow_to_parent_wh,
                }
                for z in zone_rows
            ],
        }
