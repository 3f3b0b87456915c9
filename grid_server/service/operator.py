"""What the operator can do: invitations, participants, prices, zones, interval inspection.

Shared by the operator HTTP API and the ``p2p-grid`` CLI. Changes that affect
the market (prices, zones, a participant's status) are appended to the audit
log as ``operator`` entries in the same transaction. Seeding the database from
the config file (:meth:`Operator.seed`) adds zones and prices the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from grid_server.config import GridConfig, PriceConfig, ZoneConfig
from grid_server.domain.clock import Clock
from grid_server.domain.registry import check_role, code_hash, new_invitation_code
from grid_server.domain.schedule import Schedule
from grid_server.storage import audit_log
from grid_server.storage import operator_queries as oq
from grid_server.storage.db import Database, advisory_key
from p2p_energy_client.protocol import canonical_json, check_id
from p2p_energy_client.units import format_price, format_utc, parse_price

from .queries import member_summary

# Invitations issued at once, at most (one request, one transaction).
MAX_INVITATIONS = 100_000
# Intervals listed at once, at most.
MAX_INTERVALS = 5000


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


def zone_values(
    *,
    name: str | None,
    parent: str | None,
    fee: str,
    capacity_up_wh: int | None,
    capacity_down_wh: int | None,
) -> dict[str, Any]:
    """A zone's stored fields (and, but for ``updated_at``, its audit record)."""
    return {
        "name": name,
        "parent": parent,
        "fee": fee,
        "fee_ticks": parse_price(fee),
        "capacity_up_wh": capacity_up_wh,
        "capacity_down_wh": capacity_down_wh,
    }


def price_record(effective_from: datetime, retail_ticks: int, feed_in_ticks: int) -> dict[str, Any]:
    """The audit record of a utility price step."""
    return {
        "action": "price",
        "effective_from": format_utc(effective_from),
        "retail": format_price(retail_ticks),
        "feed_in": format_price(feed_in_ticks),
    }


