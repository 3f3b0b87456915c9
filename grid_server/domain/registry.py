"""Membership rules: invitation codes, their states, roles and declared assets.

Invitation codes carry 128 bits of randomness (base32, grouped for reading
aloud); only their SHA-256 is stored. A code is refused with a distinct error
for each reason: unknown, used, revoked, expired (checked in that order).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from p2p_energy_client.invitation import normalise_code
from p2p_energy_client.protocol import (
    ROLES,
    Assets,
    ErrorCode,
    MeterDecl,
    ProtocolError,
    SourceDecl,
)

INVITATION_BYTES = 16
PARTICIPANT_STATUSES = ("active", "suspended", "removed")


def new_invitation_code() -> str:
    raw = base64.b32encode(secrets.token_bytes(INVITATION_BYTES)).decode().rstrip("=")
    return "-".join(raw[i : i + 4] for i in range(0, len(raw), 4))


def code_hash(code: str) -> bytes:
    return hashlib.sha256(normalise_code(code).encode()).digest()


@dataclass(frozen=True, slots=True)
class InvitationState:
    used_at: datetime | None
    revoked_at: datetime | None
    expires_at: datetime | None


def check_invitation(state: InvitationState | None, now: datetime) -> None:
    field = "payload.invitation"
    if state is None:
        raise ProtocolError(ErrorCode.INVITATION_UNKNOWN, "no invitation has this code", field)
    if state.used_at is not None:
        raise ProtocolError(ErrorCode.INVITATION_USED, "this invitation was already used", field)
    if state.revoked_at is not None:
        raise ProtocolError(ErrorCode.INVITATION_REVOKED, "the operator revoked it", field)
    if state.expires_at is not None and now >= state.expires_at:
        raise ProtocolError(ErrorCode.INVITATION_EXPIRED, "this invitation has expired", field)


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    return role


def check_assets_for_role(role: str, body: Assets) -> None:
    """A pure consumer may not declare sources (it cannot sell)."""
    if role == "consumer" and body.sources:
        raise ProtocolError(
            ErrorCode.FORBIDDEN,
            "a participant with the consumer role cannot declare sources",
            "payload.sources[0]",
        )


@dataclass(frozen=True, slots=True)
class AssetVersion:
    """One stored version of an asset (see ``assets`` table)."""

    asset_id: str
    category: str  # source, meter
    kind: str | None
    name: str
    rated_power_w: int | None
    charge_meter: str | None = None  # batteries only
    usable_capacity_wh: int | None = None  # batteries only

    @classmethod
    def of(cls, decl: SourceDecl | MeterDecl) -> AssetVersion:
        if isinstance(decl, SourceDecl):
            return cls(
                decl.id,
                "source",
                str(decl.kind),
                decl.name,
                decl.rated_power_w,
                decl.charge_meter,
                decl.usable_capacity_wh,
            )
        return cls(decl.id, "meter", None, decl.name, decl.rated_power_w)


def diff_assets(
    current: dict[str, AssetVersion], declared: Assets
) -> tuple[list[str], list[AssetVersion]]:
    """Which current assets to retire and which versions to start (declarative update)."""
    decls: list[SourceDecl | MeterDecl] = [*declared.sources, *declared.meters]
    wanted = {v.asset_id: v for v in (AssetVersion.of(d) for d in decls)}
    retire = [aid for aid, version in current.items() if wanted.get(aid) != version]
    start = [version for aid, version in wanted.items() if current.get(aid) != version]
    return retire, start
