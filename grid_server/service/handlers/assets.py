"""``assets``: the complete set of a household's sources and meters, versioned over time."""

from __future__ import annotations

from collections.abc import Iterable

from grid_server.domain.assets import AssetRow, current_assets
from grid_server.domain.registry import check_assets_for_role, diff_assets
from grid_server.storage import ingest_queries as q
from p2p_energy_client.models import AssetsView
from p2p_energy_client.protocol import Assets, MeterDecl, SourceDecl, SourceKind

from ..transaction import Handled, ParticipantRow, TxContext


def assets_view(rows: Iterable[AssetRow]) -> AssetsView:
    sources: list[SourceDecl] = []
    meters: list[MeterDecl] = []
    for r in sorted(rows, key=lambda r: r.asset_id):
        if r.category == "source":
            assert r.kind is not None
            assert r.rated_power_w is not None
            sources.append(
                SourceDecl(
                    r.asset_id,
                    r.name,
                    SourceKind(r.kind),
                    r.rated_power_w,
                    r.charge_meter,
                    r.usable_capacity_wh,
                )
            )
        else:
            meters.append(MeterDecl(r.asset_id, r.name, r.rated_power_w))
    return AssetsView(tuple(sources), tuple(meters))


async def declare_assets(ctx: TxContext, body: Assets, participant: ParticipantRow) -> Handled:
    """Retire the versions that changed, start the new ones; answer the set now in force."""
    check_assets_for_role(participant.role, body)
    rows = ctx.assets.setdefault(participant.id, [])
    current = current_assets(rows)
    retire, start = diff_assets({k: v.version for k, v in current.items()}, body)
    now = ctx.now
    if retire:
        await q.retire_assets(ctx.conn, participant.id, retire, now)
        for aid in retire:
            current[aid].valid_until = now
    if start:
        await q.insert_assets(ctx.conn, participant.id, start, now)
        # A later envelope of the batch sees the operator's decision on a re-declared asset.
        decisions = {r.asset_id: r.decision for r in rows}
        rows.extend(
            AssetRow(
                v.asset_id,
                v.category,
                v.kind,
                v.name,
                v.rated_power_w,
                now,
                None,
                v.charge_meter,
                v.usable_capacity_wh,
                decisions.get(v.asset_id),
            )
            for v in start
        )
    return Handled(assets_view(current_assets(rows).values()).to_wire(), participant.id)
