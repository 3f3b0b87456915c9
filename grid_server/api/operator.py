"""The operator API (bearer operator token): invitations, participants, prices, zones, intervals."""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from grid_server.service.operator import OperatorError
from p2p_energy_client.protocol import ErrorCode, ProtocolError
from p2p_energy_client.units import parse_utc

from .common import error_responses, json_response, path_time, query_time
from .deps import ClockDep, GridDep, OperatorAuth, OperatorsDep

router = APIRouter(
    prefix="/api/v1/operator",
    tags=["operator"],
    dependencies=[OperatorAuth],
    responses=error_responses(
        ErrorCode.UNAUTHENTICATED,
        ErrorCode.INVALID_FIELD,
        ErrorCode.NOT_FOUND,
        ErrorCode.FORBIDDEN,
        ErrorCode.RATE_LIMITED,  # an address that guessed the token too often
    ),
)


def _translate(exc: OperatorError) -> ProtocolError:
    try:
        code = ErrorCode(exc.code)
    except ValueError:
        code = ErrorCode.INVALID_FIELD
    return ProtocolError(code, str(exc), exc.field)


class InvitationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    zone: str | None = None
    role: str | None = None
    expires_in_seconds: int | None = Field(default=7 * 86_400, gt=0)
    count: int = Field(default=1, ge=1, le=100_000)


class StatusRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: str


class PriceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    effective_from: str
    retail: str
    feed_in: str


class ZoneRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    parent: str | None = None
    name: str | None = None
    fee: str = "0"
    capacity_up_wh: int | None = None
    capacity_down_wh: int | None = None


@router.post("/invitations", status_code=201, summary="Issue a one-time invitation code")
async def create_invitation(
    body: InvitationRequest, operators: OperatorsDep, clock: ClockDep
) -> Response:
    expires: datetime | None = None
    if body.expires_in_seconds is not None:
        expires = clock.now() + timedelta(seconds=body.expires_in_seconds)
    try:
        issued = await operators.create_invitations(
            body.count, zone=body.zone, role=body.role, expires_at=expires
        )
    except OperatorError as exc:
        raise _translate(exc) from exc
    if body.count == 1:
        return json_response(issued[0].to_wire(), 201)
    return json_response({"invitations": [i.to_wire() for i in issued]}, 201)


@router.get("/invitations", summary="Invitations (codes are not stored; only a hint)")
async def list_invitations(operators: OperatorsDep) -> Response:
    return json_response({"invitations": await operators.list_invitations()})


@router.delete("/invitations/{code}", summary="Revoke an invitation")
async def revoke_invitation(code: str, operators: OperatorsDep) -> Response:
    try:
        await operators.revoke_invitation(code)
    except OperatorError as exc:
        raise _translate(exc) from exc
    return json_response({"revoked": True})


@router.get("/participants", summary="All participants")
async def list_participants(operators: OperatorsDep) -> Response:
    return json_response({"participants": await operators.list_participants()})


@router.post("/participants/{address}/status", summary="Suspend, reinstate or remove")
async def set_status(address: str, body: StatusRequest, operators: OperatorsDep) -> Response:
    try:
        await operators.set_participant_status(address, body.status)
    except OperatorError as exc:
        raise _translate(exc) from exc
    return json_response({"address": address, "status": body.status})


@router.post("/prices", summary="Utility prices from an interval on")
async def set_price(body: PriceRequest, operators: OperatorsDep) -> Response:
    try:
        effective = parse_utc(body.effective_from)
    except ValueError as exc:
        raise ProtocolError(
            ErrorCode.INVALID_FIELD, f"effective_from: {exc}", "effective_from"
        ) from exc
    try:
        await operators.set_price(effective, body.retail, body.feed_in)
    except OperatorError as exc:
        raise _translate(exc) from exc
    return json_response(
        {"effective_from": body.effective_from, "retail": body.retail, "feed_in": body.feed_in}
    )


@router.put("/zones/{zone_id}", summary="Add a zone or change its fee and capacities")
async def put_zone(zone_id: str, body: ZoneRequest, operators: OperatorsDep) -> Response:
    try:
        await operators.upsert_zone(
            zone_id,
            parent=body.parent,
            fee=body.fee,
            capacity_up_wh=body.capacity_up_wh,
            capacity_down_wh=body.capacity_down_wh,
            name=body.name,
        )
    except OperatorError as exc:
        raise _translate(exc) from exc
    return json_response({"id": zone_id, **body.model_dump()})


@router.get("/intervals", summary="Intervals in [since, until) with their state")
async def list_intervals(request: Request, operators: OperatorsDep, clock: ClockDep) -> Response:
    now = clock.now()
    since = query_time(request, "since", now - timedelta(days=1))
    until = query_time(request, "until", now + timedelta(days=1))
    return json_response({"intervals": await operators.list_intervals(since, until)})


@router.get("/intervals/{interval}", summary="One interval: state, counts, zone results")
async def interval_detail(interval: str, grid: GridDep) -> Response:
    t = path_time(interval, "interval")
    grid.schedule.check_interval(t, "interval")
    return json_response(await grid.operator.interval_detail(t))


@router.post("/cycle/run", summary="Run the interval cycle now (clear/settle what is due)")
async def run_cycle(grid: GridDep) -> Response:
    await grid.cycle.run_due()
    return json_response({"ran": True, "now": grid.clock.now().isoformat()})
