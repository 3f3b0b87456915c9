"""The queries of anchoring audit roots on IOTA (``grid_server.service.audit_anchor``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from grid_server.domain.audit_roots import Batch
from p2p_energy_client.ledger.iota.notarization import Anchored

from .schema import audit_anchor_attempts, audit_anchors


async def pending_attempt(conn: AsyncConnection, grid: str, anchored_until: int) -> Row[Any] | None:
    """The latest stored attempt that anchors roots after ``anchored_until`` (if any)."""
    return (
        await conn.execute(
            select(audit_anchor_attempts)
            .where(
                audit_anchor_attempts.c.grid == grid,
                audit_anchor_attempts.c.last_root_seq > anchored_until,
            )
            .order_by(audit_anchor_attempts.c.id.desc())
            .limit(1)
        )
    ).one_or_none()


async def insert_attempt(
    conn: AsyncConnection,
    *,
    grid: str,
    first_root_seq: int,
    last_root_seq: int,
    digest: str,
    signed: str,
    now: datetime,
) -> None:
    """The signed transaction of an attempt, stored before it is submitted."""
    await conn.execute(
        insert(audit_anchor_attempts).values(
            grid=grid,
            first_root_seq=first_root_seq,
            last_root_seq=last_root_seq,
            digest=digest,
            signed=signed,
            created_at=now,
        )
    )


async def anchor_log_seq(conn: AsyncConnection, digest: str) -> int | None:
    """The log entry of the anchor recorded for the transaction ``digest`` (if recorded)."""
    known = await conn.scalar(
        select(audit_anchors.c.log_seq).where(audit_anchors.c.digest == digest)
    )
    return None if known is None else int(known)


async def insert_anchor(
    conn: AsyncConnection,
    *,
    grid: str,
    batch: Batch,
    network: str | None,
    package: str,
    anchored: Anchored,
    log_seq: int,
    now: datetime,
) -> None:
    await conn.execute(
        insert(audit_anchors).values(
            grid=grid,
            last_root_seq=batch.last_root_seq,
            first_root_seq=batch.first_root_seq,
            batch_root=batch.batch_root,
            payload=batch.payload,
            ledger="iota",
            network=network,
            package=package,
            object_id=anchored.object_id,
            object_version=anchored.object_version,
            state_version=anchored.state_version,
            digest=anchored.digest,
            log_seq=log_seq,
            created_at=now,
        )
    )
