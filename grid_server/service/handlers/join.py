"""``join``: a new household (or a returning one) becomes a member with a one-time invitation."""

from __future__ import annotations

from grid_server.domain.registry import InvitationState, check_invitation, code_hash
from grid_server.storage import ingest_queries as q
from p2p_energy_client.models import AssetsView, Participant
from p2p_energy_client.protocol import ErrorCode, Join, ProtocolError

from ..transaction import Handled, ParticipantRow, Submission, TxContext


async def join(
    ctx: TxContext, sub: Submission, body: Join, participant: ParticipantRow | None
) -> Handled:
    env = sub.envelope
    if participant is not None and participant.status == "active":
        raise ProtocolError(
            ErrorCode.ALREADY_REGISTERED, "this key is already a member of the grid", "public_key"
        )
    conn = ctx.conn
    digest = code_hash(body.invitation)
    row = await q.invitation(conn, digest)
    state = None if row is None else InvitationState(row.used_at, row.revoked_at, row.expires_at)
    check_invitation(state, ctx.now)
    assert row is not None
    zone = row.zone or ctx.rules.join_zone
    role = row.role or "prosumer"
    header = env.payload.header
    if participant is not None:
        # A suspended or removed household comes back with a fresh invitation
        # from the operator under the same key (and keeps its history).
        pid = participant.id
        await q.reactivate_participant(
            conn, pid, name=body.name, zone=zone, role=role, seq=header.seq
        )
    else:
        pid = await q.insert_participant(
            conn,
            address=header.sender,
            public_key=env.public_key,
            name=body.name,
            zone=zone,
            role=role,
            seq=header.seq,
            now=ctx.now,
        )
    if not await q.claim_invitation(conn, digest, pid, ctx.now):
        raise ProtocolError(
            ErrorCode.INVITATION_USED, "this invitation was already used", "payload.invitation"
        )
    if participant is None:
        ctx.assets[pid] = []
    joined_at = participant.joined_at if participant is not None else ctx.now
    ctx.participants[header.sender] = ParticipantRow(
        pid, header.sender, body.name, zone, role, "active", header.seq, joined_at
    )
    # The grid's decision (zone and role come from the invitation, which is not
    # in the log) is logged after the batch's envelopes, for audit replay.
    joined = {"address": header.sender, "zone": zone, "role": role, "envelope": ctx.next_log_pos()}
    ctx.join_log.append((header.sender, joined))
    answer = Participant(
        header.sender, body.name, zone, role, "active", joined_at, header.seq, AssetsView((), ())
    )
    return Handled(answer.to_wire(), pid)
