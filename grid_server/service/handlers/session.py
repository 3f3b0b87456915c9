"""``session``: a bearer token for reads and the live stream (only its hash is stored)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from grid_server.storage import ingest_queries as q
from p2p_energy_client.models import SessionToken

from ..transaction import Handled, ParticipantRow, TxContext


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def session(ctx: TxContext, participant: ParticipantRow) -> Handled:
    token = secrets.token_urlsafe(32)
    expires = ctx.now + timedelta(seconds=ctx.rules.session_ttl_seconds)
    await q.insert_session(ctx.conn, token_hash(token), participant.id, ctx.now, expires)
    answer = SessionToken(token, expires, participant.address).to_wire()
    # The token is never stored: a retry of the envelope is refused, not answered with it.
    return Handled(answer, participant.id, stored={**answer, "token": None})