@dataclass(frozen=True, kw_only=True, eq=False)
class Operator:
    """The operator's tools on one grid's database."""

    grid_id: str
    db: Database
    clock: Clock
    schedule: Schedule
    # Called with (address, status) after a status change committed: the grid
    # forgets a suspended member at intake and wakes the live streams, which close.
    on_status: Callable[[str, str], None] | None = None

    async def _log(
        self,
        conn: AsyncConnection,
        items: list[tuple[str, dict[str, Any]]],
        now: datetime | None = None,
    ) -> None:
        """Append ``(ref, record)`` items as ``operator`` entries to the audit log."""
        await audit_log.append(
            conn,
            self.db,
            self.grid_id,
            [("operator", ref, canonical_json(record)) for ref, record in items],
            now or self.clock.now(),
        )

    # --- invitations --------------------------------------------------------------

    async def create_invitation(
        self,
        *,
        zone: str | None = None,
        role: str | None = None,
        expires_at: datetime | None = None,
    ) -> IssuedInvitation:
        issued = await self.create_invitations(1, zone=zone, role=role, expires_at=expires_at)
        return issued[0]

    async def create_invitations(
        self,
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
        if not 1 <= count <= MAX_INVITATIONS:
            raise OperatorError("invalid_field", "count must be between 1 and 100000", "count")
        codes = [new_invitation_code() for _ in range(count)]
        now = self.clock.now()
        async with self.db.write() as conn:
            if zone is not None and not await oq.zone_exists(conn, zone):
                raise OperatorError("not_found", f"no zone {zone!r}", "zone")
            await oq.insert_invitations(
                conn,
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

    async def revoke_invitation(self, code: str) -> None:
        async with self.db.write() as conn:
            if not await oq.revoke_invitation(conn, code_hash(code), self.clock.now()):
                raise OperatorError("not_found", "no such unrevoked invitation", "code")

    async def list_invitations(self) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            rows = await oq.all_invitations(conn)
        return [
            {
                "hint": r.hint,
                "zone": r.zone,
                "role": r.role,
                "created_at": format_utc(r.created_at),
                "expires_at": None if r.expires_at is None else format_utc(r.expires_at),
                "used": r.used_at is not None,
                "revoked": r.revoked_at is not None,
            }
            for r in rows
        ]

    # --- participants -------------------------------------------------------------

    async def list_participants(self) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            rows = await oq.all_participants(conn)
        return [{**member_summary(r), "last_seq": r.last_seq} for r in rows]

    async def set_participant_status(self, address: str, status: str) -> None:
        """Suspend, reinstate (``active``) or remove a participant.

        A suspended or removed participant's envelopes are refused (SUSPENDED)
        and its orders are left out of clearing; its history stays.
        """
        if status not in ("active", "suspended", "removed"):
            raise OperatorError(
                "invalid_field", "status must be active, suspended or removed", "status"
            )
        now = self.clock.now()
        async with self.db.write() as conn:
            current = await oq.participant_status(conn, address)
            if current is None:
                raise OperatorError("not_found", f"no participant {address}", "address")
            if current == "removed" and status != "removed":
                raise OperatorError("forbidden", "a removed participant cannot come back", "status")
            await oq.set_participant_status(conn, address, status, now)
            record = {"action": "status", "participant": address, "status": status}
            await self._log(conn, [(address, record)])
        if self.on_status is not None:
            self.on_status(address, status)

    # --- prices and zones ---------------------------------------------------------

    async def set_price(self, effective_from: datetime, retail: str, feed_in: str) -> None:
        """Add (or replace, if still in the future) the utility prices from an interval on."""
        self.schedule.check_interval(effective_from, "effective_from")
        try:
            retail_ticks, feed_in_ticks = parse_price(retail), parse_price(feed_in)
        except ValueError as exc:
            raise OperatorError("invalid_field", str(exc), "retail") from exc
        if feed_in_ticks < 0 or retail_ticks < feed_in_ticks:
            raise OperatorError("invalid_field", "prices need 0 <= feed_in <= retail", "feed_in")
        now = self.clock.now()
        if effective_from <= self.schedule.last_gate_closed(now):
            raise OperatorError(
                "gate_closed",
                "prices can only change for intervals whose gate is open",
                "effective_from",
            )
        values = _price_values(retail, feed_in, now)
        async with self.db.write() as conn:
            await oq.put_price(conn, effective_from, values)
            record = price_record(effective_from, retail_ticks, feed_in_ticks)
            await self._log(conn, [(format_utc(effective_from), record)])

    async def upsert_zone(
        self,
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
            values = zone_values(
                name=name,
                parent=parent,
                fee=fee,
                capacity_up_wh=capacity_up_wh,
                capacity_down_wh=capacity_down_wh,
            )
        except ValueError as exc:
            raise OperatorError("invalid_field", str(exc), "fee") from exc
        _check_zone_values(values)
        async with self.db.write() as conn:
            existing = await oq.zone(conn, zone_id)
            await _check_parent(
                conn, zone_id, parent, existing is None or existing.parent is not None
            )
            stored = {**values, "updated_at": self.clock.now()}
            if existing is None:
                await oq.insert_zone(conn, zone_id, stored)
            else:
                await oq.update_zone(conn, zone_id, stored)
            await self._log(conn, [(zone_id, {"action": "zone", "id": zone_id, **values})])

    async def seed(self, config: GridConfig) -> None:
        """Start the grid's cycle on first start; add the config file's zones and prices that
        the database does not hold yet, logged like the operator's own changes."""
        now = self.clock.now()
        async with self.db.write() as conn:
            await self.db.advisory_xact_lock(conn, advisory_key(self.grid_id, "seed"), wait=True)
            await oq.ensure_grid_state(conn, self.grid_id, self.schedule.start_of(now), now)
            logged = await _seed_zones(conn, config.zones, now)
            logged += await _seed_prices(conn, config.prices, now)
            await audit_log.ensure_head(conn, self.grid_id)
            if logged:
                await self._log(conn, logged, now)

    # --- intervals ----------------------------------------------------------------

    async def list_intervals(self, since: datetime, until: datetime) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            rows = await oq.intervals_between(conn, since, until, MAX_INTERVALS)
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

    async def interval_detail(self, t: datetime) -> dict[str, Any]:
        async with self.db.read() as conn:
            row, n_orders, n_readings, filled = await oq.interval_counts(conn, t)
            zone_rows = await oq.interval_zones(conn, t)
        return {
            "interval": format_utc(t),
            "state": "open" if row is None else row.state,
            "gate_closure": format_utc(self.schedule.gate_closure(t)),
            "window_close": format_utc(self.schedule.window_close(t)),
            "orders": n_orders,
            "readings": n_readings,
            "filled_wh": filled,
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


def _price_values(retail: str, feed_in: str, now: datetime) -> dict[str, Any]:
    return {
        "retail": retail,
        "feed_in": feed_in,
        "retail_ticks": parse_price(retail),
        "feed_in_ticks": parse_price(feed_in),
        "created_at": now,
    }


def _check_zone_values(values: dict[str, Any]) -> None:
    if values["fee_ticks"] < 0:
        raise OperatorError("invalid_field", "fee must not be negative", "fee")
    for field in ("capacity_up_wh", "capacity_down_wh"):
        if values[field] is not None and values[field] < 0:
            raise OperatorError("invalid_field", "capacity must not be negative", field)


async def _check_parent(
    conn: AsyncConnection, zone_id: str, parent: str | None, needs_parent: bool
) -> None:
    """Only the root has no parent; the parent exists; the tree gets no cycle."""
    if parent is None and needs_parent:
        raise OperatorError("invalid_field", "only the root zone has no parent", "parent")
    if parent is None:
        return
    if not await oq.zone_exists(conn, parent):
        raise OperatorError("not_found", f"no zone {parent!r}", "parent")
    # Walking up from the parent must not reach this zone (no cycles).
    cursor: str | None = parent
    while cursor is not None:
        if cursor == zone_id:
            raise OperatorError("invalid_field", "that parent would make a cycle", "parent")
        cursor = await oq.zone_parent(conn, cursor)


async def _seed_zones(
    conn: AsyncConnection, configured: tuple[ZoneConfig, ...], now: datetime
) -> list[tuple[str, dict[str, Any]]]:
    """Add the configured zones the database lacks, parents before children."""
    logged: list[tuple[str, dict[str, Any]]] = []
    known = await oq.zone_ids(conn)
    pending = [z for z in configured if z.id not in known]
    while pending:
        ready = [z for z in pending if z.parent is None or z.parent in known]
        if not ready:
            raise ValueError("zones in the config file do not form a tree")
        for zone in ready:
            values = zone_values(
                name=zone.name,
                parent=zone.parent,
                fee=zone.fee,
                capacity_up_wh=zone.capacity_up_wh,
                capacity_down_wh=zone.capacity_down_wh,
            )
            await oq.insert_zone(conn, zone.id, {**values, "updated_at": now})
            logged.append(
                (zone.id, {"action": "zone", "id": zone.id, **values, "source": "config"})
            )
            known.add(zone.id)
        pending = [z for z in pending if z not in ready]
    return logged


async def _seed_prices(
    conn: AsyncConnection, configured: tuple[PriceConfig, ...], now: datetime
) -> list[tuple[str, dict[str, Any]]]:
    """Add the configured price steps the database lacks."""
    logged: list[tuple[str, dict[str, Any]]] = []
    known = await oq.price_dates(conn)
    for price in configured:
        if price.effective_from in known:
            continue
        values = _price_values(price.retail, price.feed_in, now)
        await oq.insert_price(conn, price.effective_from, values)
        record = price_record(price.effective_from, values["retail_ticks"], values["feed_in_ticks"])
        logged.append((format_utc(price.effective_from), {**record, "source": "config"}))
    return logged
