"""Audit routes: a participant's receipts and the grid's public list of interval roots.

* ``GET /api/v1/receipts/{log_seq}`` and ``GET /api/v1/receipts?seq=N`` (the
  participant's own envelope by its payload sequence number) or
  ``?signature=<base64>`` (by its signature, the envelope's unique id):
  the entry's header, its Merkle path to the interval root, the root and
  the root's anchor. ``state`` is ``pending`` until the interval is closed.
* ``GET /api/v1/audit/roots?since&until`` (intervals) or ``?from_seq&limit``:
  public, so households can keep their own copies.

Shapes: :class:`p2p_energy_client.receipts.Receipt` and ``AuditRoot``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from grid_server.service.audit import MAX_ROOTS
from p2p_energy_client.protocol import ErrorCode, ProtocolError

from .common import JSON, READ_ERRORS, error_responses, json_response, path_time
from .deps import AuditDep, current_participant

router = APIRouter(prefix="/api/v1")

_HEX32 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_ANCHOR_SCHEMA: dict[str, Any] = {
    "type": ["object", "null"],
    "description": "Where the root's batch is anchored (IOTA Notarization), null if not yet",
    "properties": {
        "ledger": {"type": "string"},
        "network": {"type": ["string", "null"]},
        "package": {"type": "string"},
        "object_id": {"type": "string"},
        "digest": {"type": "string", "description": "transaction digest (base58)"},
        "object_version": {"type": "integer"},
        "state_version": {"type": "integer"},
        "first_root_seq": {"type": "integer"},
        "last_root_seq": {"type": "integer"},
        "batch_root": _HEX32,
        "payload": {"type": "string", "description": "the notarized bytes, hex"},
        "batch_index": {"type": "integer"},
        "batch_size": {"type": "integer"},
        "batch_path": {"type": "array", "items": _HEX32},
    },
}
ROOT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["seq", "interval_from", "interval_to", "first_seq", "last_seq", "root"],
    "properties": {
        "seq": {"type": "integer", "description": "the root's own log entry"},
        "interval_from": {"type": "string", "format": "date-time"},
        "interval_to": {"type": "string", "format": "date-time"},
        "first_seq": {"type": "integer"},
        "last_seq": {"type": "integer", "description": "first_seq - 1 for an empty range"},
        "root": _HEX32,
        "prev_hash": _HEX32,
        "entry_hash": _HEX32,
        "anchor": _ANCHOR_SCHEMA,
    },
}
RECEIPT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["grid", "state", "entry", "root", "proof"],
    "properties": {
        "grid": {"type": "string"},
        "state": {"type": "string", "enum": ["rooted", "pending"]},
        "entry": {
            "type": "object",
            "properties": {
                "seq": {"type": "integer"},
                "kind": {"type": "string"},
                "ref": {"type": "string"},
                "prev_hash": _HEX32,
                "body_hash": _HEX32,
                "hash": _HEX32,
                "created_at": {"type": "string", "format": "date-time"},
            },
        },
        "root": {"oneOf": [ROOT_SCHEMA, {"type": "null"}]},
        "proof": {
            "type": ["object", "null"],
            "properties": {
                "leaf_index": {"type": "integer"},
                "tree_size": {"type": "integer"},
                "path": {"type": "array", "items": _HEX32},
            },
        },
    },
}
_RECEIPT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The receipt", "content": {JSON: {"schema": RECEIPT_SCHEMA}}},
    **error_responses(*READ_ERRORS, ErrorCode.NOT_FOUND, ErrorCode.FORBIDDEN),
}
MAX_SEQ = 2**63 - 1


@router.get(
    "/receipts/{log_seq}",
    tags=["participant", "audit"],
    summary="Receipt of a log entry: header, Merkle path to the interval root, root, anchor",
    responses=_RECEIPT_RESPONSES,
)
async def receipt_by_log_seq(request: Request, log_seq: int, trail: AuditDep) -> Response:
    # Authenticated here, after FastAPI validated log_seq (as this route always answered).
    _, address = await current_participant(request)
    if not 1 <= log_seq <= MAX_SEQ:
        raise ProtocolError(ErrorCode.INVALID_FIELD, "log_seq: must be positive", "log_seq")
    found = await trail.receipt(address, log_seq=log_seq)
    return json_response(found.to_wire())


@router.get(
    "/receipts",
    tags=["participant", "audit"],
    summary="Receipt of one of the participant's envelopes, by its seq or signature",
    responses=_RECEIPT_RESPONSES,
)
async def receipt_of_envelope(
    request: Request,
    trail: AuditDep,
    seq: Annotated[int | None, Query(ge=1, le=MAX_SEQ)] = None,
    signature: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    # Authenticated here, after FastAPI validated the query (as this route always answered).
    _, address = await current_participant(request)
    if seq is not None:
        found = await trail.receipt(address, seq=seq)
    elif signature is not None:
        try:
            raw = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ProtocolError(
                ErrorCode.INVALID_FIELD, "signature: must be base64", "signature"
            ) from exc
        found = await trail.receipt(address, signature=raw)
    else:
        raise ProtocolError(ErrorCode.INVALID_FIELD, "seq: give seq or signature", "seq")
    return json_response(found.to_wire())


@router.get(
    "/audit/roots",
    tags=["public", "audit"],
    summary="Interval Merkle roots (and their anchors): by interval or from a log seq",
    responses={
        200: {
            "description": "The roots, oldest first",
            "content": {
                JSON: {
                    "schema": {
                        "type": "object",
                        "properties": {"roots": {"type": "array", "items": ROOT_SCHEMA}},
                    }
                }
            },
        },
        **error_responses(ErrorCode.INVALID_FIELD),
    },
)
async def list_roots(
    trail: AuditDep,
    since: Annotated[str | None, Query(max_length=40)] = None,
    until: Annotated[str | None, Query(max_length=40)] = None,
    from_seq: Annotated[int | None, Query(ge=1, le=MAX_SEQ)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_ROOTS)] = 1000,
) -> Response:
    found = await trail.roots(
        since=None if since is None else path_time(since, "since"),
        until=None if until is None else path_time(until, "until"),
        from_seq=from_seq,
        limit=limit,
    )
    return json_response({"roots": [r.to_wire() for r in found]})
