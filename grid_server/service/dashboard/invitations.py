"""Invitations: the latest issued and their state, and newly issued ones as link and QR code.

Codes are stored only as hashes, so the list shows each invitation's hint
(its first four characters), never a code; a new invitation's link and QR
code (:mod:`grid_server.service.invitations`) are shown once, when it is
issued, as the CLI prints them. Without ``[grid] public_url`` there is no
link, and the view says how to set it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from grid_server.service.invitations import invitation_link, qr_svg
from grid_server.service.operator import IssuedInvitation
from grid_server.storage import grid_setup
from grid_server.storage import operator_queries as oq
from p2p_energy_client.units import format_utc

from .common import zone_view
from .source import Source

LATEST: Final = 200
# Issued at once from the page, at most (the CLI and the operator API issue more).
MAX_ISSUE: Final = 20


def state_of(row: Any, now: datetime) -> str:
    """``used``, ``revoked``, ``expired`` or ``open`` (it can still join a household)."""
    if row.used_at is not None:
        return "used"
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at is not None and row.expires_at <= now:
        return "expired"
    return "open"


async def invitations_view(source: Source) -> dict[str, Any]:
    """The latest invitations, the zones one can join, and the grid's public URL."""
    now = source.clock.now()
    async with source.db.read() as conn:
        rows = await oq.latest_invitations(conn, LATEST)
        total = await oq.invitation_count(conn)
        zones = [zone_view(z) for z in await grid_setup.zone_rows(conn)]
    return {
        "public_url": source.config.public_url,
        "join_zone": source.config.join_zone,
        "zones": zones,
        "max_issue": MAX_ISSUE,
        "total": total,
        "invitations": [
            {
                "hint": r.hint,
                "zone": r.zone,
                "role": r.role,
                "created_at": format_utc(r.created_at),
                "expires_at": None if r.expires_at is None else format_utc(r.expires_at),
                "state": state_of(r, now),
            }
            for r in rows
        ],
    }


def issued_view(source: Source, issued: list[IssuedInvitation]) -> dict[str, Any]:
    """New invitations as the page shows them once: the code, its link and the link's QR."""
    out = []
    for invitation in issued:
        link = invitation_link(source.config, invitation.code)
        out.append(
            {
                **invitation.to_wire(),
                "link": link,
                "qr_svg": None
                if link is None
                else qr_svg(link, f"Invitation to {source.config.name}"),
            }
        )
    return {"public_url": source.config.public_url, "invitations": out}


__all__ = ["MAX_ISSUE", "invitations_view", "issued_view", "state_of"]
