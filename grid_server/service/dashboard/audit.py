"""The audit trail: the chain head, the latest log entries, interval roots and anchoring,
and the last ``p2p-grid audit verify``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from grid_server.storage import audit_store
from p2p_energy_client.protocol import LedgerKind
from p2p_energy_client.units import format_utc

from .common import RECENT
from .source import Source

LATEST_ENTRIES = 20


@dataclass(frozen=True, slots=True)
class AuditRows:
    head: Any  # the ``chain_heads`` row, None before the first entry
    entries: Sequence[Any]
    roots_total: int
    roots: Sequence[Any]
    anchors: Sequence[Any]  # newest first
    anchor_count: int
    waiting: int  # roots no anchor covers yet
    attempts: int  # anchoring transactions sent for them, not confirmed yet
    verification: Any  # the latest ``audit_verifications`` row, or None


async def fetch(conn: AsyncConnection, grid: str) -> AuditRows:
    anchored = await audit_store.anchored_to(conn, grid) or 0
    return AuditRows(
        await audit_store.chain_head(conn, grid),
        await audit_store.latest_entries(conn, grid, LATEST_ENTRIES),
        await audit_store.root_count(conn, grid),
        await audit_store.latest_roots(conn, grid, RECENT),
        await audit_store.latest_anchors(conn, grid, RECENT),
        await audit_store.anchor_count(conn, grid),
        await audit_store.root_count(conn, grid, after=anchored),
        await audit_store.attempt_count(conn, grid, after=anchored),
        await audit_store.latest_verification(conn, grid),
    )


async def audit_view(source: Source) -> dict[str, Any]:
    """The chain head, the latest log entries, interval roots and their anchoring."""
    async with source.db.read() as conn:
        rows = await fetch(conn, source.grid_id)
    return build(source, rows)


# --- builders ----------------------------------------------------------------------------


def build(source: Source, rows: AuditRows) -> dict[str, Any]:
    audit = source.config.audit
    head = rows.head

    def anchor_of(seq: int) -> dict[str, Any] | None:
        return anchor_covering(rows.anchors, seq)

    return {
        "grid": source.grid_id,
        "head": None if head is None else {"seq": int(head.seq), "hash": bytes(head.hash).hex()},
        "entries": [entry_view(e) for e in rows.entries],
        "roots_total": rows.roots_total,
        "roots": [root_view(r, anchor_of(int(r.seq))) for r in rows.roots],
        "anchoring": {
            "enabled": source.config.ledger.kind == LedgerKind.IOTA and audit.anchor,
            "every": audit.anchor_every,
            "anchors": rows.anchor_count,
            "waiting_roots": rows.waiting,
            "pending_attempts": rows.attempts,
            "last": None if not rows.anchors else anchor_of(int(rows.anchors[0].last_root_seq)),
        },
        "verification": verification_view(rows.verification),
    }


def entry_view(e: Any) -> dict[str, Any]:
    return {
        "seq": int(e.seq),
        "kind": e.kind,
        "ref": e.ref,
        "hash": bytes(e.hash).hex(),
        "created_at": format_utc(e.created_at),
    }


def root_view(r: Any, anchor: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "seq": int(r.seq),
        "interval_from": format_utc(r.interval_from),
        "interval_to": format_utc(r.interval_to),
        "first_seq": int(r.first_seq),
        "last_seq": int(r.last_seq),
        "entries": max(int(r.last_seq) - int(r.first_seq) + 1, 0),
        "root": bytes(r.root).hex(),
        "anchor": anchor,
    }


def anchor_covering(anchors: Sequence[Any], seq: int) -> dict[str, Any] | None:
    """The anchor (among those shown) whose batch holds root ``seq``."""
    for a in anchors:
        if int(a.first_root_seq) <= seq <= int(a.last_root_seq):
            return {
                "digest": a.digest,
                "ledger": a.ledger,
                "network": a.network,
                "object_id": a.object_id,
                "state_version": int(a.state_version),
                "created_at": format_utc(a.created_at),
            }
    return None


def verification_view(check: Any) -> dict[str, Any] | None:
    if check is None:
        return None
    return {
        "ok": bool(check.ok),
        "at": format_utc(check.verified_at),
        "first_seq": int(check.first_seq),
        "last_seq": int(check.last_seq),
        "entries": int(check.entries),
        "tables_compared": bool(check.state_checked),
        "problem": check.problem,
        "seconds": round(float(check.seconds), 2),
    }


__all__ = ["AuditRows", "audit_view", "build", "fetch"]
